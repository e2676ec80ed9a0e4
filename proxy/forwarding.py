"""Which top-level fields of a client's request reach a relayed (OpenAI-compatible)
upstream.

Voice platforms add fields of their own to an OpenAI request (Vapi's `call`,
`phoneNumber`, `customer`), and some OpenAI-compatible servers refuse a field they
do not know. Per provider, the config file may say `drop_params = [...]` (those
fields are removed) and `forward_params = "openai"` (only the fields OpenAI's
chat-completions spec defines are kept; `"all"`, the default, keeps everything).

A provider with neither setting does nothing per request: its body writer is
`Call.body_bytes` itself. With them, a body that holds no field to remove is still
sent as the client's own bytes; otherwise the fields kept are serialised once, into
a new object, so `call.body` stays whole for a fallback to a provider with other
settings.
"""
from __future__ import annotations

from typing import Callable, Mapping

from providers.base import Call, encoded

#: the top-level properties of OpenAI's CreateChatCompletionRequest (the vendored spec,
#: tests/fixtures/openai-openapi, is checked against this list by a test)
OPENAI_CHAT_FIELDS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model",
    "moderation", "n", "parallel_tool_calls", "prediction", "presence_penalty",
    "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning_effort",
    "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    "verbosity", "web_search_options",
})
FORWARD_CHOICES = ("all", "openai")
# without these no upstream can answer, or answers in the shape the client asked for
NEVER_DROPPED = frozenset({"model", "messages", "stream"})

BodyWriter = Callable[[Call], bytes]


class FieldFilter:
    """The upstream body without the fields a provider must not receive."""

    __slots__ = ("drop", "spec_only")

    def __init__(self, drop: frozenset[str], spec_only: bool):
        self.drop, self.spec_only = drop, spec_only

    def unwanted(self, name: str) -> bool:
        return name in self.drop or (self.spec_only and name not in OPENAI_CHAT_FIELDS)

    def __call__(self, call: Call) -> bytes:
        if not any(map(self.unwanted, call.body)):
            return call.body_bytes()  # the client's bytes, as they came
        return encoded({k: v for k, v in call.body.items() if not self.unwanted(k)})


def writer(drop: tuple[str, ...], forward: str) -> BodyWriter:
    """How a provider turns a call into its upstream body."""
    if not drop and forward == "all":
        return Call.body_bytes
    return FieldFilter(frozenset(drop), forward == "openai")


def settings(name: str, table: Mapping, relays_request: bool) -> dict:
    """`drop_params` and `forward_params` of a `[providers.NAME]` table, checked:
    a wrong value stops the gateway at start with a message naming the key."""
    drop = table.get("drop_params", [])
    forward = table.get("forward_params", "all")
    where = f"providers.{name}"
    if not isinstance(drop, list) or not all(isinstance(f, str) and f for f in drop):
        raise ValueError(f"{where}.drop_params in GATEWAY_CONFIG must be a list of field names")
    if kept := sorted(NEVER_DROPPED.intersection(drop)):
        raise ValueError(f"{where}.drop_params in GATEWAY_CONFIG cannot name {', '.join(kept)}: "
                         "no upstream answers without them")
    if forward not in FORWARD_CHOICES:
        raise ValueError(f"{where}.forward_params in GATEWAY_CONFIG must be one of "
                         f"{', '.join(FORWARD_CHOICES)}, not {forward!r}")
    if (drop or forward != "all") and not relays_request:
        raise ValueError(f"{where}: drop_params and forward_params apply to providers that "
                         "forward the request (openai, azure); a translated provider reads "
                         "only the fields it knows")
    return {"drop_params": tuple(drop), "forward_params": forward}
