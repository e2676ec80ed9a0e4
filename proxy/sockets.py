"""Writing to a gevent socket with one system call.

gevent's `sendall` asks the kernel for the socket's send buffer size
(`getsockopt`) before every write, then loops over chunks of that size: a
second system call for the one `send` that, for the small writes of a relay
(a request head and body, a response, an event), moves everything at once."""
from __future__ import annotations

from gevent import socket as gevent_socket


def send_all(sock, data, flags: int = 0) -> None:
    """`sock.sendall(data)`, one `send` first: gevent's sendall only for what the
    kernel did not take at once (a full buffer: a slow reader, a large body)."""
    sent = sock.send(data, flags)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:], flags)


class QuickSocket(gevent_socket.socket):
    """A gevent socket whose `sendall` is `send_all`."""

    def sendall(self, data, flags=0):
        send_all(super(), data, flags)
