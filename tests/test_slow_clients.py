"""Slow and stalled clients at the worker's edge, on raw sockets: a head or a body
that trickles in has a deadline, connections still sending a head do not keep
others waiting, and a client that reads slowly is not cut by the read limits;
a response the client cut is logged as cut."""
import json
import socket
import struct
import time

import pytest
import requests

from tests.fakes.openai_upstream import fixture
from tests.fakes.server import FakeServer, Reply
from tests.log import poll, poll_rows
from tests.test_server import BODY, request

HEAD_START = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: "
BIG_TEXT = "0123456789abcdef" * (2 * 1024 * 1024)  # 32 MiB: far more than both sockets' buffers


def big_answer(_request) -> Reply:
    answer = json.loads(fixture("chat_nonstream.json"))
    answer["choices"][0]["message"]["content"] = BIG_TEXT
    return Reply(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())


@pytest.fixture(scope="module")
def big_upstream():
    with FakeServer(big_answer) as server:
        yield server


def big_gateway(start_gateway, upstream, **env):
    return start_gateway({"OPENAI_API_KEY": "sk-test-gateway-key-0123456789",
                          "OPENAI_BASE_URL": upstream.url + "/v1", "LOG_CONTENT": "none", **env})


BIG_CALL = json.dumps({"model": "openai/gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hi"}]})


def drip(sock: socket.socket, data: bytes, every: float = 0.2) -> bytes | None:
    """Send `data` one byte per `every` seconds until the gateway answers or closes:
    what it sent (b"" when it closed without a word), or None if it let all of it in."""
    sock.settimeout(every)
    for byte in data:
        try:
            sock.sendall(bytes((byte,)))
            return sock.recv(65536)
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return b""
    return None


def test_a_head_that_keeps_trickling_is_closed_at_its_deadline(start_gateway):
    gw = start_gateway({"REQUEST_HEAD_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(HEAD_START)
        assert drip(sock, b"x" * 25) == b""  # closed, no answer, long before KEEPALIVE


def test_a_new_connection_that_sends_nothing_is_closed_at_the_head_deadline(start_gateway):
    gw = start_gateway({"REQUEST_HEAD_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        assert sock.recv(65536) == b""  # closed, long before KEEPALIVE


def test_a_kept_alive_connection_idles_for_keepalive_not_the_head_deadline(start_gateway):
    gw = start_gateway({"REQUEST_HEAD_TIMEOUT": "1", "KEEPALIVE": "10"})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(request())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        time.sleep(2)  # the next request's head clock starts with its first byte
        sock.sendall(request())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_body_that_keeps_trickling_is_408_at_its_deadline(start_gateway):
    gw = start_gateway({"REQUEST_BODY_TIMEOUT": "1"})
    head, body = request().split(b"\r\n\r\n", 1)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(head + b"\r\n\r\n")
        answer = drip(sock, body[:25])  # each byte comes well within KEEPALIVE
        assert answer and answer.startswith(b"HTTP/1.1 408 ")
        answer += b"".join(iter(lambda: sock.recv(65536), b""))  # then the gateway closes
    assert b'"code": "request_timeout"' in answer and b"\r\nConnection: close\r\n" in answer


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)  # b"" (closed) or an answer: either way it is no longer waiting
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def test_connections_still_sending_a_head_do_not_keep_others_waiting(start_gateway):
    gw = start_gateway({"WORKER_CONNECTIONS": "20"})
    slow = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(40)]
    try:
        for sock in slow:
            sock.sendall(HEAD_START)
        answer = requests.post(gw.url + "/v1/chat/completions", data=BODY, timeout=5,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "hi there"
        for sock in slow:
            sock.sendall(b"x")  # one more header byte: they are all still there, still slow
        assert all(still_open(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, body = raw.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        body += chunk
    return head, body


def test_a_client_that_pauses_reading_gets_the_whole_body(big_upstream, start_gateway):
    gw = big_gateway(start_gateway, big_upstream, KEEPALIVE="1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request(BIG_CALL))
        time.sleep(3)  # meanwhile the gateway's write waits: KEEPALIVE must not cut it
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body)["choices"][0]["message"]["content"] == BIG_TEXT


def request_id_of(head: bytes) -> str:
    return next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                if line.lower().startswith(b"x-request-id:"))


def access_line(gw, request_id: str) -> dict | None:
    for line in gw.logs().splitlines():
        if line.startswith("{") and f'"request_id":"{request_id}"' in line:
            return json.loads(line)
    return None


def logged_as_cut(gw, request_id: str) -> None:
    line = poll(lambda: access_line(gw, request_id), timeout=10)
    assert line and line["status"] == 200 and line.get("client_disconnected") is True
    row = poll_rows(gw, "SELECT * FROM completions WHERE request_id = ?", (request_id,))
    assert row and row[0]["client_disconnected"] == 1


def test_a_body_the_client_cuts_is_logged_as_cut(big_upstream, start_gateway):
    gw = big_gateway(start_gateway, big_upstream)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request(BIG_CALL))
        start = sock.recv(65536)  # the head and the body's first bytes, then the client goes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
    assert start.startswith(b"HTTP/1.1 200 OK")
    logged_as_cut(gw, request_id_of(start))


def test_a_client_that_stops_reading_is_cut_after_write_timeout_and_logged_as_cut(
        big_upstream, start_gateway):
    gw = big_gateway(start_gateway, big_upstream, WRITE_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request(BIG_CALL))
        start = sock.recv(65536)  # then the client reads nothing more
        logged_as_cut(gw, request_id_of(start))
