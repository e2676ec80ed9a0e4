"""Span attributes (GenAI semantic conventions) from what a request already holds:
its RequestLog and the bytes the client received. Runs only when tracing is on.

Every value that a client or an upstream chose is bounded before it goes in a
span: strings cut to a length (a model name can be anything) and made valid
UTF-8, counts kept to the int64 that OTLP carries (one bad value would fail the
encoding of the whole batch, other requests' spans with it)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterator
from urllib.parse import urlsplit

import orjson

from proxy.log import extract
from proxy.log.content import redact_text
from proxy.sse import iter_events, split_events

MAX_TEXT = 256  # model names, ids, error types, paths
MAX_CONTENT = 16 * 1024  # one text part of captured content
MAX_REASONS = 16
INT64 = 2**63 - 1
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                          "PATCH"))
# the events of a stream that say anything the span needs besides the first: the
# finish and usage chunks (a byte search per event, then only those are parsed)
_TELLING = re.compile(rb'"(?:finish_reason|usage)":\s*["{]')
_USAGE = (("prompt_tokens", "gen_ai.usage.input_tokens"),
          ("completion_tokens", "gen_ai.usage.output_tokens"))
_USAGE_DETAILS = (("prompt_tokens_details", "cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
                  ("completion_tokens_details", "reasoning_tokens",
                   "gen_ai.usage.reasoning.output_tokens"))


def bounded(value, limit: int = MAX_TEXT) -> str | None:
    """A text for a span: at most `limit` characters of valid UTF-8, or None."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit]
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def count(value) -> int | None:
    """A token count as OTLP can carry it (int64), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64:
        return value
    return None


def http_method(method: str | None) -> str:
    return method if method in HTTP_METHODS else "_OTHER"


@lru_cache(maxsize=256)
def server(base_url: str | None) -> dict:
    """server.address and server.port of an upstream's base URL (operator's config)."""
    if not base_url:
        return {}
    try:
        parts = urlsplit(base_url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return {}
    found = {"server.address": bounded(parts.hostname)}
    if port:
        found["server.port"] = port
    return {k: v for k, v in found.items() if v is not None}


# -- the answer ----------------------------------------------------------------

def _loads(data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _chunks(pieces: list[bytes], streamed: bool) -> Iterator:
    if not streamed:
        yield _loads(b"".join(pieces))
        return
    for _, data in iter_events(_telling_events(pieces)):
        yield _loads(data)


def _telling_events(pieces: list[bytes]) -> Iterator[bytes]:
    """A stream's first event, then its finish and usage events."""
    for i, piece in enumerate(pieces):
        if i and not _TELLING.search(piece):
            continue
        for j, event in enumerate(split_events(piece)):
            if (i == 0 and j == 0) or _TELLING.search(event):
                yield event


def answer(pieces: list[bytes], streamed: bool) -> dict:
    """gen_ai.response.* and gen_ai.usage.* of the answer the client got (a JSON
    body, or a stream of which only the first, finish and usage events are read)."""
    found: dict = {}
    reasons: dict[int, str] = {}
    for chunk in _chunks(pieces, streamed):
        if not isinstance(chunk, dict) or "error" in chunk:
            continue
        if "gen_ai.response.id" not in found:
            found["gen_ai.response.id"] = bounded(chunk.get("id"))
            found["gen_ai.response.model"] = bounded(chunk.get("model"))
        if isinstance(chunk.get("usage"), dict):
            found.update(_usage(chunk["usage"]))
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = choice.get("index") if isinstance(choice.get("index"), int) else 0
                reasons[index] = bounded(choice["finish_reason"])
    if reasons:
        found["gen_ai.response.finish_reasons"] = [reasons[i] for i in sorted(reasons)][:MAX_REASONS]
    return {k: v for k, v in found.items() if v is not None}


def _usage(usage: dict) -> dict:
    found = {name: count(usage.get(field)) for field, name in _USAGE}
    for group, field, name in _USAGE_DETAILS:  # only when there are some: each costs
        details = usage.get(group)
        if isinstance(details, dict) and count(details.get(field)):
            found[name] = details[field]
    return found


# -- content (only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true) ------

def content(messages: list | None, pieces: list[bytes], streamed: bool,
            reasons: list | None) -> dict:
    """gen_ai.input.messages / gen_ai.output.messages as the conventions shape them
    (role and parts), redacted as the log's `redacted` mode redacts."""
    found = {}
    if messages:
        found["gen_ai.input.messages"] = _json([_message(m) for m in messages if isinstance(m, dict)])
    said = extract.summarise(pieces, streamed).answer_message()
    if said is not None:
        output = _message(said)
        if reasons:
            output["finish_reason"] = reasons[0]
        found["gen_ai.output.messages"] = _json([output])
    return found


def _json(value) -> str:
    return orjson.dumps(value).decode()


def _text(value) -> str:
    return redact_text(bounded(value if isinstance(value, str) else _json(value), MAX_CONTENT))


def _message(message: dict) -> dict:
    role = bounded(message.get("role")) or "user"
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": bounded(message.get("tool_call_id")),
                  "response": _text(message.get("content"))}]
    else:
        parts = _parts(message.get("content"))
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            parts.append({"type": "tool_call", "id": bounded(call.get("id")),
                          "name": bounded(function.get("name")),
                          "arguments": _text(function.get("arguments") or "")})
    return {"role": role, "parts": parts}


def _parts(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": _text(content)}]
    if not isinstance(content, list):
        return [{"type": "text", "content": _text(content)}]
    # a text part as text; any other kind (an image, audio) by its kind alone
    return [{"type": "text", "content": _text(part.get("text"))}
            if part.get("type") == "text" else {"type": bounded(part.get("type")) or "unknown"}
            for part in content if isinstance(part, dict)]
