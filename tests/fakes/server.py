"""A small threaded HTTP/1.1 server for fake upstreams.

A fake is a function `handle(request) -> Reply`. A Reply body may be bytes or an
iterable of byte pieces, sent with chunked encoding and flushed one by one, so
streams arrive as a real upstream sends them. Every request is recorded, and a
client that goes away mid-body is noticed (`disconnects`).
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


def pause(seconds: float) -> bytes:
    """A marker piece: sleep before the next piece instead of sending bytes."""
    return _Pause(seconds)


class _Pause(bytes):
    def __new__(cls, seconds: float):
        obj = super().__new__(cls, b"")
        obj.seconds = seconds
        return obj


def _closed_within(conn: socket.socket, seconds: float) -> bool:
    """Sleep `seconds`, or until the client closes the connection (True)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([conn], [], [], left)[0]:
            try:
                if not conn.recv(1, socket.MSG_PEEK):
                    return True
            except OSError:
                return True
            time.sleep(min(left, 0.01))  # a pipelined request: nothing to do with this one
    return False


class FakeServer:
    def __init__(self, handle: Callable[[Request], Reply]):
        self.handle = handle
        self.requests: list[Request] = []
        self.disconnects = threading.Event()
        self.disconnected = 0  # clients that went away mid-body
        self.completed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # headers and first chunk are separate writes: without this Nagle holds the chunk
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length) if length else b"")
                server.requests.append(req)
                reply = server.handle(req)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, (bytes, bytearray)):
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for piece in reply.body:
                        if isinstance(piece, _Pause):
                            if _closed_within(self.connection, piece.seconds):
                                raise ConnectionResetError("the client closed the connection")
                            continue
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    server.completed.set()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected += 1
                    server.disconnects.set()
                    self.close_connection = True

            do_POST = do_GET = do_PUT = do_DELETE = _serve

        ThreadingHTTPServer.request_queue_size = 128  # bursts of concurrent test calls
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def last(self) -> Request:
        return self.requests[-1]
