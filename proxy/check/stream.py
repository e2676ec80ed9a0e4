"""A streamed answer taken apart: its events with their arrival times, its chunks,
the answer they add up to, and its timings."""
from __future__ import annotations

import json
from dataclasses import dataclass

from proxy import sse
from proxy.check.probe import Response

DONE = b"[DONE]"
# a delta that carries any of these (non-empty) is a token; a role-only chunk is not
TOKEN_FIELDS = ("content", "tool_calls", "reasoning_content", "reasoning", "refusal")


@dataclass(frozen=True)
class Frame:
    """One SSE event: when it was complete, its raw block, its data and that data as JSON."""
    at: float
    block: bytes
    data: bytes
    obj: object

    @property
    def done(self) -> bool:
        return self.data == DONE


@dataclass(frozen=True)
class Streamed:
    response: Response
    frames: tuple[Frame, ...]
    leftover: bytes  # bytes after the last complete event

    @property
    def chunks(self) -> list[dict]:
        return [f.obj for f in self.frames if isinstance(f.obj, dict) and "error" not in f.obj]

    @property
    def errors(self) -> list[dict]:
        return [f.obj for f in self.frames if isinstance(f.obj, dict) and "error" in f.obj]


def parse(response: Response) -> Streamed:
    """Cut the events out of the pieces as a client would, each stamped with the
    arrival of the piece that completed it."""
    buffer, searched, frames = bytearray(), 0, []
    for piece in response.pieces:
        buffer += piece.data
        blocks, searched = sse.cut_events(buffer, searched)
        frames += [_frame(piece.at, block) for block in blocks if block.strip()]
    return Streamed(response, tuple(frames), bytes(buffer))


def _frame(at: float, block: bytes) -> Frame:
    data = sse.parse_event(block)[1]
    return Frame(at, block, data, None if data == DONE else _json(data))


def _json(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


@dataclass(frozen=True)
class Answer:
    """What a response says, streamed or not, in one comparable shape (choice 0)."""
    text: str
    tool_calls: tuple[tuple[str, str], ...]  # (name, arguments)
    finish: object


def streamed_answer(chunks: list[dict]) -> Answer:
    text, calls, finish = [], {}, None
    for choice in _choices(chunks, 0):
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        text.append(_text(delta.get("content")))
        for call in objects(delta.get("tool_calls")):
            _add_call_delta(calls, call)
        finish = choice.get("finish_reason") or finish
    return Answer("".join(text), tuple((c["name"], c["arguments"]) for c in calls.values()),
                  finish)


def _add_call_delta(calls: dict, call: dict) -> None:
    """A tool call arrives as pieces keyed by `index`: the name once, arguments in parts."""
    name, arguments = _function(call)
    entry = calls.setdefault(repr(call.get("index")), {"name": "", "arguments": ""})
    entry["name"] += name
    entry["arguments"] += arguments


def json_answer(body: dict) -> Answer:
    choice = choices_of(body)[0]
    message = choice.get("message") or {}
    calls = tuple(map(_function, objects(message.get("tool_calls"))))
    return Answer(_text(message.get("content")), calls, choice.get("finish_reason"))


def _function(call: dict) -> tuple[str, str]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    return _text(function.get("name")), _text(function.get("arguments"))


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def objects(value) -> list[dict]:
    """The objects of a list (whatever else a broken answer holds there)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def choices_of(chunk: dict) -> list[dict]:
    return objects(chunk.get("choices"))


def _choices(chunks: list[dict], index: int):
    for chunk in chunks:
        yield from (c for c in choices_of(chunk) if c.get("index") == index)


def is_token(chunk: dict) -> bool:
    return any(isinstance(choice.get("delta"), dict)
               and any(choice["delta"].get(name) for name in TOKEN_FIELDS)
               for choice in choices_of(chunk))


def timings(streamed: Streamed) -> dict[str, list[float]]:
    """Seconds after sending: the first byte, first chunk, first token; and every gap
    between consecutive events."""
    chunk_times = [f.at for f in streamed.frames if isinstance(f.obj, dict)]
    token_times = [f.at for f in streamed.frames if isinstance(f.obj, dict) and is_token(f.obj)]
    event_times = [f.at for f in streamed.frames]
    return {"ttfb": [streamed.response.first_byte],
            "first_chunk": chunk_times[:1],
            "first_token": token_times[:1],
            "chunk_gap": [b - a for a, b in zip(event_times, event_times[1:])]}
