"""The HTTP server in each worker (proxy/server.py): request heads read without the
email package, malformed ones refused with 400, keep-alive as clients expect."""
import io
import json
import socket

import pytest

from proxy.server import MAX_HEADERS, read_headers

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
])
def test_malformed_heads_are_marked(head):
    assert read_headers(io.BytesIO(head)).status


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
