"""geventhttpclient (2.6.1) internals the relay relies on, and nothing else.

The relay cuts SSE events in the response parser's own body buffer and reads the
socket itself (one search per read instead of the library's line-by-line reads),
replaces the pool's check of an idle connection before reuse, gives the pool
its socket class, and lets proxy/warm.py open connections ahead of requests and
tend the pool's idle ones. None of that is
public API, so it lives here, checked when this module is imported.
"""
from __future__ import annotations

from typing import Callable

from geventhttpclient import HTTPClient
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.response import HTTPParseError, HTTPSocketPoolResponse

from proxy.shims import ShimMismatch, require

LIBRARY = "geventhttpclient"


def body_buffer(raw: HTTPSocketPoolResponse) -> bytearray:
    """The body bytes the parser has decoded (de-chunked) and nobody has read yet.
    Deleting from its front consumes them."""
    return raw._body_buffer


def socket_of(raw: HTTPSocketPoolResponse):
    """The response's connection while it holds one: the library gives it back to the
    pool (or closes it) as soon as the body is complete, so None means finished."""
    return raw._sock


def receive_into(raw: HTTPSocketPoolResponse, size: int) -> bool:
    """Read once (up to `size` bytes) from the socket into the parser; False when the
    response no longer holds its connection (the body is complete). On any failure the
    connection is closed, as the library's own reads do."""
    sock = raw._sock
    if sock is None:
        return False
    try:
        data = sock.recv(size)
        raw.feed(data)
        if not data and not raw.message_complete:
            raise HTTPParseError("connection closed before the end of the body")
    except BaseException:
        raw.release()
        raise
    return True


def give_back(raw: HTTPSocketPoolResponse) -> None:
    """A complete response's connection goes back to the pool; an unfinished one's is
    closed at once (its semaphore slot freed). Safe to call twice."""
    raw.release()


def send_request(client: HTTPClient, request: bytes, method: str) -> HTTPSocketPoolResponse:
    """`client.request` for a request whose bytes the caller built (head and body,
    sent in one write on a pooled connection): the response with its head read. As
    in the library, a connection that fails is closed, and nothing is sent twice."""
    pool = client._connection_pool
    sock = pool.get_socket()
    try:
        sock.sendall(request)
    except BaseException:
        pool.release_socket(sock)
        raise
    return HTTPSocketPoolResponse(sock, pool, block_size=client.block_size, method=method,
                                  headers_type=client.headers_type)


def install_socket_class(client: HTTPClient, socket_class: type) -> None:
    """New connections of the client's pool are `socket_class(family, type, proto)`
    (the pool's documented socket factory hook)."""
    client._connection_pool._create_tcp_socket = socket_class


def install_reuse_check(client: HTTPClient, check: Callable[[object], bool]) -> None:
    """`check(sock)` runs on every pooled connection a request is about to take (never
    on a new one): False closes it and the pool tries the next, or connects."""
    client._connection_pool._is_socket_alive = check


def open_connection(client: HTTPClient):
    """A new connection to the client's origin, made as the pool makes its own (socket
    class, connect limit, TLS handshake done, first-byte limit set), not yet pooled."""
    return client._connection_pool._create_socket()


def idle_connections(client: HTTPClient):
    """The pool's idle connections: a gevent LIFO queue (the one given back last is
    taken first). The pool's limit counts connections in use, not these."""
    return client._connection_pool._socket_queue


def check() -> None:
    """Raise ShimMismatch naming every name above the installed version lacks. Names a
    constructor sets are looked for on a real instance."""
    require(ConnectionPool, ("_is_socket_alive", "_create_tcp_socket", "_create_socket"), LIBRARY)
    require(HTTPSocketPoolResponse, ("feed", "release"), LIBRARY)
    require(_probe_response(), ("_body_buffer", "_sock", "message_complete"), LIBRARY)
    probe = HTTPClient("127.0.0.1", 1)  # connects to nothing
    require(probe, ("_connection_pool",), LIBRARY)
    require(probe._connection_pool, ("_socket_queue", "get_socket", "release_socket"), LIBRARY)
    require(probe, ("block_size", "headers_type", "default_headers"), LIBRARY)


def _probe_response() -> HTTPSocketPoolResponse:
    """A response parsed from a head handed to it: no socket is read, no pool touched."""
    try:
        return HTTPSocketPoolResponse(object(), None,
                                      pre_buffered=b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
    except Exception as exc:
        raise ShimMismatch(f"{LIBRARY}: a response can no longer be built from a head alone "
                           f"({type(exc).__name__}: {exc}); the gateway's shim "
                           "(proxy/shims/geventhttpclient.py) was written for the version "
                           "pinned in requirements.txt.") from exc


check()
