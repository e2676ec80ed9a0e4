"""How much of the conversation the log keeps: full, redacted or none."""
from __future__ import annotations

import hashlib
import re

import orjson

from proxy.redact import scrub

_PERSONAL = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[card]"),
    (re.compile(r"(?<!\w)\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)"), "[phone]"),
    (re.compile(r"\b[A-Za-z0-9_-]{32,}\b"), "[secret]"),
)
MODES = ("full", "redacted", "none")


def redact_text(text: str) -> str:
    text = scrub(text)
    for pattern, mask in _PERSONAL:
        text = pattern.sub(mask, text)
    return text


def _redact(value):
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        return {k: (_redact(v) if k in ("content", "text", "arguments", "url") else v)
                for k, v in value.items()}
    return value


_KEPT = ("role", "content", "name", "tool_calls", "tool_call_id")


def normalise(message: dict) -> dict:
    """The parts of a message that make it the same message: an answer the client
    sends back with `refusal: null` or `annotations: []` is the one already stored."""
    out = {k: message[k] for k in _KEPT if message.get(k) is not None}
    if "tool_calls" in out:
        out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                              "function": {"name": (c.get("function") or {}).get("name"),
                                           "arguments": (c.get("function") or {}).get("arguments")}}
                             for c in out["tool_calls"]]
    return out


def prepare(message: dict, mode: str) -> str | None:
    """The stored body of one message under the content mode (None: not stored)."""
    if mode == "none":
        return None
    message = normalise(message)
    if mode == "redacted":
        message = _redact(message)
    return orjson.dumps(message, option=orjson.OPT_SORT_KEYS).decode()


def content_hash(body: str) -> str:
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
