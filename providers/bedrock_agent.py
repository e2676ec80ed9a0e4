"""`bedrock-agent`: an Amazon Bedrock Agent (InvokeAgent through boto3) answering
as a chat model.

The last user message is the agent's `inputText`; the agent keeps the rest of
the conversation itself, in its session. The session is the client's
X-Session-Id when it is a valid agent session id; otherwise it is derived from
the conversation (system prompt, `user` field and first user message), so every
turn of one conversation reaches the same agent session even from a client
that never sends a session id. Answer chunks are streamed as they arrive, cut
into word-sized pieces; traces are logged at DEBUG and give the token usage.
AGENT_STREAM_FINAL_RESPONSE=true asks the agent to stream its final answer
(its role then needs bedrock:InvokeModelWithResponseStream).
"""
from __future__ import annotations

import codecs
import hashlib
import logging
import re
from typing import Iterator

import orjson

from providers import aws
from providers.base import (Call, Event, Finish, Preset, ResponseMeta,
                            TextDelta, Usage)
from providers.echo import last_user_text, words
from providers.registry import register
from providers.translate import SERVICE_HINTS, UNSERVABLE, ParamPolicy, split_system, text_of
from proxy import tokens
from proxy.errors import GatewayError, InvalidRequest
from proxy.redact import scrub

log = logging.getLogger("switchboard.bedrock_agent")

SESSION_ID = re.compile(r"[0-9a-zA-Z._:-]{2,100}")
# the agent has its own instructions, model, tools and inference settings
POLICY = ParamPolicy(
    translated=("model", "messages", "stream", "stream_options", "user"),
    ignored=(*SERVICE_HINTS, "temperature", "top_p", "max_tokens", "max_completion_tokens",
             "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format",
             "functions", "function_call", "presence_penalty", "frequency_penalty", "seed",
             "logit_bias", "reasoning_effort", "verbosity", "web_search_options"),
    rejected=UNSERVABLE)


def derived_session(body: dict) -> str:
    """A stable id for one conversation: the same on every turn of it."""
    system, turns = split_system(body["messages"])
    first = next((text_of(m["content"]) for m in turns if m["role"] == "user"), "")
    key = orjson.dumps([system, str(body.get("user") or ""), first])
    return "conv-" + hashlib.sha256(key).hexdigest()[:40]


def session_id(call: Call) -> str:
    given = call.session_id
    if given and SESSION_ID.fullmatch(given):
        return given
    if given:  # keep the client's grouping, in the characters InvokeAgent accepts
        return "sess-" + hashlib.sha256(given.encode()).hexdigest()[:40]
    return derived_session(call.body)


def trace_usage(trace: dict) -> tuple[int, int] | None:
    output = ((trace.get("trace") or {}).get("orchestrationTrace") or {}) \
        .get("modelInvocationOutput") or {}
    found = (output.get("metadata") or {}).get("usage")
    if not found:
        return None
    return found.get("inputTokens") or 0, found.get("outputTokens") or 0


class AgentReader:
    """InvokeAgent completion events -> gateway events, with usage from traces."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.answer: list[str] = []
        self.prompt = self.completion = 0
        self.traced = False

    def events(self, item: dict) -> list[Event]:
        if "chunk" in item:
            return self.chunk(item["chunk"])
        if "trace" in item:
            self.trace(item["trace"])
        elif "returnControl" in item:
            log.warning("agent asked the caller to run an action group (returnControl); "
                        "not supported", extra={"fields": {"request_id": self.request_id}})
        return []

    def chunk(self, chunk: dict) -> list[Event]:
        text = self.decoder.decode(chunk.get("bytes") or b"")
        if not text:
            return []
        self.answer.append(text)
        return [TextDelta(piece) for piece in words(text)]

    def trace(self, trace: dict) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("agent trace", extra={"fields": {
                "request_id": self.request_id,
                "trace": scrub(orjson.dumps(trace, default=str).decode(), aws.env_secrets())}})
        found = trace_usage(trace)
        if found is not None:
            self.traced = True
            self.prompt += found[0]
            self.completion += found[1]

    def finish(self, input_text: str) -> list[Event]:
        tail = self.decoder.decode(b"", final=True)
        out: list[Event] = [TextDelta(tail)] if tail else []
        self.answer.append(tail)
        if self.traced:
            usage = Usage(self.prompt, self.completion)
        else:
            usage = Usage(tokens.estimate_text(input_text),
                          tokens.estimate_text("".join(self.answer)), estimated=True)
        return [*out, Finish("stop"), usage]


@register
class BedrockAgentProvider(aws.BotoProvider):
    type_name = "bedrock-agent"
    service = "bedrock-agent-runtime"
    presets = (Preset(name="bedrock-agent",
                      required_env=("AWS_REGION", "AGENT_ID", "AGENT_ALIAS_ID"),
                      default_model="bedrock-agent", models=("bedrock-agent",),
                      options_env={**aws.REGION_OPTIONS, "agent_id": ("AGENT_ID", None),
                                   "agent_alias_id": ("AGENT_ALIAS_ID", None),
                                   "stream_final_response": ("AGENT_STREAM_FINAL_RESPONSE", "")}),)

    def request(self, call: Call) -> dict:
        POLICY.check(call.body, self.name)
        text = last_user_text(call.body["messages"])
        if not text.strip():
            raise InvalidRequest("bedrock-agent needs a user message with text.", param="messages")
        agent, alias = self.spec.options.get("agent_id"), self.spec.options.get("agent_alias_id")
        if not agent or not alias:
            raise GatewayError(f"{self.name} has no agent: set AGENT_ID and AGENT_ALIAS_ID.",
                               code="provider_not_configured")
        request = {"agentId": agent, "agentAliasId": alias,
                   "sessionId": session_id(call), "inputText": text, "enableTrace": True}
        if (self.spec.options.get("stream_final_response") or "").lower() in ("1", "true", "yes"):
            request["streamingConfigurations"] = {"streamFinalResponse": True}
        return request

    def execute(self, call: Call) -> Iterator[Event]:
        request = self.request(call)
        with self.errors():
            stream = self.client.get().invoke_agent(**request)["completion"]
        reader = AgentReader(call.request_id)
        return self.relay(stream, [ResponseMeta(model=call.model)], reader.events,
                          lambda: reader.finish(request["inputText"]))
