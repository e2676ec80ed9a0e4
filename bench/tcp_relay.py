"""A byte relay for the bench: every client connection gets its own connection to the
fake upstream, and bytes are copied both ways as they arrive (uvloop, TCP_NODELAY,
nothing parsed). Run on core 0 in the gateway's place (`bench/run.py --targets
relay`), it measures what any process in the middle pays on this machine, before
doing any work: two more loopback hops and the wake-ups of a second core.

    python bench/tcp_relay.py --port 9200 --upstream-port 9100
"""
from __future__ import annotations

import argparse
import asyncio


class Side(asyncio.Protocol):
    """One end of a relayed pair: what it receives goes out of `peer`."""

    def __init__(self, peer: "Side | None" = None):
        self.peer = peer
        self.transport = None
        self.early: list[bytes] = []  # client bytes before the upstream has connected

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def connection_lost(self, exc):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class Client(Side):
    upstream: tuple[str, int]

    def connection_made(self, transport):
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self):
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: Side(self), *self.upstream)
        except OSError:
            self.transport.close()
            return
        self.peer = upstream
        for data in self.early:
            upstream.transport.write(data)
        self.early.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args()
    Client.upstream = ("127.0.0.1", args.upstream_port)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Client, "127.0.0.1", args.port,
                                                        backlog=4096, reuse_address=True))
    print(f"relay on 127.0.0.1:{args.port} -> {Client.upstream}", flush=True)
    loop.run_until_complete(server.serve_forever())


if __name__ == "__main__":
    main()
