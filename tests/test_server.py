"""The HTTP server in each worker (proxy/server.py): request heads read without the
email package, malformed ones refused with 400, keep-alive as clients expect."""
import io
import json
import socket
from types import SimpleNamespace

import gevent.pywsgi
import pytest

from proxy.server import MAX_HEADERS, Handler, read_headers
from proxy.shims import ShimMismatch
from proxy.shims import pywsgi as shim

BODY = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi there"}]})


def test_read_headers_keeps_fields_in_order_and_stops_at_the_blank_line():
    fp = io.BytesIO(b"Host: x\r\nX-Thing:  a b \r\nx-thing: c\r\nContent-Type:application/json\r\n"
                    b"\r\nbody")
    message = read_headers(fp)
    assert not message.status
    assert message.get_all("x-thing") == ["a b", "c"]
    assert message.typeheader == "application/json" and message.getheader("HOST") == "x"
    assert list(message.headers) == ["Host: x\r\n", "X-Thing: a b\r\n", "x-thing: c\r\n",
                                     "Content-Type: application/json\r\n"]
    assert fp.read() == b"body"


@pytest.mark.parametrize("head", [
    b"Host x\r\n\r\n",  # no colon
    b"Host : x\r\n\r\n",  # space before the colon (RFC 9112: must be refused)
    b"Host: x\r\n folded\r\n\r\n",  # obsolete line folding
    b"X: " + b"a" * 70000 + b"\r\n\r\n",
    b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
    b"Host: x\r\nContent-Length: 5",  # the head ends before its blank line
    # the body's length must be unambiguous (RFC 9112 6.3), as gunicorn and h11 hold it
    b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
    b"Content-Length: 5\r\nContent-Length: 50\r\n\r\n",
    b"Content-Length: +5\r\n\r\n",
    b"Content-Length: -5\r\n\r\n",
    b"Content-Length: 0x5\r\n\r\n",
    b"Content-Length: 1_0\r\n\r\n",
    b"Content-Length: 1 0\r\n\r\n",
    b"Content-Length: \xb2\r\n\r\n",  # a superscript two: a digit to str.isdigit
    b"Content-Length:\r\n\r\n",
    b"Transfer-Encoding: identity\r\n\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    b"Host: x\r\nHost: y\r\n\r\n",
    # no control character in a value but HTAB
    b"X-Note: a\x00b\r\n\r\n",
    b"X-Note: a\rb\r\n\r\n",
    b"X-Note: a\r\r\n\r\n",
    b"X-Note: a\x1bb\r\n\r\n",
    b"X-Note: a\x7fb\r\n\r\n",
])
def test_malformed_heads_are_marked(head):
    assert read_headers(io.BytesIO(head)).status


def test_tabs_obs_text_and_a_chunked_coding_in_any_case_are_read():
    message = read_headers(io.BytesIO(b"X-Note: \ta\tb\xe9 \t\r\nTransfer-Encoding: Chunked\n\r\n"))
    assert not message.status
    assert message.items() == [("X-Note", "a\tb\xe9"), ("Transfer-Encoding", "Chunked")]


def exchange(gateway, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def request(body: str = BODY, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body.encode())


def test_malformed_header_gets_400_from_the_gateway(gateway):
    answer = exchange(gateway, request(extra=b"X-Bad Name: 1\r\n"))
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_two_requests_on_one_connection(gateway):
    answer = exchange(gateway, request() + request())
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answer.count(b'"content": "hi there"') == 2


def test_a_silent_connection_is_closed_after_keepalive_seconds(start_gateway):
    gw = start_gateway({"KEEPALIVE": "1"})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        sock.settimeout(10)
        rest = b"".join(iter(lambda: sock.recv(65536), b""))  # ends when the gateway closes
        assert b"HTTP/1.1" not in rest


def test_a_body_that_stops_coming_is_408(start_gateway):
    gw = start_gateway({"KEEPALIVE": "1"})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request()[:-10])  # the last bytes of the body never come
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "request_timeout"' in answer


def dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """(body, what follows the last chunk) of a chunked HTTP/1.1 body."""
    body = b""
    while True:
        size_line, raw = raw.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            assert raw.startswith(b"\r\n")
            return body, raw[2:]
        body, raw = body + raw[:size], raw[size:]
        assert raw.startswith(b"\r\n")
        raw = raw[2:]


def test_a_stream_ends_with_done_then_the_last_chunk(gateway):
    streamed = json.dumps({"model": "echo", "stream": True,
                           "messages": [{"role": "user", "content": "one two three"}]})
    answer = exchange(gateway, request(streamed, extra=b"Connection: close\r\n"))
    head, chunked = answer.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    body, after = dechunk(chunked)
    assert body.endswith(b"data: [DONE]\n\n") and after == b""
    assert body.count(b"data: ") == body.count(b"\n\n")


class CountingSocket:
    def __init__(self):
        self.writes: list[bytes] = []

    def send(self, data, flags=0) -> int:  # the kernel takes it all: one system call
        self.writes.append(bytes(data))
        return len(data)

    def sendall(self, data, flags=0) -> None:
        self.writes.append(bytes(data))

    def settimeout(self, seconds) -> None:
        pass


def written(method: str, headers: list, body) -> list[bytes]:
    """The writes the worker makes to answer with `headers` and `body`."""
    handler = Handler(CountingSocket(), ("127.0.0.1", 1), SimpleNamespace(closed=False),
                      rfile=io.BytesIO())
    handler.command, handler.request_version = method, "HTTP/1.1"
    handler.start_response("200 OK", headers)
    handler.result = body
    handler.process_result()
    return handler.socket.writes


def test_a_json_answer_is_one_write():
    writes = written("POST", [("Content-Length", "8")], [b'{"a": 1}'])
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b'\r\n\r\n{"a": 1}')


def test_a_stream_is_its_head_with_the_first_chunk_then_the_last_chunk_with_the_end():
    writes = written("POST", [], iter([b"data: 1\n\n", b"data: [DONE]\n\n"]))
    assert len(writes) == 2
    assert b"\r\nTransfer-Encoding: chunked\r\n" in writes[0]
    assert writes[0].endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert writes[1] == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"


def test_a_large_first_write_is_not_copied_into_the_head():
    body = b"x" * (shim.ONE_WRITE_MAX + 1)
    writes = written("POST", [("Content-Length", str(len(body)))], [body])
    assert [w.endswith(b"\r\n\r\n") for w in writes] == [True, False] and writes[1] == body


def test_head_gets_the_head_alone_and_the_body_still_runs_to_its_end():
    ran = []

    def body():
        yield b'{"a": 1}'
        ran.append(True)

    writes = written("HEAD", [("Content-Length", "8")], body())
    assert len(writes) == 1 and ran
    assert b"\r\nContent-Length: 8\r\n" in writes[0] and writes[0].endswith(b"\r\n\r\n")


def test_the_pywsgi_shim_matches_the_pinned_gevent():
    shim.check()


@pytest.mark.parametrize("owner, name", [(gevent.pywsgi.WSGIHandler, "_write_with_headers"),
                                         (gevent.pywsgi.WSGIHandler, "response_use_chunked"),
                                         (gevent.pywsgi.Input, "_discard")])
def test_the_pywsgi_shim_names_what_another_gevent_lacks(monkeypatch, owner, name):
    monkeypatch.delattr(owner, name)
    with pytest.raises(ShimMismatch, match=name):
        shim.check()
