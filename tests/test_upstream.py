"""proxy/upstream.py against real sockets: an SSE body cut into events as they
arrive (byte for byte, whatever the line endings and however the upstream splits
its writes), cut-off bodies, pooled connections the upstream closed, each timeout
phase with its own limit on pooled connections, and geventhttpclient's private
names kept in its shim."""
import ast
import socket
import threading
import time
from pathlib import Path

import pytest
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.response import HTTPResponse

from proxy import upstream
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.shims import ShimMismatch
from proxy.shims import geventhttpclient as shim
from proxy.upstream import HttpPool, Timeouts
from tests.fakes.server import FakeServer, Reply, pause

EVENTS = [b'data: {"a":1}\n\n', b'data: {"b":2}\r\n\r\n', b"event: x\ndata: y\n\n",
          b": comment\n\n", b'data: {"c":"\\n"}\n\n', b"data: [DONE]\n\n"]


def serve(pieces):
    return FakeServer(lambda req: Reply(200, {"Content-Type": "text/event-stream"}, pieces))


def batches_from(pieces):
    with serve(pieces) as fake:
        pool = HttpPool()
        try:
            resp = pool.request("POST", fake.url + "/v1/chat/completions", headers={}, body=b"{}")
            got = list(resp.event_batches())
            resp.close()
            return got
        finally:
            pool.close()


@pytest.mark.parametrize("cut", [1, 3, 7, 1000])
def test_events_are_cut_at_their_blank_lines_however_they_arrive(cut):
    body = b"".join(EVENTS)
    pieces = [body[i:i + cut] for i in range(0, len(body), cut)]
    events = [event for batch in batches_from(pieces) for event in batch]
    assert events == EVENTS


def test_events_that_arrive_together_are_one_batch_and_a_late_one_its_own():
    together = b"".join(EVENTS[:3])
    batches = batches_from([together, pause(0.2), EVENTS[3]])
    assert batches == [EVENTS[:3], [EVENTS[3]]]


def test_a_last_event_without_its_blank_line_is_kept():
    assert batches_from([EVENTS[0], b"data: tail"]) == [[EVENTS[0]], [b"data: tail"]]


def test_an_upstream_cut_mid_body_is_an_upstream_error():
    listener = socket.create_server(("127.0.0.1", 0))

    def half_answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0]))
        conn.close()  # no last chunk

    threading.Thread(target=half_answer, daemon=True).start()
    pool = HttpPool()
    try:
        resp = pool.request("POST", f"http://127.0.0.1:{listener.getsockname()[1]}/v1", headers={},
                            body=b"{}")
        got = []
        with pytest.raises(UpstreamError):
            for batch in resp.event_batches():
                got.append(batch)
        assert got == [[EVENTS[0]]]
    finally:
        pool.close()
        listener.close()


def test_a_pooled_connection_the_upstream_closed_is_not_reused():
    """The upstream answers, then closes the connection without saying so: the next
    request must go out on a new connection, not fail on the dead one."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    accepted = []

    def answer_once_per_connection():
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=answer_once_per_connection, daemon=True).start()
    pool = HttpPool()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        for _ in range(2):
            resp = pool.request("POST", url, headers={}, body=b"{}")
            assert resp.read() == b"{}"
            time.sleep(0.1)  # the close reaches the pooled socket
        assert len(accepted) == 2
    finally:
        pool.close()
        listener.close()


# --- timeouts: each phase gets its own limit, whatever the last request left ------

def chunked(events) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


def test_a_pooled_connection_waits_for_its_next_head_under_the_first_byte_limit():
    """first_byte 5 s, idle 1 s, every head after 2 s. The first stream's body ends in
    the read that brings its last batch, so its connection is back in the pool while
    that batch is still being handled (a client slow to read the end); the next
    request takes that connection and must wait for its head under the first-byte
    limit, not the idle limit the stream set on the socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

    def answer_two_requests_on_one_connection():
        conn, _ = listener.accept()
        connections.append(conn)
        for _ in range(2):
            conn.recv(65536)
            time.sleep(2)
            conn.sendall(head)
            time.sleep(0.2)  # the head is read alone, then the whole body at once
            conn.sendall(chunked(EVENTS))

    threading.Thread(target=answer_two_requests_on_one_connection, daemon=True).start()
    pool = HttpPool()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    timeouts = Timeouts(connect=10, first_byte=5, idle=1)
    try:
        first = pool.request("POST", url, headers={}, body=b"{}", timeouts=timeouts)
        first_batches = first.event_batches()
        assert next(first_batches) == EVENTS  # the end of the body came with it
        second = pool.request("POST", url, headers={}, body=b"{}", timeouts=timeouts)
        assert list(second.event_batches()) == [EVENTS]
        assert list(first_batches) == []
        first.close()
        second.close()
        assert len(connections) == 1  # the second request did reuse the first's connection
    finally:
        pool.close()
        listener.close()


def test_the_idle_limit_still_cuts_a_silent_stream():
    with serve([EVENTS[0], pause(1.5), EVENTS[1]]) as fake:
        pool = HttpPool()
        try:
            resp = pool.request("POST", fake.url + "/v1", headers={}, body=b"{}",
                                timeouts=Timeouts(connect=10, first_byte=5, idle=0.5))
            got = []
            with pytest.raises(UpstreamTimeout):
                for batch in resp.event_batches():
                    got.append(batch)
            resp.close()
            assert got == [[EVENTS[0]]]
        finally:
            pool.close()


def test_the_total_limit_cuts_an_event_that_never_ends():
    """total 0.5 s: an upstream that keeps one event coming a byte at a time is never
    silent for the idle limit; it is cut while the event is still arriving."""
    trickle = 300  # pieces of 0.05 s: 15 s if nothing cuts it
    sent = []

    def pieces():
        yield EVENTS[0]
        for _ in range(trickle):
            yield pause(0.05)
            sent.append(1)
            yield b"x"
        yield b"\n\n"

    with serve(pieces()) as fake:
        pool = HttpPool()
        try:
            resp = pool.request("POST", fake.url + "/v1", headers={}, body=b"{}",
                                timeouts=Timeouts(connect=10, first_byte=5, idle=1, total=0.5))
            with pytest.raises(UpstreamTimeout):
                list(resp.event_batches())
            resp.close()
            assert fake.disconnects.wait(10)
            assert len(sent) < trickle
        finally:
            pool.close()


# --- geventhttpclient's private names: only in the shim, checked at import --------

def test_the_shim_check_passes_on_the_pinned_version():
    assert shim.check() is None


def test_a_missing_class_name_is_named(monkeypatch):
    monkeypatch.delattr(ConnectionPool, "_is_socket_alive")
    with pytest.raises(ShimMismatch, match="_is_socket_alive"):
        shim.check()


def test_a_missing_instance_name_is_named(monkeypatch):
    """Names the constructor sets are checked on a real (socketless) response."""
    constructor = HTTPResponse.__init__

    def without_body_buffer(self, *args, **kw):
        constructor(self, *args, **kw)
        del self._body_buffer

    monkeypatch.setattr(HTTPResponse, "__init__", without_body_buffer)
    with pytest.raises(ShimMismatch, match="_body_buffer"):
        shim.check()


def test_upstream_reaches_geventhttpclient_internals_only_through_the_shim():
    """No private (`_x`) or undocumented name of another object in proxy/upstream.py."""
    undocumented = {"feed", "release", "message_complete", "block_size", "get_socket",
                    "return_socket", "release_socket"}
    tree = ast.parse(Path(upstream.__file__).read_text())
    reached = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and (node.attr in undocumented or node.attr.startswith("_"))
                      and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                      and not node.attr.startswith("__")})
    assert reached == []


# -- the request head, built once per URL (upstream.Target) ----------------------------
def _target(url="http://127.0.0.1:9/v1/chat/completions"):
    pool = HttpPool()
    return pool._target("POST", url, pool.timeouts)


def test_a_request_is_its_start_the_callers_fields_the_length_and_the_body():
    request = _target().request({"Content-Type": "application/json", "Authorization": "Bearer k"},
                                b'{"a":1}')
    head, body = request.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and lines[1] == b"Host: 127.0.0.1:9"
    assert b"Accept-Encoding: identity" in lines and b"Authorization: Bearer k" in lines
    assert lines[-1] == b"Content-Length: 7" and body == b'{"a":1}'


@pytest.mark.parametrize("headers", [{"X-A": "1\r\nX-Injected: 2"}, {"X-A": "1\nX: 2"},
                                     {"X-A": "a\x00b"}, {"X A": "1"}, {"X-A\r\nB": "1"}])
def test_no_header_field_can_add_another_or_smuggle_a_control(headers):
    with pytest.raises(ValueError):
        _target().request(headers, b"")


@pytest.mark.parametrize("path", ["/v1/a b", "/v1/\r\nX: 1", "//evil/path"])
def test_a_path_that_is_not_origin_form_is_refused(path):
    with pytest.raises(ValueError):
        _target(f"http://127.0.0.1:9{path}")
