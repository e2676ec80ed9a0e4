"""Server-sent events: OpenAI's framing out, any provider's framing in."""
from __future__ import annotations

import re
from typing import Iterable, Iterator

import orjson

DONE = b"data: [DONE]\n\n"

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def encode(obj) -> bytes:
    """`data: ` + compact JSON + blank line, exactly as OpenAI writes a chunk."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def parse_event(block: bytes) -> tuple[str | None, bytes]:
    """Split one raw event block into (event name, data payload)."""
    name = None
    data = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode()
    return name, b"\n".join(data)


# the blank line that ends an event (LF or CRLF); starting with a literal \n lets the
# regex engine skip to each newline instead of trying every byte (~4x faster)
EVENT_END = re.compile(rb"\n\r?\n")
# an event end is at most 3 bytes (`\n\r\n`): one that the next read completes starts
# at most 2 bytes before the end of what was searched
_END_OVERLAP = 2


def cut_events(buffer: bytearray, searched: int) -> tuple[list[bytes], int]:
    """Take the complete events off the front of `buffer`; return them and how much
    of what is left has been searched (pass it back after the buffer grows). Only
    new bytes are searched, so an event that takes many reads costs linear time,
    not the square of its size."""
    events, start = [], 0
    begin = searched - _END_OVERLAP if searched > _END_OVERLAP else 0
    for end in EVENT_END.finditer(buffer, begin):
        stop = end.end()
        events.append(bytes(buffer[start:stop]))
        start = stop
    if start:
        del buffer[:start]
    return events, len(buffer)


def split_events(data: bytes) -> list[bytes]:
    """A piece that may hold several events (a relay writes those that arrived
    together at once) as one block per event."""
    return [e for e in EVENT_END.split(data) if e.strip()]


def iter_events(blocks: Iterable[bytes | list[bytes]]) -> Iterator[tuple[str | None, bytes]]:
    """(event, data) pairs from raw event blocks (or lists of them), comments and
    empty blocks dropped."""
    for item in blocks:
        for block in (item if isinstance(item, list) else (item,)):
            name, data = parse_event(block)
            if data or name:
                yield name, data
