"""A fake upstream that holds its first content token back, by as long as each
request is told: wraps another fake's `handle` (openai_upstream, anthropic_upstream)
and, for the n-th request, pauses `delays[n]` seconds (0 once they run out) after
the first piece of a stream (OpenAI's role-only chunk, Anthropic's message_start)
or before a whole answer. A client that closes the connection during the pause is
noticed at once (`closed` counts them)."""
from __future__ import annotations

import collections
import itertools
import threading
import time

from tests.fakes.server import FakeServer, Reply, Request, pause


class PacedUpstream:
    def __init__(self, handle):
        self._inner = handle
        self.delays: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.server = FakeServer(self._handle).__enter__()
        self.url = self.server.url

    def pace(self, *delays: float) -> "PacedUpstream":
        """The first-token delays of the next requests, in the order they arrive."""
        self.delays.clear()
        self.delays.extend(delays)
        return self

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def _handle(self, req: Request) -> Reply:
        with self._lock:
            delay = self.delays.popleft() if self.delays else 0.0
        reply = self._inner(req)
        if not delay or reply.status != 200:
            return reply
        if isinstance(reply.body, (bytes, bytearray)):
            pieces = iter((pause(delay), bytes(reply.body)))
        else:
            body = iter(reply.body)
            pieces = itertools.chain(itertools.islice(body, 1), (pause(delay),), body)
        return Reply(reply.status, reply.headers, pieces)

    @property
    def closed(self) -> int:
        """Connections the client closed while this fake held its first token back."""
        return self.server.disconnected

    def wait_closed(self, count: int, wait_s: float = 5.0) -> int:
        """`closed` once it reaches `count` (a closed connection is seen within
        milliseconds), or after `wait_s`."""
        deadline = time.time() + wait_s
        while self.closed < count and time.time() < deadline:
            time.sleep(0.02)
        return self.closed

    def close(self) -> None:
        self.server.__exit__(None, None, None)
