"""Large upstream SSE events: each byte is searched about once however many reads
an event takes (no cost growing with the square of its size), the worker's other
greenlets run while a large event is read, an event larger than
MAX_STREAM_EVENT_BYTES ends the stream with `upstream_event_too_large`, and other
clients of the worker are answered while a large event streams."""
import json
import threading

import gevent
import pytest
import requests
from geventhttpclient.response import HTTPSocketPoolResponse

from proxy import sse, upstream
from proxy.errors import UpstreamError
from proxy.upstream import UpstreamResponse
from tests.fakes import openai_upstream
from tests.fakes.server import FakeServer, Reply
from tests.gateway import Gateway

KiB, MiB = 1024, 1024 * 1024
SMALL = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
LIMIT = 1 * MiB  # the gateway's MAX_STREAM_EVENT_BYTES in the end-to-end tests
WAIT = 30  # seconds any step may wait for another before the test gives up


def big_event(size: int) -> bytes:
    """One SSE event of exactly `size` bytes, blank line included."""
    head, tail = b'data: {"choices":[{"index":0,"delta":{"content":"', b'"}}]}\n\n'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def pieces(data: bytes, size: int = 64 * KiB) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# --- the cutter, fed by a fake socket: each read returns the next piece ---------

class PieceSocket:
    def __init__(self, body_pieces):
        self._pieces = iter(body_pieces)

    def recv(self, size):
        return next(self._pieces, b"")

    def settimeout(self, seconds):
        pass

    def close(self):
        pass


class Pool:
    """Where the response puts its connection back: returned (reusable) or released (closed)."""

    def __init__(self):
        self.returned, self.released = [], []

    def return_socket(self, sock):
        self.returned.append(sock)

    def release_socket(self, sock):
        self.released.append(sock)


def response(body_pieces, pool=None, socket_type=PieceSocket, **limits) -> UpstreamResponse:
    """A real geventhttpclient response whose head was already read and whose body
    comes from `socket_type(body_pieces)`."""
    length = sum(map(len, body_pieces))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % length
    raw = HTTPSocketPoolResponse(socket_type(body_pieces), pool or Pool(), pre_buffered=head)
    return UpstreamResponse(raw, "fake", **limits)


class SearchCounter:
    """Stands in for the event-end pattern and counts the bytes each search covers."""

    def __init__(self, pattern):
        self.pattern, self.searched = pattern, 0

    def finditer(self, data, pos=0, endpos=None):
        end = len(data) if endpos is None else min(endpos, len(data))
        self.searched += end - pos
        return self.pattern.finditer(data, pos, end)

    def search(self, data, pos=0, endpos=None):
        end = len(data) if endpos is None else min(endpos, len(data))
        self.searched += end - pos
        return self.pattern.search(data, pos, end)


def test_a_large_event_is_searched_once_not_once_per_read(monkeypatch):
    """6 MiB in 64 KiB reads: re-searching the whole buffer after every read would
    cover ~300 MB (the 10 MB event that froze a worker for 6 s); each byte once is
    ~6 MB."""
    large = big_event(6 * MiB)
    body = SMALL + large + DONE
    counter = SearchCounter(sse.EVENT_END)
    monkeypatch.setattr(sse, "EVENT_END", counter)
    monkeypatch.setattr(upstream, "EVENT_END", counter, raising=False)
    events = [event for batch in response(pieces(body)).event_batches() for event in batch]
    assert events == [SMALL, large, DONE]
    assert counter.searched < 2 * len(body)


@pytest.mark.parametrize("split", [1, 2, 3, 1000])
def test_an_event_end_split_over_reads_is_found(split):
    """The search of each read starts a few bytes back: `\\n\\r\\n` may span two reads."""
    body = b"data: a\n\r\n" + b"data: b\r\n\r\n" + b"data: c\n\n" + DONE
    events = [e for batch in response(pieces(body, split)).event_batches() for e in batch]
    assert events == [b"data: a\n\r\n", b"data: b\r\n\r\n", b"data: c\n\n", DONE]


def test_an_event_of_exactly_the_limit_passes():
    event = big_event(64 * KiB)
    batches = response(pieces(SMALL + event + DONE, 1000), max_event_bytes=64 * KiB).event_batches()
    assert [e for batch in batches for e in batch] == [SMALL, event, DONE]


def test_an_event_over_the_limit_fails_and_drops_the_connection():
    pool = Pool()
    resp = response(pieces(SMALL + big_event(256 * KiB) + DONE), pool, max_event_bytes=64 * KiB)
    got = []
    with pytest.raises(UpstreamError) as raised:
        for batch in resp.event_batches():
            got.append(batch)
    resp.close()
    assert got == [[SMALL]]
    assert raised.value.code == "upstream_event_too_large" and raised.value.status == 502
    assert "65536 bytes" in raised.value.message and "MAX_STREAM_EVENT_BYTES" in raised.value.message
    assert len(pool.released) == 1 and not pool.returned  # closed, never reused


def test_reading_a_large_event_lets_the_workers_other_greenlets_run():
    """A large event that arrives as fast as it is read never makes a socket wait, so
    gevent would not switch on its own: the reader yields between reads, and a
    greenlet that was ready all along runs before the event's end is read."""
    ready = []
    seen_at_each_read = []

    class WatchedSocket(PieceSocket):
        def recv(self, size):
            seen_at_each_read.append(bool(ready))
            return super().recv(size)

    resp = response(pieces(SMALL + big_event(2 * MiB) + DONE), socket_type=WatchedSocket)
    other = gevent.spawn(ready.append, True)
    events = [e for batch in resp.event_batches() for e in batch]
    other.join(WAIT)
    assert len(events) == 3
    assert seen_at_each_read[0] is False and seen_at_each_read[-1] is True


# --- through the real gateway ----------------------------------------------------

class LargeEventUpstream:
    """An OpenAI-compatible fake: model `large` streams one small event, half a MiB of a
    large event, waits until the test says another client was answered, then the rest;
    `first-large` starts with a large event; any other model is the capture-built fake."""

    def __init__(self, large_size: int):
        self.large = big_event(large_size)
        self.mid_event = threading.Event()
        self.other_answered = threading.Event()
        self.waited = []  # whether the other client was answered while this event was open
        self.server = FakeServer(self.handle)

    def handle(self, req):
        model = req.json().get("model")
        headers = {"Content-Type": "text/event-stream; charset=utf-8"}
        if model == "large":
            return Reply(200, headers, self.large_stream())
        if model == "first-large":
            return Reply(200, headers, [*pieces(self.large), DONE])
        return openai_upstream.handle(req)

    def large_stream(self):
        yield SMALL
        half = 512 * KiB
        yield from pieces(self.large[:half])
        self.mid_event.set()
        self.waited.append(self.other_answered.wait(WAIT))
        yield from pieces(self.large[half:])
        yield DONE


@pytest.fixture(scope="module")
def fake():
    upstream_fake = LargeEventUpstream(3 * MiB)
    with upstream_fake.server:
        yield upstream_fake


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    gateway = Gateway({"PROVIDER_NAME": "openai", "OPENAI_BASE_URL": fake.server.url + "/v1",
                       "OPENAI_API_KEY": "sk-test-large-events-0123456789",
                       "MAX_STREAM_EVENT_BYTES": str(LIMIT)}, workers=1)
    gateway.start(tmp_path_factory.mktemp("large-events"))
    yield gateway
    gateway.stop()


def chat(gw, model: str, streamed: bool, **kw):
    return requests.post(gw.url + "/v1/chat/completions", timeout=WAIT, **kw, json={
        "model": model, "stream": streamed, "messages": [{"role": "user", "content": "hi"}]})


def test_an_event_over_the_limit_ends_the_stream_while_other_clients_are_served(gw, fake):
    """One worker: while the large event is half read, a second client gets its whole
    answer; then the event passes MAX_STREAM_EVENT_BYTES and the first client's stream
    ends with one error event and [DONE]."""
    first = {}

    def stream_large():
        with chat(gw, "large", True, stream=True) as resp:
            first["status"], first["body"] = resp.status_code, resp.content

    reader = threading.Thread(target=stream_large)
    reader.start()
    try:
        assert fake.mid_event.wait(WAIT), "the upstream never got the large stream's request"
        other = chat(gw, "gpt-4o-mini", False)
        assert other.status_code == 200
        assert other.json()["choices"][0]["message"]["content"]
    finally:
        fake.other_answered.set()
        reader.join(WAIT)
    assert fake.waited == [True]  # answered while the large event was still open
    assert first["status"] == 200
    events = first["body"].split(b"\n\n")
    assert events[0] + b"\n\n" == SMALL
    assert events[-2:] == [b"data: [DONE]", b""]
    error = json.loads(events[-3].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_event_too_large" and error["type"] == "server_error"
    assert f"{LIMIT} bytes" in error["message"] and "MAX_STREAM_EVENT_BYTES" in error["message"]


def test_a_first_event_over_the_limit_is_an_http_502(gw):
    resp = chat(gw, "first-large", True)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_event_too_large"

