"""Build OpenAI's exact output from provider events: SSE chunks or one JSON body.

Key order and whitespace follow OpenAI's own captures (tests/fixtures/openai).
"""
from __future__ import annotations

import os
import string
import time
from typing import Iterable, Iterator

import orjson

from providers.base import (Event, Finish, ReasoningDelta, ResponseMeta, TextDelta,
                            ToolCallDelta, Usage)
from proxy.sse import DONE, encode

_ALNUM = string.ascii_letters + string.digits


def completion_id() -> str:
    """`chatcmpl-` + 29 alphanumerics, OpenAI's id shape."""
    return "chatcmpl-" + "".join(_ALNUM[b % 62] for b in os.urandom(29))


def usage_object(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens,
                                      "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


class _Header:
    """id, created and model, fixed by the first ResponseMeta (or the call)."""

    def __init__(self, model: str):
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model

    def take(self, meta: ResponseMeta) -> None:
        if meta.model:
            self.model = meta.model


def _delta(event: Event) -> dict | None:
    if isinstance(event, TextDelta):
        return {"content": event.text}
    if isinstance(event, ReasoningDelta):
        return {"reasoning_content": event.text}
    if isinstance(event, ToolCallDelta):
        call = {"index": event.index}
        if event.id is not None or event.name is not None:
            call.update(id=event.id, type="function",
                        function={"name": event.name, "arguments": event.arguments})
        else:
            call["function"] = {"arguments": event.arguments}
        return {"tool_calls": [call]}
    return None


class ChunkWriter:
    """Turns events into `data:` lines; `usage: null` rides on every chunk only
    when the client asked for include_usage, as OpenAI does."""

    def __init__(self, model: str, include_usage: bool):
        self.header = _Header(model)
        self.include_usage = include_usage
        self.started: set[int] = set()
        self.finishes: dict[int, str] = {}
        self.usage: Usage | None = None

    def _chunk(self, choices: list, usage=None) -> bytes:
        h = self.header
        chunk = {"id": h.id, "object": "chat.completion.chunk", "created": h.created,
                 "model": h.model, "system_fingerprint": None, "choices": choices}
        if self.include_usage:
            chunk["usage"] = usage
        return encode(chunk)

    @staticmethod
    def _choice(index: int, delta: dict, finish: str | None = None) -> dict:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def write(self, event: Event) -> Iterator[bytes]:
        if isinstance(event, ResponseMeta):
            if not self.started:
                self.header.take(event)
            return
        if isinstance(event, Usage):
            self.usage = event
            return
        if isinstance(event, Finish):
            self.finishes[event.choice] = event.reason
            return
        delta = _delta(event)
        if delta is None:
            return
        if event.choice not in self.started:
            self.started.add(event.choice)
            yield self._chunk([self._choice(event.choice,
                                            {"role": "assistant", "content": "", "refusal": None})])
        yield self._chunk([self._choice(event.choice, delta)])

    def close(self, capture: list[bytes] | None = None) -> Iterator[bytes]:
        """Finish chunks in index order, then the usage chunk when asked, then [DONE].
        Usage the client did not ask for goes to `capture` (the log) instead."""
        indexes = sorted(self.started | set(self.finishes)) or [0]
        for index in indexes:
            if index not in self.started:
                yield self._chunk([self._choice(index, {"role": "assistant", "content": "",
                                                        "refusal": None})])
            yield self._chunk([self._choice(index, {}, self.finishes.get(index, "stop"))])
        if self.usage is not None:
            if self.include_usage:
                yield self._chunk([], usage_object(self.usage))
            elif capture is not None:
                capture.append(encode({"choices": [], "usage": usage_object(self.usage)}))
        yield DONE


def stream(events: Iterable[Event], model: str, include_usage: bool,
           capture: list[bytes] | None = None) -> Iterator[bytes]:
    writer = ChunkWriter(model, include_usage)
    for event in events:
        yield from writer.write(event)
    yield from writer.close(capture)


class _Choice:
    __slots__ = ("text", "reasoning", "calls", "finish")

    def __init__(self):
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict] = {}
        self.finish = "stop"

    def message(self) -> dict:
        message = {"role": "assistant", "content": "".join(self.text) if self.text else None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": "".join(c["args"]) or "{}"}}
                for _, c in sorted(self.calls.items())]
        elif message["content"] is None:
            message["content"] = ""
        message["refusal"] = None
        message["annotations"] = []
        return message


def completion(events: Iterable[Event], model: str) -> dict:
    header = _Header(model)
    choices: dict[int, _Choice] = {}
    usage = None
    for event in events:
        if isinstance(event, ResponseMeta):
            header.take(event)
        elif isinstance(event, Usage):
            usage = event
        else:
            choice = choices.setdefault(event.choice, _Choice())
            if isinstance(event, TextDelta):
                choice.text.append(event.text)
            elif isinstance(event, ReasoningDelta):
                choice.reasoning.append(event.text)
            elif isinstance(event, ToolCallDelta):
                call = choice.calls.setdefault(event.index, {"id": None, "name": None, "args": []})
                call["id"] = event.id or call["id"]
                call["name"] = event.name or call["name"]
                call["args"].append(event.arguments)
            elif isinstance(event, Finish):
                choice.finish = event.reason
    if not choices:
        choices[0] = _Choice()
    return {
        "id": header.id, "object": "chat.completion", "created": header.created,
        "model": header.model,
        "choices": [{"index": i, "message": c.message(), "logprobs": None, "finish_reason": c.finish}
                    for i, c in sorted(choices.items())],
        "usage": usage_object(usage) if usage else None,
        "system_fingerprint": None,
    }


def json_body(obj: dict) -> bytes:
    """Byte-identical to `json.dumps(obj, indent=2, ensure_ascii=False) + "\\n"`."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
