"""proxy/upstream.py against real sockets: an SSE body cut into events as they
arrive (byte for byte, whatever the line endings and however the upstream splits
its writes), cut-off bodies, and pooled connections the upstream closed."""
import socket
import threading
import time

import pytest

from proxy.errors import UpstreamError
from proxy.upstream import HttpPool
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
