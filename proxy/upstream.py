"""Pooled upstream HTTP for the relay.

geventhttpclient is the cheapest client measured for this job (see bench/ and
the README); one pool per (origin, timeouts) is shared by every request of a
worker. All transport failures are mapped here, including those raised while a
stream is being read.
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError

from proxy.errors import UpstreamError, UpstreamTimeout

POOL_SIZE = 512


@contextmanager
def transport_errors(provider: str):
    try:
        yield
    except (socket.timeout, TimeoutError):
        raise UpstreamTimeout(f"{provider} did not answer in time") from None
    except (OSError, HTTPParseError) as exc:
        raise UpstreamError(f"could not reach {provider}: {type(exc).__name__}") from None


class UpstreamResponse:
    """A response whose body is read whole (`read`) or event by event (`events`)."""

    def __init__(self, raw, provider: str):
        self._raw = raw
        self.provider = provider
        self.status = raw.status_code

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._raw.get(name, default)

    def headers(self) -> list[tuple[str, str]]:
        return list(self._raw.items())

    def read(self) -> bytes:
        with transport_errors(self.provider):
            try:
                return self._raw.read()
            finally:
                self.close()

    def events(self) -> Iterator[bytes]:
        """Raw SSE event blocks, byte for byte, each yielded as soon as its blank line arrives."""
        readline = self._raw.readline
        block: list[bytes] = []
        with transport_errors(self.provider):
            while True:
                line = readline(b"\n")
                if not line:
                    # readline drops a last line that has no newline; keep it
                    rest = self._raw.read()
                    if rest:
                        block.append(rest)
                    break
                block.append(line)
                if line == b"\n" or line == b"\r\n":
                    yield b"".join(block)
                    block = []
        if block:
            yield b"".join(block)

    def close(self) -> None:
        """Give a finished connection back to the pool; close an unfinished one at once."""
        raw = self._raw
        if raw.message_complete:
            raw.release()
            return
        pool, sock = getattr(raw, "_pool", None), getattr(raw, "_sock", None)
        raw._pool = raw._sock = None
        if pool is not None and sock is not None:
            pool.release_socket(sock)
        elif sock is not None:
            sock.close()


class HttpPool:
    def __init__(self, connect_timeout: float = 10.0, read_timeout: float = 600.0):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._clients: dict[tuple, HTTPClient] = {}

    def _client(self, scheme: str, host: str, port: int | None, read_timeout: float) -> HTTPClient:
        key = (scheme, host, port, read_timeout)
        client = self._clients.get(key)
        if client is None:
            client = HTTPClient(host, port, ssl=scheme == "https", concurrency=POOL_SIZE,
                                connection_timeout=self.connect_timeout,
                                network_timeout=read_timeout,
                                headers={"Accept-Encoding": "identity"})
            self._clients[key] = client
        return client

    def request(self, method: str, url: str, *, headers: dict, body: bytes = b"",
                provider: str = "upstream", read_timeout: float | None = None) -> UpstreamResponse:
        parts = urlsplit(url)
        client = self._client(parts.scheme, parts.hostname, parts.port,
                              read_timeout or self.read_timeout)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        with transport_errors(provider):
            raw = client.request(method, path, body=body, headers=headers)
        return UpstreamResponse(raw, provider)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
