"""The first token of an answer, and the deadline for it.

A content token is text, a tool call, reasoning or a refusal: a chunk with only the
role (or only a finish reason, or usage) is not one. An attempt with a
`first_token_timeout` holds what the upstream sends until its first content token;
past the deadline, nothing has reached the client, so the attempt is abandoned (its
connection closed) and another is tried, like any retryable failure."""
from __future__ import annotations

import re

from gevent import Timeout

from providers.base import ReasoningDelta, Relay, TextDelta, ToolCallDelta
from proxy.errors import UpstreamTimeout

CONTENT_FIELDS = ("content", "tool_calls", "function_call", "reasoning_content", "reasoning",
                  "refusal", "audio")
_CONTENT_EVENTS = (TextDelta, ReasoningDelta, ToolCallDelta)


class FirstTokenTimeout(UpstreamTimeout):
    code = "first_token_timeout"


def _delta_has_content(delta) -> bool:
    return isinstance(delta, dict) and any(delta.get(name) for name in CONTENT_FIELDS)


def _message_has_content(answer) -> bool:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    return any(isinstance(c, dict) and _delta_has_content(c.get("message"))
               for c in choices or ())


# a delta field holding a token: a non-empty string, or a tool call, function call or
# audio object. Quotes inside JSON strings are escaped, so these patterns can only be
# fields themselves, never text a string holds: one search, no parsing
_TOKEN_FIELD = re.compile(
    rb'"(?:content|reasoning_content|reasoning|refusal)"\s*:\s*"(?!")'
    rb'|"(?:tool_calls|function_call|audio)"\s*:\s*[\[{]\s*[^\]\s}]')


def sse_has_content(piece: bytes) -> bool:
    """Whether a relayed piece (one or more SSE events) carries a content token."""
    return _TOKEN_FIELD.search(piece) is not None


def event_has_content(event) -> bool:
    if isinstance(event, ToolCallDelta):
        return True
    return isinstance(event, _CONTENT_EVENTS) and bool(event.text)


def content_test(reply):
    """The test that an item of `reply` carries content."""
    if not isinstance(reply, Relay):
        return event_has_content
    if reply.content_type.startswith("text/event-stream"):
        return sse_has_content
    return lambda _body: _message_has_content(reply.answer)  # a whole answer, read already


def within(seconds: float | None, attempt, provider: str):
    """`attempt()` (which opens an upstream call and pulls it up to its first token)
    within `seconds` (None: no deadline). A missed deadline closes what was opened
    (the timer's exception goes through the upstream read, which closes its
    connection) and raises FirstTokenTimeout."""
    if seconds is None:
        return attempt()
    timer = Timeout(seconds)
    timer.start()
    try:
        return attempt()
    except Timeout as fired:
        if fired is not timer:
            raise
        raise FirstTokenTimeout(f"{provider} sent no token within {seconds:g} s "
                                "(first_token_timeout).") from None
    finally:
        timer.close()
