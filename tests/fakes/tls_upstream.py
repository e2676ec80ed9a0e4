"""The fake OpenAI upstream (tests/fakes/openai_upstream.py) over TLS, counting what
connection warming is about: TCP accepts, TLS handshakes, and which connection
each request came on. And `Sink`, an upstream that is down.

The certificate is self-signed, made for the test by the `openssl` command (the
`cryptography` package is not installed here); a client trusts it by taking the
certificate file as its CA bundle (SSL_CERT_FILE for the gateway)."""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fakes import openai_upstream
from tests.fakes.server import FakeServer, Reply, Request

HANDSHAKE_TIMEOUT_S = 10


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, valid for a day."""
    cert, key = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class Connection:
    number: int
    handshake_done: float  # time.monotonic(), when the server finished the handshake
    sock: ssl.SSLSocket
    closed: bool = False  # by either side


class TlsUpstream(FakeServer):
    def __init__(self, cert: Path, key: Path):
        super().__init__(self._handle)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.url = f"https://127.0.0.1:{self.port}"
        self.accepts = 0
        self.connections: list[Connection] = []
        self.served_on: list[Connection] = []  # per request, the connection it came on
        self._lock = threading.Lock()
        self._local = threading.local()
        httpd = self._httpd
        accept, serve = httpd.get_request, httpd.process_request_thread
        httpd.get_request = lambda: self._accepted(accept())
        # each connection's own thread does its handshake, then serves its requests
        httpd.process_request_thread = lambda sock, address: self._serve(serve, sock, address)
        httpd.handle_error = lambda request, address: None  # a closed connection is no error here

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if not c.closed]

    def close_connections(self) -> None:
        """Close every open connection from the server's side, as an upstream closes
        idle keep-alive connections (the client sees a FIN)."""
        for conn in self.open_connections():
            try:
                socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)  # under TLS: no close_notify
            except OSError:
                pass

    def _accepted(self, accepted):
        with self._lock:
            self.accepts += 1
        return accepted

    def _serve(self, serve, sock, address) -> None:
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except OSError:
            sock.close()
            return
        tls.settimeout(None)  # idle connections stay open until a side closes them
        with self._lock:
            conn = Connection(len(self.connections) + 1, time.monotonic(), tls)
            self.connections.append(conn)
        self._local.connection = conn
        try:
            serve(tls, address)
        finally:
            conn.closed = True

    def _handle(self, req: Request) -> Reply:
        self.served_on.append(self._local.connection)
        return openai_upstream.handle(req)


class Sink:
    """An upstream that is down: it accepts TCP connections (counted) and then either
    holds them without a word (`hold`: a TLS handshake waits until its timeout) or
    closes them at once (the handshake fails at once)."""

    def __init__(self, hold: bool):
        self.hold = hold
        self.accepts = 0
        self.held: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.accepts += 1
            if self.hold:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._listener.close()
        for conn in self.held:
            conn.close()
