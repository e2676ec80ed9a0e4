"""Pooled upstream HTTP for the relay.

geventhttpclient is the cheapest client measured for this job (see bench/ and
the README); one pool per (origin, timeouts) is shared by every request of a
worker. All transport failures are mapped here, including those raised while a
stream is being read. What this needs of geventhttpclient beyond its public API
is in proxy/shims/geventhttpclient.py.

Each phase of a request has its own limit, set when the phase starts, so nothing
one request leaves on a pooled socket reaches the next: connect (new sockets),
first byte (until the response head; set again on every pooled socket a request
takes), idle (every wait after the head) and total (checked after every read).
"""
from __future__ import annotations

import re
import select
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Iterator, Mapping
from urllib.parse import urlsplit

import gevent
from gevent import monkey
from gevent.ssl import SSLSocket as GeventSSLSocket
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.shims.geventhttpclient import (body_buffer, give_back, install_reuse_check,
                                          install_socket_class, receive_into, send_request,
                                          socket_of)
from proxy.sockets import QuickSocket
from proxy.sse import cut_events

POOL_SIZE = 512
MAX_TARGETS = 256  # URLs remembered with their client
# bytes asked of the socket per read: what has arrived, up to this (a small event
# costs the same; a large one takes 16x fewer reads than the library's 4 KiB)
READ_SIZE = 64 * 1024
# MAX_STREAM_EVENT_BYTES: far above any chat chunk (tokens, tool-call pieces, audio
# and image pieces of a few KiB to a few MiB), and a bound on what one stream holds
MAX_EVENT_BYTES = 8 * 1024 * 1024
# gevent switches greenlets only when a socket has nothing to read: past this size an
# unfinished event lets the worker's other clients run after every read, or one fast
# large event would hold them all until its end
LARGE_EVENT_BYTES = 256 * 1024
_poll = monkey.get_original("select", "poll")  # a real poll(), not gevent's
_TLS_SOCKETS = (ssl.SSLSocket, GeventSSLSocket)  # the same class once gevent has patched ssl


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `first_byte` bounds the wait for the response head, `idle` every
    wait after it (between stream chunks), `total` the whole body (checked after
    every read; a silent upstream is cut by `idle`)."""
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


def event_too_large(provider: str, limit: int) -> UpstreamError:
    return UpstreamError(f"{provider} sent a stream event larger than this gateway accepts "
                         f"({limit} bytes; MAX_STREAM_EVENT_BYTES).",
                         code="upstream_event_too_large")


def idle_and_open(sock) -> bool:
    """Whether a pooled keep-alive connection can carry the next request: open, and
    with nothing to read (readable while idle means the server closed it, or sent
    something it should not have), or under TLS nothing but TLS's own records."""
    try:
        if sock is None or sock.fileno() < 0:
            return False
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0) or only_tls_records(sock)
    except (OSError, ValueError):
        return False


def only_tls_records(sock) -> bool:
    """Whether a readable TLS connection holds only records of TLS itself: the session
    tickets a TLS 1.3 server sends after the handshake, still unread on a connection
    that has carried no request yet (a warm one). A read that does not wait consumes
    them and finds no data."""
    if not isinstance(sock, _TLS_SOCKETS):
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        sock.recv(1)  # data, or b"" for a closed connection: not reusable either way
        return False
    except ssl.SSLWantReadError:
        return True
    finally:
        sock.settimeout(timeout)


def take_pooled(sock, first_byte: float) -> bool:
    """The pool's check before a request takes an idle connection (see idle_and_open);
    a connection it passes starts the request's first-byte phase, whatever limit
    its last response left on it."""
    if not idle_and_open(sock):
        return False
    sock.settimeout(first_byte)
    return True


class UpstreamResponse:
    """A response whose body is read whole (`read`) or event by event (`events`)."""

    def __init__(self, raw, provider: str, timeouts: Timeouts | None = None, started: float = 0.0,
                 max_event_bytes: int = MAX_EVENT_BYTES):
        self._raw = raw
        self.provider = provider
        self.status = raw.status_code
        self._deadline = started + timeouts.total if timeouts and timeouts.total else None
        self._max_event_bytes = max_event_bytes
        sock = socket_of(raw)  # None when the body came with the head
        if timeouts is not None and sock is not None and timeouts.idle != timeouts.first_byte:
            sock.settimeout(timeouts.idle)  # the head has arrived: now the idle limit

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._raw.get(name, default)

    def headers(self) -> list[tuple[str, str]]:
        return list(self._raw.items())

    def read(self) -> bytes:
        """The whole body."""
        with transport_errors(self.provider):
            try:
                while self._receive():
                    pass
                return self._take_rest()
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
        where they end in the client library's own body buffer, one search of the
        new bytes per read from the socket rather than a call per line."""
        buffer = body_buffer(self._raw)
        searched = 0
        with transport_errors(self.provider):
            while True:
                batch, searched = cut_events(buffer, searched)
                if batch:
                    yield batch
                # what is left is one unfinished event
                if searched > self._max_event_bytes:
                    raise event_too_large(self.provider, self._max_event_bytes)
                if searched > LARGE_EVENT_BYTES:
                    gevent.sleep(0)  # the worker's other greenlets run first
                if not self._receive():
                    break
            if buffer:  # a last event without its blank line
                yield [self._take_rest()]

    def _receive(self) -> bool:
        """Read once more into the body buffer; False once the body has all arrived."""
        if not receive_into(self._raw, READ_SIZE):
            return False
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise UpstreamTimeout(f"{self.provider} exceeded its total time limit")
        return True

    def _take_rest(self) -> bytes:
        buffer = body_buffer(self._raw)
        rest = bytes(buffer)
        del buffer[:]
        return rest

    def close(self) -> None:
        """Give a finished connection back to the pool; close an unfinished one at once."""
        give_back(self._raw)


# RFC 9110 field values: no control characters but HTAB (a CR or LF would end the field)
_UNSAFE_FIELD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ORIGIN_FORM = re.compile(r"/[!-~]*")  # visible ASCII, from one leading slash


class Target:
    """One URL's pooled client and the start of every request to it, built once:
    the request line and the client's own fields (Host, User-Agent, Accept-Encoding).
    The library builds and checks all of that again for each request (~15 µs)."""
    __slots__ = ("client", "start")

    def __init__(self, client: HTTPClient, method: str, path: str):
        if not _ORIGIN_FORM.fullmatch(path) or path.startswith("//"):
            raise ValueError(f"invalid request path {path!r}")
        host = f"[{client.host}]" if ":" in client.host else client.host
        if client.port not in (80, 443):
            host += f":{client.port}"
        fields = {"Host": host, **dict(client.default_headers.items())}
        self.client = client
        self.start = f"{method} {path} HTTP/1.1\r\n{_lines(fields)}"

    def request(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The whole request: its start, the caller's fields, Content-Length, the body."""
        head = f"{self.start}{_lines(headers)}Content-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body


def _lines(fields: Mapping[str, str]) -> str:
    """Header fields as lines, each name a token and each value free of CR, LF and
    other controls (a config or a client value can never add a field of its own)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    if lines.count("\n") != len(fields) or _UNSAFE_FIELD.search(lines.replace("\r\n", "")):
        raise ValueError("a header field holds a control character")
    if not all(_TOKEN.fullmatch(name) for name in fields):
        raise ValueError("a header field name is not a token")
    return lines


class HttpPool:
    def __init__(self, connect_timeout: float = 10.0, read_timeout: float = 600.0,
                 max_event_bytes: int = MAX_EVENT_BYTES):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.timeouts = Timeouts(connect_timeout, read_timeout, read_timeout)
        self.max_event_bytes = max_event_bytes
        self._clients: dict[tuple, HTTPClient] = {}
        # (method, url, timeouts) -> Target: a provider calls the same few URLs, and
        # splitting one costs more than the lookup
        self._targets: dict[tuple, Target] = {}

    def _client(self, scheme: str, host: str, port: int | None, timeouts: Timeouts) -> HTTPClient:
        key = (scheme, host, port, timeouts.connect, timeouts.first_byte)
        client = self._clients.get(key)
        if client is None:
            client = HTTPClient(host, port, ssl=scheme == "https", concurrency=POOL_SIZE,
                                connection_timeout=timeouts.connect,
                                network_timeout=timeouts.first_byte,
                                headers={"Accept-Encoding": "identity"})
            # the pool checks each idle connection before reuse with gevent's select,
            # ~40 µs a request; one real, non-blocking poll() tells the same. New
            # sockets get the first-byte limit from the pool (network_timeout).
            install_reuse_check(client, partial(take_pooled, first_byte=timeouts.first_byte))
            install_socket_class(client, QuickSocket)
            self._clients[key] = client
        return client

    def _target(self, method: str, url: str, timeouts: Timeouts) -> "Target":
        parts = urlsplit(url)
        client = self._client(parts.scheme, parts.hostname, parts.port, timeouts)
        path = parts.path or "/"
        return Target(client, method, f"{path}?{parts.query}" if parts.query else path)

    def client_for(self, url: str, timeouts: Timeouts) -> HTTPClient:
        """The pooled client requests to `url` with `timeouts` use (proxy/warm.py keeps
        some of its connections open)."""
        return self._target("GET", url, timeouts).client

    def request(self, method: str, url: str, *, headers: dict, body: bytes = b"",
                provider: str = "upstream", timeouts: Timeouts | None = None) -> UpstreamResponse:
        timeouts = timeouts or self.timeouts
        key = (method, url, timeouts)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= MAX_TARGETS:  # an Azure URL may name the client's model
                self._targets.clear()
            target = self._targets[key] = self._target(method, url, timeouts)
        request = target.request(headers, body)
        started = time.monotonic()
        with transport_errors(provider):
            raw = send_request(target.client, request, method)
        return UpstreamResponse(raw, provider, timeouts, started, self.max_event_bytes)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._targets.clear()
