"""`bedrock`: Amazon Bedrock's Converse and ConverseStream APIs through boto3.

The OpenAI request becomes a Converse request (system blocks, strictly alternating
turns, toolConfig, inferenceConfig). Whole and streamed answers share one
translator: a whole answer is replayed as the stream events it would have been.
Where OpenAI and Converse differ:
  * `tool_choice: "none"`: toolConfig is omitted, unless the history holds tool
    blocks (Converse then requires it): tools are declared without toolChoice and
    any tool call in the answer is dropped.
  * `response_format` json_schema/json_object: a forced tool with that input
    schema; its input is returned as the message text.
  * user text or images after tool results go inside the last toolResult
    (Converse refuses text and toolResult blocks in one turn).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Iterator

import orjson

from providers import aws
from providers.base import (Call, Event, Finish, Preset, ReasoningDelta,
                            ResponseMeta, TextDelta, ToolCallDelta, Usage)
from providers.registry import register
from providers.translate import (LEGACY_FUNCTIONS, OPENING_USER_TEXT, SERVICE_HINTS,
                                 SYSTEM_ROLES, UNSERVABLE, ParamPolicy, json_schema, mapped,
                                 max_output_tokens, merge_turns, only_functions, opened_by_user,
                                 parse_data_url, parts, split_system, stop_sequences,
                                 tool_arguments, tool_choice)
from proxy.errors import InvalidRequest

POLICY = ParamPolicy(
    translated=("model", "messages", "stream", "stream_options", "max_tokens",
                "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
                "response_format"),
    ignored=(*SERVICE_HINTS, "presence_penalty", "frequency_penalty", "seed", "user", "logit_bias",
             "parallel_tool_calls", "reasoning_effort", "verbosity", "web_search_options"),
    rejected={**UNSERVABLE, **LEGACY_FUNCTIONS})

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                 "image/gif": "gif", "image/webp": "webp"}
JSON_TOOL = "json_response"
OPEN_SCHEMA = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Plan:
    """How to read the answer: JSON-tool input is text; tool calls may be dropped."""
    json_tool: bool = False
    no_tools: bool = False


# ---- request ---------------------------------------------------------------

def _decode(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except binascii.Error:
        raise InvalidRequest(f"{where}: the image data URL holds invalid base64.",
                             param=where) from None


def image_block(url: str, where: str) -> dict:
    data_url = parse_data_url(url)
    if data_url is not None:
        media_type, data = data_url[0], _decode(data_url[1], where)
    elif url.startswith(("http://", "https://")):
        from proxy.media import fetch_image
        data, media_type = fetch_image(url)
    else:
        raise InvalidRequest(f"{where}: image URLs must be data: or http(s) URLs.", param=where)
    fmt = IMAGE_FORMATS.get(media_type.lower())
    if fmt is None:
        raise InvalidRequest(f"{where}: bedrock accepts png, jpeg, gif or webp images, not "
                             f"{media_type}.", param=where)
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def content_blocks(content, where: str) -> list[dict]:
    blocks = []
    for j, part in enumerate(parts(content)):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            if part.get(kind):
                blocks.append({"text": part[kind]})
        elif kind == "image_url":
            blocks.append(image_block(part["image_url"]["url"], f"{where}.content[{j}]"))
        else:
            raise InvalidRequest(f"{where}.content[{j}]: content parts of type `{kind}` are not "
                                 "supported by bedrock.", param=f"{where}.content[{j}].type")
    return blocks


def assistant_blocks(message: dict, where: str) -> list[dict]:
    blocks = content_blocks(message.get("content"), where)
    for k, call in enumerate(only_functions(message.get("tool_calls"), f"{where}.tool_calls",
                                            "bedrock")):
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": call["function"]["name"],
                                   "input": tool_arguments(call, f"{where}.tool_calls[{k}]")}})
    return blocks


def user_turn(blocks: list[dict]) -> list[dict]:
    """Text and images cannot share a turn with toolResult blocks: they move into
    the last result's content."""
    results = [b for b in blocks if "toolResult" in b]
    others = [b for b in blocks if "toolResult" not in b]
    if not results or not others:
        return blocks
    results[-1]["toolResult"]["content"].extend(others)
    return results


_ROLES = {"user": ("user", lambda m, w: content_blocks(m["content"], w)),
          "assistant": ("assistant", assistant_blocks),
          "tool": ("user", lambda m, w: [{"toolResult": {
              "toolUseId": m["tool_call_id"], "content": content_blocks(m["content"], w)}}])}


def converse_messages(messages: list[dict]) -> list[dict]:
    turns = []
    for i, message in enumerate(messages):
        role = message["role"]
        if role in SYSTEM_ROLES:
            continue
        if role not in _ROLES:
            raise InvalidRequest(f"messages[{i}]: role `{role}` is not supported by bedrock; "
                                 "use tools and tool messages.", param=f"messages[{i}].role")
        target, convert = _ROLES[role]
        turns.append((target, convert(message, f"messages[{i}]")))
    merged = opened_by_user(merge_turns((role, blocks) for role, blocks in turns if blocks),
                            {"text": OPENING_USER_TEXT})
    return [{"role": role, "content": user_turn(blocks) if role == "user" else blocks}
            for role, blocks in merged]


def tool_spec(name: str, description: str | None, schema: dict | None) -> dict:
    spec = {"name": name, "inputSchema": {"json": schema or OPEN_SCHEMA}}
    if description:
        spec["description"] = description
    return {"toolSpec": spec}


_CHOICES = {"auto": lambda name: {"auto": {}}, "required": lambda name: {"any": {}},
            "function": lambda name: {"tool": {"name": name}}}


def tool_config(body: dict, messages: list[dict]) -> tuple[dict | None, Plan]:
    choice, name = tool_choice(body) or ("auto", None)
    schema = json_schema(body)
    declared = [tool_spec(f["name"], f.get("description"), f.get("parameters"))
                for f in (t["function"] for t in only_functions(body.get("tools"), "tools",
                                                                "bedrock"))]
    callable_ = bool(declared) and choice != "none"
    in_history = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    history = dict.fromkeys(b["toolUse"]["name"] for m in messages for b in m["content"]
                            if "toolUse" in b)
    specs = (declared or [tool_spec(n, None, None) for n in history]) \
        if callable_ or in_history else []
    if schema is not None:
        specs.append(tool_spec(JSON_TOOL, "Give the answer as this tool's input, which follows "
                               "the requested JSON schema.", schema))
    plan = Plan(json_tool=schema is not None, no_tools=not callable_)
    if not specs:
        return None, plan
    config = {"tools": specs}
    if callable_:
        config["toolChoice"] = _CHOICES[choice](name)
    elif schema is not None:
        config["toolChoice"] = {"tool": {"name": JSON_TOOL}}
    return config, plan


def inference_config(body: dict) -> dict:
    config = {"maxTokens": max_output_tokens(body, 0) or None,
              "temperature": body.get("temperature"), "topP": body.get("top_p"),
              "stopSequences": stop_sequences(body) or None}
    return {k: v for k, v in config.items() if v is not None}


def converse_request(call: Call) -> tuple[dict, Plan]:
    body = call.body
    POLICY.check(body, "bedrock")
    system, _ = split_system(body["messages"])
    messages = converse_messages(body["messages"])
    config, plan = tool_config(body, messages)
    request = {"modelId": call.model, "messages": messages,
               "system": [{"text": text} for text in system],
               "inferenceConfig": inference_config(body), "toolConfig": config}
    return {k: v for k, v in request.items() if v or k == "messages"}, plan


# ---- response --------------------------------------------------------------

def usage(u: dict) -> Usage:
    read, write = u.get("cacheReadInputTokens") or 0, u.get("cacheWriteInputTokens") or 0
    return Usage(prompt_tokens=(u.get("inputTokens") or 0) + read + write,
                 completion_tokens=u.get("outputTokens") or 0, cached_tokens=read)


def as_stream(response: dict) -> Iterator[dict]:
    """A whole Converse answer as the ConverseStream events it would have been."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or ()
    for index, block in enumerate(content):
        if "text" in block:
            yield {"contentBlockDelta": {"contentBlockIndex": index,
                                         "delta": {"text": block["text"]}}}
        elif "toolUse" in block:
            use = block["toolUse"]
            yield {"contentBlockStart": {"contentBlockIndex": index, "start": {"toolUse": {
                "toolUseId": use["toolUseId"], "name": use["name"]}}}}
            yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"toolUse": {
                "input": orjson.dumps(use.get("input", {})).decode()}}}}
        elif "reasoningContent" in block:
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            yield {"contentBlockDelta": {"contentBlockIndex": index,
                                         "delta": {"reasoningContent": {"text": text}}}}
    yield {"messageStop": {"stopReason": response.get("stopReason")}}
    yield {"metadata": {"usage": response.get("usage") or {}}}


class Translator:
    """ConverseStream events -> gateway events. OpenAI's tool-call index counts
    tool calls; Converse's contentBlockIndex counts every block."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.blocks: dict[int, int | str] = {}  # block index -> tool-call index or "text"
        self.calls = 0

    def events(self, item: dict) -> list[Event]:
        """Events for one ConverseStream item; messageStart and blockStop give none."""
        return [e for kind, data in item.items() if kind in self._HANDLERS
                for e in self._HANDLERS[kind](self, data)]

    def block_start(self, event: dict) -> list[Event]:
        use = (event.get("start") or {}).get("toolUse")
        if not use:
            return []
        index = event.get("contentBlockIndex", 0)
        if self.plan.json_tool and use.get("name") == JSON_TOOL:
            self.blocks[index] = "text"
            return []
        if self.plan.no_tools:
            return []
        self.blocks[index] = self.calls
        self.calls += 1
        return [ToolCallDelta(self.blocks[index], id=use.get("toolUseId"), name=use.get("name"))]

    def block_delta(self, event: dict) -> list[Event]:
        delta = event.get("delta") or {}
        if delta.get("text"):
            return [TextDelta(delta["text"])]
        if "toolUse" in delta:
            fragment = delta["toolUse"].get("input") or ""
            target = self.blocks.get(event.get("contentBlockIndex", 0))
            if target == "text":
                return [TextDelta(fragment)] if fragment else []
            return [ToolCallDelta(target, arguments=fragment)] if target is not None else []
        text = (delta.get("reasoningContent") or {}).get("text")
        return [ReasoningDelta(text)] if text else []

    def stop(self, event: dict) -> list[Event]:
        reason = mapped(STOP_REASONS, event.get("stopReason"), "stop")
        return [Finish("stop" if reason == "tool_calls" and not self.calls else reason)]

    def metadata(self, event: dict) -> list[Event]:
        return [usage(event["usage"])] if event.get("usage") else []

    _HANDLERS = {"contentBlockStart": block_start, "contentBlockDelta": block_delta,
                 "messageStop": stop, "metadata": metadata}


@register
class BedrockProvider(aws.BotoProvider):
    type_name = "bedrock"
    service = "bedrock-runtime"
    presets = (Preset(name="bedrock", required_env=("AWS_REGION",),
                      default_model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                      models=("us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                              "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                              "us.amazon.nova-pro-v1:0", "us.amazon.nova-lite-v1:0",
                              "us.amazon.nova-micro-v1:0"),
                      options_env=aws.REGION_OPTIONS),)

    def execute(self, call: Call) -> Iterator[Event]:
        request, plan = converse_request(call)
        client, translator = self.client.get(), Translator(plan)
        head = [ResponseMeta(model=call.model)]
        with self.errors():
            if call.stream:
                stream = client.converse_stream(**request)["stream"]
                return self.relay(stream, head, translator.events)
            response = client.converse(**request)
        return iter([*head, *(e for item in as_stream(response) for e in translator.events(item))])
