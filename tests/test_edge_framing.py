"""Request framing at the worker's edge (RFC 9112), on a raw socket: a request
whose length or head is ambiguous gets one OpenAI-shaped 400 and the connection
is closed, so nothing behind it in the buffer ever runs as a request."""
import json
import socket

import pytest

from tests.test_server import BODY, request

SMUGGLED = b"GET /v1/keys HTTP/1.1\r\nHost: gw\r\n\r\n"


def head(fields: bytes, body: bytes = BODY.encode(), version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST /v1/chat/completions " + version + b"\r\nContent-Type: application/json\r\n"
            + fields + b"\r\n" + body)


def chunked(body: bytes = BODY.encode()) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def answered_then_closed(gateway, raw: bytes) -> bytes:
    """Everything the gateway sends, read until *it* closes the connection (the
    client keeps its side open: a recv that times out fails the test)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(raw)
        return b"".join(iter(lambda: sock.recv(65536), b""))


N = len(BODY)
AMBIGUOUS = {
    "two different Content-Length": b"Host: gw\r\nContent-Length: %d\r\nContent-Length: %d\r\n"
                                     % (N, N + len(SMUGGLED)),
    "the same Content-Length twice": b"Host: gw\r\nContent-Length: %d\r\nContent-Length: %d\r\n"
                                     % (N, N),
    "Content-Length with a sign": b"Host: gw\r\nContent-Length: +%d\r\n" % N,
    "Content-Length with an underscore": b"Host: gw\r\nContent-Length: %s\r\n"
                                         % f"{N // 10}_{N % 10}".encode(),
    "Content-Length in hex": b"Host: gw\r\nContent-Length: 0x%x\r\n" % N,
    "Content-Length with a space inside": b"Host: gw\r\nContent-Length: %d %d\r\n"
                                          % (N // 10, N % 10),
    "Transfer-Encoding: identity": b"Host: gw\r\nTransfer-Encoding: identity\r\n",
    "Transfer-Encoding: gzip, chunked": b"Host: gw\r\nTransfer-Encoding: gzip, chunked\r\n",
    "Transfer-Encoding: chunked, chunked": b"Host: gw\r\nTransfer-Encoding: chunked, chunked\r\n",
    "Transfer-Encoding and Content-Length": b"Host: gw\r\nContent-Length: %d\r\n"
                                            b"Transfer-Encoding: chunked\r\n" % N,
    "NUL in a value": b"Host: gw\r\nX-Note: a\x00b\r\nContent-Length: %d\r\n" % N,
    "bare CR in a value": b"Host: gw\r\nX-Note: a\rb\r\nContent-Length: %d\r\n" % N,
    "a control character in a value": b"Host: gw\r\nX-Note: a\x01b\r\nContent-Length: %d\r\n" % N,
    "DEL in a value": b"Host: gw\r\nX-Note: a\x7fb\r\nContent-Length: %d\r\n" % N,
    "no Host on HTTP/1.1": b"Content-Length: %d\r\n" % N,
    "two Host fields": b"Host: gw\r\nHost: other\r\nContent-Length: %d\r\n" % N,
}
# with a coding other than chunked the gateway used to ignore the body: none is sent
BODIES = {"Transfer-Encoding and Content-Length": chunked(), "Transfer-Encoding: identity": b"",
          "Transfer-Encoding: gzip, chunked": b"", "Transfer-Encoding: chunked, chunked": b""}


@pytest.mark.parametrize("case", AMBIGUOUS)
def test_an_ambiguous_request_is_one_json_400_and_the_rest_never_runs(gateway, case):
    raw = head(AMBIGUOUS[case], BODIES.get(case, BODY.encode()))
    answer = answered_then_closed(gateway, raw + SMUGGLED)
    status_and_head, body = answer.split(b"\r\n\r\n", 1)
    assert status_and_head.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 ") == 1  # the smuggled GET never got an answer
    fields = status_and_head.lower().split(b"\r\n")[1:]
    assert b"connection: close" in fields and b"content-type: application/json" in fields
    error = json.loads(body)["error"]
    assert error["message"] and error["param"] is None
    assert (error["type"], error["code"]) == ("invalid_request_error", "bad_request")


@pytest.mark.parametrize("fields, body", [
    (b"Host: gw\r\nX-Note: a\tb\r\nContent-Length: %d\r\n" % N, BODY.encode()),  # HTAB is allowed
    (b"Host: gw\r\nTransfer-Encoding: Chunked\r\n", chunked()),  # a coding name has no case
])
def test_well_framed_requests_still_pass(gateway, fields, body):
    answer = answered_then_closed(gateway, head(b"Connection: close\r\n" + fields, body))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b'"content": "hi there"' in answer


def test_http_1_0_needs_no_host(gateway):
    answer = answered_then_closed(gateway, head(b"Content-Length: %d\r\n" % N, version=b"HTTP/1.0"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_head_is_answered_without_a_body_and_the_connection_stays_in_step(gateway):
    probe = b"HEAD /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"
    answer = answered_then_closed(gateway, probe + request(extra=b"Connection: close\r\n"))
    first, rest = answer.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 405 ")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and b'"content": "hi there"' in rest
