"""Read an answer back out of the OpenAI bytes the client received (writer side)."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass
class Summary:
    completion_id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    text: str = ""
    tool_calls: list = field(default_factory=list)
    usage: dict | None = None
    error_type: str | None = None

    def answer_message(self) -> dict | None:
        if not self.text and not self.tool_calls:
            return None
        message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def from_json(body: bytes) -> Summary:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Summary()
    if not isinstance(obj, dict):
        return Summary()
    if "error" in obj:
        return Summary(error_type=(obj["error"] or {}).get("type"))
    summary = Summary(completion_id=obj.get("id"), model=obj.get("model"), usage=obj.get("usage"))
    choices = obj.get("choices") or []
    if choices:
        message = choices[0].get("message") or {}
        summary.text = message.get("content") or ""
        summary.tool_calls = message.get("tool_calls") or []
        summary.finish_reason = choices[0].get("finish_reason")
    return summary


def _payloads(pieces: list[bytes]):
    for piece in pieces:
        for line in piece.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload and payload != b"[DONE]":
                    yield payload


def from_stream(pieces: list[bytes]) -> Summary:
    summary = Summary()
    text: list[str] = []
    calls: dict[int, dict] = {}
    for payload in _payloads(pieces):
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if "error" in chunk:
            summary.error_type = (chunk["error"] or {}).get("type") or "error"
            continue
        summary.completion_id = summary.completion_id or chunk.get("id")
        summary.model = summary.model or chunk.get("model") or None
        if chunk.get("usage"):
            summary.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                _merge_call(calls, call)
            summary.finish_reason = choice.get("finish_reason") or summary.finish_reason
    summary.text = "".join(text)
    summary.tool_calls = [calls[i] for i in sorted(calls)]
    return summary


def _merge_call(calls: dict, delta: dict) -> None:
    call = calls.setdefault(delta.get("index", 0),
                            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call["id"] = delta.get("id") or call["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def summarise(pieces: list[bytes], streamed: bool) -> Summary:
    return from_stream(pieces) if streamed else from_json(b"".join(pieces))


def usage_of(pieces: list[bytes], streamed: bool) -> dict | None:
    """Just the usage object, cheaply: for a stream only the one chunk that carries it."""
    if not streamed:
        return from_json(b"".join(pieces)).usage
    for piece in reversed(pieces):
        if b'"usage":{' in piece:
            return from_stream([piece]).usage
    return None
