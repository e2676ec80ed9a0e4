"""Shared pieces for providers that translate OpenAI's request into another
API's (Anthropic, Bedrock). Pure functions over the OpenAI request dict."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Iterable, Mapping

import orjson

from proxy.errors import InvalidRequest

SYSTEM_ROLES = ("system", "developer")


def text_of(content) -> str:
    """Concatenated text of a string or content-part message content."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if p.get("type") == "text")


def parts(content) -> list[dict]:
    """Content as a list of OpenAI content parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


def split_system(messages: list[dict]) -> tuple[list[str], list[dict]]:
    """System and developer messages (anywhere in the list) apart from the turns."""
    system = [text_of(m["content"]) for m in messages if m["role"] in SYSTEM_ROLES]
    turns = [m for m in messages if m["role"] not in SYSTEM_ROLES]
    return [s for s in system if s], turns


def merge_turns(turns: Iterable[tuple[str, list]]) -> list[tuple[str, list]]:
    """Consecutive turns of one role become one turn (their blocks concatenated)."""
    merged: list[tuple[str, list]] = []
    for role, blocks in turns:
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, list(blocks)))
    return merged


# Anthropic and Bedrock refuse a conversation that opens with the assistant, which is
# how a phone call opens (Vapi sends the greeting the assistant spoke first): a
# placeholder user turn goes before it, as LiveKit's Anthropic and Bedrock formats do
OPENING_USER_TEXT = "(empty)"


def opened_by_user(turns: list[tuple[str, list]], opening: dict) -> list[tuple[str, list]]:
    """Merged turns, with a user turn of the `opening` block first when they begin
    with the assistant's."""
    if turns and turns[0][0] == "assistant":
        return [("user", [opening]), *turns]
    return turns


def only_functions(items, where: str, provider: str) -> list[dict]:
    """Tools or tool calls, all of type `function` (a call may leave its type out);
    any other type (`custom`) is a 400 naming it: the provider cannot express it."""
    items = list(items or ())
    for i, item in enumerate(items):
        kind = item.get("type", "function")
        if kind != "function":
            raise InvalidRequest(f"`{kind}` tools are not supported by {provider}: only `function` "
                                 "tools.", param=f"{where}[{i}].type", code="unsupported_value")
    return items


def tool_arguments(call: dict, where: str) -> dict:
    """An assistant tool call's `arguments` JSON string as an object."""
    raw = call.get("function", {}).get("arguments") or "{}"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{where}.function.arguments is not valid JSON.",
                             param=f"{where}.function.arguments") from None
    return value if isinstance(value, dict) else {"value": value}


def max_output_tokens(body: Mapping, default: int) -> int:
    return body.get("max_completion_tokens") or body.get("max_tokens") or default


def stop_sequences(body: Mapping) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def tool_choice(body: Mapping) -> tuple[str, str | None] | None:
    """("auto"|"none"|"required", None) or ("function", name), or None when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str):
        return choice, None
    if choice["type"] == "function":  # the schema checked its function.name
        return "function", choice["function"]["name"]
    raise InvalidRequest(f"tool_choice `{choice['type']}` is not supported by this provider: "
                         'use auto, none, required or {"type":"function","function":{"name":...}}.',
                         param="tool_choice.type", code="unsupported_value")


def json_schema(body: Mapping) -> dict | None:
    """The schema the client asked the answer to follow, if any."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    return None


_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)", re.S)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) for a `data:` URL, None for any other URL."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.fullmatch(url)
    if not match:
        raise InvalidRequest("Image data URLs must be base64: data:<type>;base64,<data>.",
                             param="messages")
    try:
        base64.b64decode(match["data"][:64] + "=" * (-len(match["data"][:64]) % 4), validate=True)
    except binascii.Error:
        raise InvalidRequest("Image data URL holds invalid base64.", param="messages") from None
    return match["type"] or "application/octet-stream", match["data"]


def mapped(table: Mapping[str, str], value, default: str) -> str:
    """An enum through its table; an unknown value gets the safe default."""
    return table.get(value, default) if value is not None else default


# a parameter sent with OpenAI's default value asks for nothing unsupported
_OPENAI_DEFAULTS = {"n": 1, "logprobs": False, "top_logprobs": 0, "parallel_tool_calls": True,
                    "modalities": ["text"]}

# OpenAI parameters that tune how OpenAI serves, caches, bills or keeps a request (voice
# platforms send them: Pipecat `service_tier`, LiveKit `safety_identifier`...): a
# translated provider ignores them, and the answer means the same
SERVICE_HINTS = ("service_tier", "store", "metadata", "prediction", "safety_identifier",
                 "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options")
# OpenAI parameters asking for what no translated provider gives: a 400 naming them
UNSERVABLE = {"n": "one choice per request.", "logprobs": "no log probabilities.",
              "top_logprobs": "no log probabilities.", "audio": "no audio output.",
              "modalities": "text output only.",
              "moderation": "no moderation of the input or the answer."}
LEGACY_FUNCTIONS = {"functions": "deprecated by OpenAI: send `tools`.",
                    "function_call": "deprecated by OpenAI: send `tool_choice`."}


class ParamPolicy:
    """A provider's declared handling of every OpenAI parameter: `translated` ones
    are mapped, `ignored` ones dropped silently, `rejected` ones a 400 naming the
    parameter (unless sent with OpenAI's default value). Fields OpenAI does not
    define are ignored by construction: a translator reads only what it knows."""

    def __init__(self, translated: Iterable[str] = (), ignored: Iterable[str] = (),
                 rejected: Mapping[str, str] | None = None):
        self.translated = frozenset(translated)
        self.ignored = frozenset(ignored)
        self.rejected = dict(rejected or {})

    def check(self, body: Mapping, provider: str) -> None:
        for param, why in self.rejected.items():
            value = body.get(param)
            if value is not None and value != _OPENAI_DEFAULTS.get(param, False):
                raise InvalidRequest(f"`{param}` is not supported by {provider}: {why}",
                                     param=param, code="unsupported_parameter")
