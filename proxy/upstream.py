"""Pooled upstream HTTP for the relay.

geventhttpclient is the cheapest client measured for this job (see bench/ and
the README); one pool per (origin, timeouts) is shared by every request of a
worker. All transport failures are mapped here, including those raised while a
stream is being read.
"""
from __future__ import annotations

import select
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError

try:
    from gevent import monkey
    _poll = monkey.get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a dependency
    from select import poll as _poll

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.sse import EVENT_END

POOL_SIZE = 512


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `first_byte` bounds the wait for the response head, `idle` every
    wait after it (between stream chunks), `total` the whole body (checked as
    chunks arrive; a silent upstream is cut by `idle`)."""
    connect: float = 10.0
    first_byte: float = 600.0
    idle: float = 600.0
    total: float | None = None

    @classmethod
    def from_options(cls, options: Mapping, default: "Timeouts") -> "Timeouts":
        def pick(name, fallback):
            value = options.get(f"{name}_timeout")
            return float(value) if value not in (None, "") else fallback
        return cls(pick("connect", default.connect), pick("first_byte", default.first_byte),
                   pick("idle", default.idle), pick("total", default.total))


@contextmanager
def transport_errors(provider: str):
    try:
        yield
    except (socket.timeout, TimeoutError):
        raise UpstreamTimeout(f"{provider} did not answer in time") from None
    except (OSError, HTTPParseError) as exc:
        raise UpstreamError(f"could not reach {provider}: {type(exc).__name__}") from None


def idle_and_open(sock) -> bool:
    """Whether a pooled keep-alive connection can carry the next request: open, and
    with nothing to read (readable while idle means the server closed it, or sent
    something it should not have)."""
    try:
        if sock is None or sock.fileno() < 0:
            return False
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class UpstreamResponse:
    """A response whose body is read whole (`read`) or event by event (`events`)."""

    def __init__(self, raw, provider: str, timeouts: Timeouts | None = None, started: float = 0.0):
        self._raw = raw
        self.provider = provider
        self.status = raw.status_code
        self._deadline = started + timeouts.total if timeouts and timeouts.total else None
        self._sock = getattr(raw, "_sock", None)
        self._first_byte = timeouts.first_byte if timeouts else None
        if timeouts is not None and self._sock is not None and timeouts.idle != timeouts.first_byte:
            self._sock.settimeout(timeouts.idle)  # the head has arrived: now the idle limit

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
        """Raw SSE event blocks, byte for byte, each as soon as its blank line arrives."""
        for batch in self.event_batches():
            yield from batch

    def event_batches(self) -> Iterator[list[bytes]]:
        """The same blocks, grouped: a batch holds the events that had already
        arrived together, so a relay writes them to the client in one write (an
        event that arrives alone is still sent alone, at once). Events are cut
        where they end in the client library's own body buffer, one search per
        read from the socket rather than a call per line."""
        raw = self._raw
        buffer = raw._body_buffer  # what the parser has decoded (de-chunked) so far
        with transport_errors(self.provider):
            while True:
                batch, start = [], 0
                for end in EVENT_END.finditer(buffer):
                    batch.append(bytes(buffer[start:end.end()]))
                    start = end.end()
                if batch:
                    del buffer[:start]
                    if self._deadline is not None and time.monotonic() > self._deadline:
                        raise UpstreamTimeout(f"{self.provider} exceeded its total time limit")
                    yield batch
                elif raw.message_complete or not self._receive():
                    break
            if buffer:  # a last event without its blank line
                yield [bytes(buffer)]
                del buffer[:]

    def _receive(self) -> bool:
        """Read from the socket into the parser's buffer; False once there is no more."""
        raw = self._raw
        if raw._sock is None:
            return False
        try:
            data = raw._sock.recv(raw.block_size)
            raw.feed(data)
            if not data and not raw.message_complete:
                raise HTTPParseError("connection closed before the end of the body")
        except BaseException:
            raw.release()
            raise
        return True

    def close(self) -> None:
        """Give a finished connection back to the pool; close an unfinished one at once."""
        raw = self._raw
        if raw.message_complete:
            if self._sock is not None and self._first_byte is not None:
                self._sock.settimeout(self._first_byte)  # back in the pool: the next head's limit
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
        self.timeouts = Timeouts(connect_timeout, read_timeout, read_timeout)
        self._clients: dict[tuple, HTTPClient] = {}

    def _client(self, scheme: str, host: str, port: int | None, timeouts: Timeouts) -> HTTPClient:
        key = (scheme, host, port, timeouts.connect, timeouts.first_byte)
        client = self._clients.get(key)
        if client is None:
            client = HTTPClient(host, port, ssl=scheme == "https", concurrency=POOL_SIZE,
                                connection_timeout=timeouts.connect,
                                network_timeout=timeouts.first_byte,
                                headers={"Accept-Encoding": "identity"})
            # the pool checks each idle connection before reuse with gevent's select,
            # ~40 µs a request; one real, non-blocking poll() tells the same
            client._connection_pool._is_socket_alive = idle_and_open
            self._clients[key] = client
        return client

    def request(self, method: str, url: str, *, headers: dict, body: bytes = b"",
                provider: str = "upstream", timeouts: Timeouts | None = None) -> UpstreamResponse:
        timeouts = timeouts or self.timeouts
        parts = urlsplit(url)
        client = self._client(parts.scheme, parts.hostname, parts.port, timeouts)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        started = time.monotonic()
        with transport_errors(provider):
            raw = client.request(method, path, body=body, headers=headers)
        return UpstreamResponse(raw, provider, timeouts, started)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
