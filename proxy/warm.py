"""Warm upstream connections: opened before a request needs them.

A voice turn after a quiet minute should not pay a TCP and TLS handshake (one to
three round trips to the provider). At worker start each provider with an HTTP(S)
upstream gets `warm_connections` connections put in the very pool its requests
take from (proxy/upstream.py), handshake done. One greenlet per pool then tends
them every tick:
  1. idle connections the server closed are closed (the request path would only
     notice, and drop them, when it took one);
  2. if fewer than `warm_connections` idle ones are younger than `warm_idle_s`
     (idle time as the kernel counts it), new ones are opened and put in;
  3. only then are those idle past `warm_idle_s` closed: make before break, so
     the pool never runs dry while it is renewed.
Connections requests hold are never touched: at most `warm_connections` are opened
besides those requests open. Nothing here runs on the request path; a failure to
connect is logged at most once a minute per pool and tried again later (backing
off to once a minute), never raised.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import gevent
from gevent.queue import Full

from proxy.redact import scrub
from proxy.shims.geventhttpclient import idle_connections, open_connection
from proxy.upstream import HttpPool, idle_and_open

log = logging.getLogger("switchboard.warm")

TICK_S = 1.0  # how often a pool is tended (at most; a quarter of its idle limit if smaller)
LOG_EVERY_S = 60.0
MAX_BACKOFF_S = 60.0
STOP_WAIT_S = 1.0

# Linux struct tcp_info: ms since the last data sent (offset 44) and received (52)
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_LEN = 104
_LAST_DATA = struct.Struct("=I4xI")


@dataclass
class Target:
    """One pool to keep warm; providers on one origin with the same timeouts share it."""
    names: list[str]
    client: object  # the pool's geventhttpclient HTTPClient
    count: int
    idle_s: float

    @property
    def tick_s(self) -> float:
        return min(TICK_S, self.idle_s / 4)


class Warmer:
    """The greenlets keeping each target warm, started at once, stopped by `stop`."""

    def __init__(self, targets: Iterable[Target]):
        self._greenlets = [gevent.spawn(keep_warm, target) for target in targets]

    def stop(self) -> None:
        gevent.killall(self._greenlets, timeout=STOP_WAIT_S)


def start(providers: Mapping, http: HttpPool) -> Warmer:
    return Warmer(targets(providers.values(), http))


def targets(providers: Iterable, http: HttpPool) -> list[Target]:
    by_client: dict[int, Target] = {}
    for provider in providers:
        url = provider.warm_url() if provider.spec.available else None
        if not url or urlsplit(url).scheme not in ("http", "https"):
            continue
        count = wanted(provider, url)
        if count == 0:
            continue
        client = http.client_for(url, provider.timeouts)
        target = by_client.get(id(client))
        if target is None:
            by_client[id(client)] = Target([provider.name], client, count, provider.warm_idle_s)
        else:
            target.names.append(provider.name)
            target.count = max(target.count, count)
            target.idle_s = min(target.idle_s, provider.warm_idle_s)
    return list(by_client.values())


def wanted(provider, url: str) -> int:
    """The configured count; by default 1, or 0 for a loopback upstream: a handshake
    there costs microseconds, and the keyless local presets (ollama) count as
    available whether or not anything listens."""
    if provider.warm_connections is not None:
        return provider.warm_connections
    return 0 if loopback(urlsplit(url).hostname or "") else 1


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def keep_warm(target: Target) -> None:
    failures, logged_at = 0, float("-inf")
    while True:
        try:
            refresh(target)
            failures = 0
        except Exception as exc:  # noqa: BLE001 - nothing may end this loop but stop()
            failures = min(failures + 1, 7)  # 2 ** 6 s is past MAX_BACKOFF_S already
            if time.monotonic() - logged_at >= LOG_EVERY_S:
                logged_at = time.monotonic()
                log.warning("could not open a warm connection to %s: %s",
                            ", ".join(target.names), scrub(f"{type(exc).__name__}: {exc}"))
        gevent.sleep(min(MAX_BACKOFF_S, 2.0 ** (failures - 1)) if failures else target.tick_s)


def refresh(target: Target) -> None:
    """One tick: the three steps of the module's docstring."""
    queue = idle_connections(target.client)
    kept = _drop(queue, lambda sock: not idle_and_open(sock))
    fresh = sum(1 for sock in kept if not _aged(sock, target.idle_s))
    for _ in range(target.count - fresh):
        _add(queue, open_connection(target.client))  # waits: requests may run meanwhile
    _drop(queue, lambda sock: _aged(sock, target.idle_s))


def _drop(queue, unwanted: Callable[[object], bool]) -> list:
    """Close the pool's idle connections that are `unwanted`; the rest stay, in their
    order. Nothing here waits, so no request takes or gives back one meanwhile."""
    kept = []
    while queue.qsize():
        sock = queue.get_nowait()  # the most recently given back first
        if unwanted(sock):
            sock.close()
        else:
            kept.append(sock)
    for sock in reversed(kept):
        queue.put_nowait(sock)
    return kept


def _add(queue, sock) -> None:
    try:
        queue.put_nowait(sock)  # on top: the next request takes it first
    except Full:
        sock.close()


def _aged(sock, idle_s: float) -> bool:
    idle = idle_seconds(sock)
    return idle is not None and idle > idle_s


def idle_seconds(sock) -> float | None:
    """Seconds since the connection last sent or received data, as the kernel counts
    them (Linux TCP_INFO); None where it cannot tell, and then only connections the
    server closed are replaced."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LEN)
    except (OSError, ValueError):
        return None
    if len(info) < 44 + _LAST_DATA.size:
        return None
    sent_ms, received_ms = _LAST_DATA.unpack_from(info, 44)
    return min(sent_ms, received_ms) / 1000
