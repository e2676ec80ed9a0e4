"""A fast fake OpenAI upstream for benchmarks: raw asyncio (uvloop when installed)
HTTP/1.1 server with keep-alive.

POST /v1/chat/completions answers OpenAI's JSON body at once, or for
`"stream": true` 24 SSE events, each sent as its own chunked write, ending with
`data: [DONE]`. Anything else is a 404. No delays: the point is to cost as little
as possible so that the thing in front of it is what gets measured.

A stream whose body begins `{"bench_pace": [FIRST_MS, GAP_MS], ...` (bench/load.py
--pace; a gateway forwards the unknown field unchanged) is paced like a model: the
head, the role chunk and the first content chunk FIRST_MS after the request, then
each following event GAP_MS after the one before, on a schedule fixed from the
request's arrival (a late timer does not push the rest back). Each paced chunk's
`obfuscation` field carries the CLOCK_MONOTONIC nanoseconds at which it was
written, so a client on the same machine can time each event's trip.

    python bench/fake_upstream.py --port 9100
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
# looked for only in the body's first bytes: the field comes first (bench/load.py)
PACE = re.compile(rb'\{\s*"bench_pace"\s*:\s*\[\s*(\d{1,5})\s*,\s*(\d{1,5})\s*\]')
PACE_WINDOW = 64
STAMP = b"0" * 20  # CLOCK_MONOTONIC ns, written into a paced chunk as it goes out
CHUNK_ID = "chatcmpl-CugAuE9ctOkFjqIbmxWZpxeNX7gWt"
WORDS = ("Why did the scarecrow win an award? Because he was outstanding in his field! "
         "Want to hear another one about farms or fields?").split(" ")

JSON_BODY = json.dumps({
    "id": "chatcmpl-Dd0jskcLqH0R27qyslROwdWJ0SfFU", "object": "chat.completion",
    "created": 1778190004, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(WORDS),
                                         "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 129, "completion_tokens": 24, "total_tokens": 153,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_de7acce317"}, indent=2).encode()

COMMON = (b"x-request-id: req_2a2a04977ace88fdd64cf570f80c0202\r\n"
          b"openai-processing-ms: 127\r\nopenai-version: 2020-10-01\r\n"
          b"x-ratelimit-limit-requests: 10000\r\nx-ratelimit-remaining-requests: 9999\r\n")
JSON_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + COMMON +
                 b"Content-Length: %d\r\n\r\n" % len(JSON_BODY) + JSON_BODY)
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" + COMMON +
               b"Transfer-Encoding: chunked\r\n\r\n")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _chunk(delta: dict, finish=None, usage=None, choices=True, obfuscation="SVnFynat2") -> dict:
    return {"id": CHUNK_ID, "object": "chat.completion.chunk", "created": 1767624524,
            "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
            "system_fingerprint": "fp_29330a9688",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}] if choices else [],
            "usage": usage, "obfuscation": obfuscation}


def _events(obfuscation: str = "SVnFynat2") -> list[bytes]:
    chunk = lambda *a, **kw: _chunk(*a, **kw, obfuscation=obfuscation)
    objs = [chunk({"role": "assistant", "content": "", "refusal": None})]
    objs += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(WORDS[:20])]
    objs.append(chunk({}, finish="stop"))
    objs.append(chunk({}, usage={"prompt_tokens": 129, "completion_tokens": 21,
                                 "total_tokens": 150}, choices=False))
    events = [b"data: " + json.dumps(o, separators=(",", ":")).encode() + b"\n\n" for o in objs]
    events.append(b"data: [DONE]\n\n")
    # HTTP/1.1 chunked framing, done once; the terminating zero chunk rides the last write
    framed = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
    framed[-1] += b"0\r\n\r\n"
    return framed


STREAM_EVENTS = _events()  # 24 events
PACED_EVENTS = _events(STAMP.decode())  # the same, each with room for its send time


def stamped(event: bytes) -> bytes:
    return event.replace(STAMP, b"%020d" % time.monotonic_ns(), 1)


def pace_schedule(first_ms: int, gap_ms: int) -> list[tuple[float, list[bytes]]]:
    """(seconds after the request, what is written then): the head with the role and
    first content chunks, then one event per gap."""
    first = [STREAM_HEAD, PACED_EVENTS[0], PACED_EVENTS[1]]
    return [(first_ms / 1000, first)] + [
        ((first_ms + gap_ms * n) / 1000, [event])
        for n, event in enumerate(PACED_EVENTS[2:], 1)]


class Upstream(asyncio.Protocol):
    __slots__ = ("transport", "buf", "need", "head_end", "keep")

    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()
        self.need = -1  # total bytes of the current request once its head is parsed

    def data_received(self, data):
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
                self.head_end = end + 4
                self.need = self.head_end + (int(m.group(1)) if m else 0)
                self.keep = b"\r\nconnection: close" not in head
            if len(self.buf) < self.need:
                return
            req = bytes(self.buf[:self.need])
            del self.buf[:self.need]
            self.need = -1
            self.respond(req)

    def respond(self, req: bytes):
        write = self.transport.write
        if not req.startswith(b"POST ") or b"/chat/completions " not in req[:200]:
            write(NOT_FOUND)
        elif STREAM_FLAG.search(req, self.head_end):
            pace = PACE.match(req, self.head_end, self.head_end + PACE_WINDOW)
            if pace:
                return self.paced(int(pace[1]), int(pace[2]))
            write(STREAM_HEAD)
            for event in STREAM_EVENTS:
                write(event)
        else:
            write(JSON_RESPONSE)
        if not self.keep:
            self.transport.close()

    def paced(self, first_ms: int, gap_ms: int) -> None:
        """The stream on a timer schedule (the client sends its next request on this
        connection only once this one has ended)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        schedule = pace_schedule(first_ms, gap_ms)
        for at, pieces in schedule:
            loop.call_at(start + at, self.write_stamped, pieces)
        if not self.keep:
            loop.call_at(start + schedule[-1][0], self.transport.close)

    def write_stamped(self, pieces: list[bytes]) -> None:
        if not self.transport.is_closing():
            for piece in pieces:
                self.transport.write(stamped(piece))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    args = ap.parse_args()
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(Upstream, args.host, args.port, backlog=4096, reuse_address=True))
    print(f"fake upstream on http://{args.host}:{args.port}/v1 "
          f"({type(loop).__module__.split('.')[0]})", flush=True)
    try:
        loop.run_until_complete(server.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
