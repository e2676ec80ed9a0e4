"""Anthropic Messages API (`POST {base}/v1/messages`), translated both ways.
A non-streamed message is replayed as the stream events that would have carried
it, so both paths share one translator."""
from __future__ import annotations

from typing import Iterator

import orjson

from providers import translate as tr
from providers.base import (Call, CompletionProvider, Event, Finish, Preset, ReasoningDelta,
                            ResponseMeta, TextDelta, ToolCallDelta, Usage)
from providers.registry import register
from proxy import errors
from proxy.redact import scrub
from proxy.relay_headers import forwarded
from proxy.sse import iter_events

PRESET = Preset(
    name="anthropic", base_url="https://api.anthropic.com", base_url_env="ANTHROPIC_BASE_URL",
    key_env="ANTHROPIC_API_KEY", required_env=("ANTHROPIC_API_KEY",),
    default_model="claude-sonnet-4-5",
    models=("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "claude-3-5-haiku-latest"),
    options_env={"version": ("ANTHROPIC_VERSION", "2023-06-01"),
                 "default_max_tokens": ("ANTHROPIC_DEFAULT_MAX_TOKENS", "4096")})

#: the tool a `response_format` schema becomes; its input is the answer's text
JSON_TOOL = "json_response"

POLICY = tr.ParamPolicy(
    translated=("model", "messages", "stream", "stream_options", "max_tokens",
                "max_completion_tokens", "temperature", "top_p", "user", "stop", "tools",
                "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort"),
    ignored=(*tr.SERVICE_HINTS, "seed", "presence_penalty", "frequency_penalty", "logit_bias",
             "verbosity", "web_search_options"),
    rejected={**tr.UNSERVABLE, **tr.LEGACY_FUNCTIONS})

# OpenAI parameter -> (Anthropic parameter, conversion)
PARAMS = {
    "temperature": ("temperature", lambda v: min(v, 1.0)),  # Anthropic's range is 0..1
    "top_p": ("top_p", None),
    "top_k": ("top_k", None),  # a vendor field some clients send
    "user": ("metadata", lambda v: {"user_id": v}),
}
TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any", "function": "tool"}
THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
          "max_tokens": "length", "model_context_window_exceeded": "length",
          "tool_use": "tool_calls", "refusal": "content_filter"}

# Anthropic status, error.type -> error class, OpenAI status, OpenAI type, code (None: the class's)
_ERROR_ROWS = (
    (400, "invalid_request_error", errors.InvalidRequest, 400, None, None),
    (401, "authentication_error", errors.AuthenticationError, 401, None, "invalid_api_key"),
    (402, "billing_error", errors.GatewayError, 402, "insufficient_quota", "insufficient_quota"),
    (403, "permission_error", errors.PermissionDenied, 403, None, None),
    (404, "not_found_error", errors.ModelNotFound, 404, None, "model_not_found"),
    (413, "request_too_large", errors.PayloadTooLarge, 413, None, None),
    (429, "rate_limit_error", errors.RateLimited, 429, None, "rate_limit_exceeded"),
    (500, "api_error", errors.UpstreamError, 502, None, None),
    (529, "overloaded_error", errors.UpstreamError, 503, None, "overloaded"),
    (504, "timeout_error", errors.UpstreamTimeout, 504, None, None),
)
ERRORS = {row[1]: row[2:] for row in _ERROR_ROWS}
STATUS_ERRORS = {row[0]: row[1] for row in _ERROR_ROWS}  # when the body names no known type


# ---- request ----------------------------------------------------------------

def _text(part: dict, where: str) -> dict | None:
    text = part.get("text") if part["type"] == "text" else part.get("refusal")
    return {"type": "text", "text": text} if text else None  # empty text blocks are a 400


def _image(part: dict, where: str) -> dict:
    url = (part.get("image_url") or {}).get("url", "")
    data = tr.parse_data_url(url)
    if data:
        return {"type": "image", "source": {"type": "base64", "media_type": data[0],
                                            "data": data[1]}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise errors.InvalidRequest("Image URLs must be http(s) or base64 data URLs.", param=where)


PARTS = {"text": _text, "refusal": _text, "image_url": _image}


def _blocks(content, where: str) -> list[dict]:
    blocks = []
    for j, part in enumerate(tr.parts(content)):
        convert = PARTS.get(part.get("type"))
        if convert is None:
            raise errors.InvalidRequest(f"Content parts of type `{part.get('type')}` are not "
                                        "supported by anthropic.", param=f"{where}.content[{j}]")
        block = convert(part, f"{where}.content[{j}]")
        if block:
            blocks.append(block)
    return blocks


def _assistant(message: dict, where: str) -> tuple[str, list]:
    blocks = _blocks(message.get("content"), where)
    for j, call in enumerate(tr.only_functions(message.get("tool_calls"), f"{where}.tool_calls",
                                               "anthropic")):
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                       "input": tr.tool_arguments(call, f"{where}.tool_calls[{j}]")})
    return "assistant", blocks


def _tool_result(message: dict, where: str) -> tuple[str, list]:
    result = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    content = _blocks(message.get("content"), where)
    if content:
        result["content"] = content
    return "user", [result]


TURNS = {"user": lambda message, where: ("user", _blocks(message.get("content"), where)),
         "assistant": _assistant, "tool": _tool_result}


def messages(openai_messages: list[dict]) -> list[dict]:
    turns = []
    for i, message in enumerate(openai_messages):
        if message["role"] in tr.SYSTEM_ROLES:
            continue
        if message["role"] not in TURNS:
            raise errors.InvalidRequest(f"`{message['role']}` messages are not supported by "
                                        "anthropic; use `tool`.", param=f"messages[{i}].role")
        turns.append(TURNS[message["role"]](message, f"messages[{i}]"))
    merged = tr.opened_by_user(tr.merge_turns(t for t in turns if t[1]),
                               {"type": "text", "text": tr.OPENING_USER_TEXT})
    return [{"role": role, "content": blocks} for role, blocks in merged]


def _tool_def(function: dict) -> dict:
    tool = {"name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(body: dict) -> dict | None:
    picked = tr.tool_choice(body)
    choice = {"type": TOOL_CHOICE[picked[0]]} if picked else None
    if picked and picked[1]:
        choice["name"] = picked[1]
    if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def _tools(body: dict, out: dict) -> str | None:
    """tools and tool_choice into `out`; the JSON tool's name when one is added."""
    tools = [_tool_def(t["function"]) for t in tr.only_functions(body.get("tools"), "tools",
                                                                  "anthropic")]
    choice = _tool_choice(body)
    schema = tr.json_schema(body)
    if schema is not None:
        about = (body.get("response_format") or {}).get("json_schema") or {}
        what = about.get("description") or about.get("name") or "the answer"
        tools.append({"name": JSON_TOOL, "input_schema": schema,
                      "description": f"Give your final answer ({what}) as this tool's input."})
        if not body.get("tools"):  # the client's own tools stay callable otherwise
            choice = {"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": True}
    if tools:
        out["tools"] = tools
        if choice:
            out["tool_choice"] = choice
    return JSON_TOOL if schema is not None else None


def _thinking(body: dict, out: dict) -> None:
    """`reasoning_effort` as a thinking budget, which must stay below max_tokens."""
    budget = THINKING_BUDGET.get(body.get("reasoning_effort"))
    if budget is None:
        return
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        budget = min(budget, out["max_tokens"] - 1)
    else:
        out["max_tokens"] += budget
    if budget < MIN_THINKING_BUDGET:
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for param in ("temperature", "top_p", "top_k"):  # not allowed with thinking
        out.pop(param, None)
    if (out.get("tool_choice") or {}).get("type") in ("any", "tool"):  # nor is forced tool use
        out["tool_choice"] = {"type": "auto"}


def build_request(body: dict, model: str, stream: bool,
                  default_max_tokens: int) -> tuple[dict, str | None]:
    """The Messages body for an OpenAI body, and the JSON tool's name if one is used."""
    POLICY.check(body, "anthropic")
    system, _ = tr.split_system(body["messages"])
    out = {"model": model, "max_tokens": tr.max_output_tokens(body, default_max_tokens),
           "messages": messages(body["messages"])}
    if system:
        out["system"] = "\n\n".join(system)
    for param, (target, convert) in PARAMS.items():
        if body.get(param) is not None:
            out[target] = convert(body[param]) if convert else body[param]
    if stops := tr.stop_sequences(body):
        out["stop_sequences"] = stops
    json_tool = _tools(body, out)
    _thinking(body, out)
    if stream:
        out["stream"] = True
    return out, json_tool


# ---- response ---------------------------------------------------------------

def usage(counts: dict) -> Usage:
    cached = counts.get("cache_read_input_tokens") or 0
    prompt = (counts.get("input_tokens") or 0) + (counts.get("cache_creation_input_tokens") or 0)
    return Usage(prompt + cached, counts.get("output_tokens") or 0, cached_tokens=cached)


def _counts(raw) -> dict:
    return {k: v for k, v in (raw or {}).items() if isinstance(v, int)}


class Translator:
    """Anthropic stream events -> provider events. OpenAI's tool-call `index`
    counts tool calls, so calls are numbered here, apart from block indexes."""

    def __init__(self, json_tool: str | None = None):
        self.json_tool = json_tool
        self.calls = 0  # tool calls started
        self.block: str | None = None  # kind of the open block: text, thinking, tool, json…
        self.args = False  # the open tool block sent argument text
        self.counts: dict = {}
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, name: str | None, data: dict) -> Iterator[Event]:
        handler = getattr(self, f"on_{name or data.get('type')}", None)
        return () if self.done or handler is None else handler(data)

    def on_message_start(self, data: dict) -> Iterator[Event]:
        message = data.get("message") or {}
        self.counts.update(_counts(message.get("usage")))
        yield ResponseMeta(id=message.get("id"), model=message.get("model"))

    def on_content_block_start(self, data: dict) -> Iterator[Event]:
        block = data.get("content_block") or {}
        self.block, self.args = block.get("type"), False
        if self.block == "tool_use":
            self.block = "json" if block.get("name") == self.json_tool else "tool"
        if self.block == "tool":
            yield ToolCallDelta(self.calls, id=block.get("id"), name=block.get("name"))
            self.calls += 1

    def on_content_block_delta(self, data: dict) -> Iterator[Event]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            yield TextDelta(delta["text"])
        elif kind == "thinking_delta" and delta.get("thinking"):
            yield ReasoningDelta(delta["thinking"])
        elif kind == "input_json_delta" and delta.get("partial_json"):
            yield from self._arguments(delta["partial_json"])

    def _arguments(self, text: str) -> Iterator[Event]:
        self.args = True
        if self.block == "json":
            yield TextDelta(text)
        elif self.block == "tool":
            yield ToolCallDelta(self.calls - 1, arguments=text)

    def on_content_block_stop(self, data: dict) -> Iterator[Event]:
        if self.block in ("tool", "json") and not self.args:
            yield from self._arguments("{}")  # a call without arguments still sends an object
        self.block = None

    def on_message_delta(self, data: dict) -> Iterator[Event]:
        self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
        self.counts.update(_counts(data.get("usage")))
        return ()

    def on_message_stop(self, data: dict) -> Iterator[Event]:
        self.done = True
        reason = tr.mapped(FINISH, self.stop_reason, "stop")
        # only the JSON tool was called: to the client that is a plain answer
        yield Finish("stop" if reason == "tool_calls" and not self.calls else reason)
        yield usage(self.counts)


AS_DELTA = {  # a whole content block as the one delta that would have streamed it
    "text": lambda b: {"type": "text_delta", "text": b.get("text") or ""},
    "thinking": lambda b: {"type": "thinking_delta", "thinking": b.get("thinking") or ""},
    "tool_use": lambda b: {"type": "input_json_delta",
                           "partial_json": orjson.dumps(b.get("input") or {}).decode()},
}


def replay(message: dict) -> Iterator[tuple[str, dict]]:
    """A whole message as the stream events that would have carried it."""
    yield "message_start", {"message": {**message, "content": []}}
    for index, block in enumerate(message.get("content") or ()):
        yield "content_block_start", {"index": index, "content_block": block}
        if block.get("type") in AS_DELTA:
            yield "content_block_delta", {"index": index, "delta": AS_DELTA[block["type"]](block)}
        yield "content_block_stop", {"index": index}
    yield "message_delta", {"delta": {"stop_reason": message.get("stop_reason")},
                            "usage": message.get("usage")}
    yield "message_stop", {}


def _object(raw: bytes) -> dict:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise errors.UpstreamError("anthropic sent a body that is not a JSON object.")
    return value


def upstream_error(status: int | None, raw: bytes, secrets: tuple[str, ...] = (),
                   headers: dict | None = None) -> errors.GatewayError:
    """Map by the structured error.type, then the status; never by message text."""
    fields = errors.openai_error_fields(raw)  # Anthropic's body has OpenAI's `error` object too
    kind, message = fields.get("type"), scrub(fields["message"], secrets)
    entry = ERRORS.get(kind) or ERRORS.get(STATUS_ERRORS.get(status))
    if entry is None and status is not None and 400 <= status < 500:
        entry = (errors.GatewayError, status, "invalid_request_error", None)
    cls, code_status, error_type, code = entry or ERRORS["api_error"]
    if issubclass(cls, (errors.UpstreamError, errors.UpstreamTimeout)):
        where = f"with status {status}" if status else "mid-stream"
        message = f"anthropic failed {where} ({kind or 'unknown error'}): {message}"
    return cls(message, status=code_status, type=error_type, code=code, headers=headers)


@register
class AnthropicProvider(CompletionProvider):
    type_name = "anthropic"
    presets = (PRESET,)

    def __init__(self, spec, http):
        super().__init__(spec, http)
        base = (spec.base_url or PRESET.base_url).rstrip("/").removesuffix("/v1")
        self.url = base + "/v1/messages"
        self.default_max_tokens = int(spec.options.get("default_max_tokens") or 4096)
        self.headers = {"x-api-key": spec.api_key or "", "content-type": "application/json",
                        "anthropic-version": spec.options.get("version") or "2023-06-01",
                        **spec.headers}

    def execute(self, call: Call) -> Iterator[Event]:
        body, json_tool = build_request(call.body, call.model, call.stream,
                                        self.default_max_tokens)
        resp = self.http.request("POST", self.url, headers=dict(self.headers),
                                 body=orjson.dumps(body), provider=self.name, timeouts=self.timeouts)
        if resp.status >= 400:
            keep = {k: v for k, v in forwarded(resp.headers()).items() if k == "retry-after"}
            raise upstream_error(resp.status, resp.read(), self.secrets(), keep)
        translator = Translator(json_tool)
        if not call.stream:
            message = _object(resp.read())
            return (event for name, data in replay(message)
                    for event in translator.feed(name, data))
        return self._stream(resp, translator)

    def _stream(self, resp, translator: Translator) -> Iterator[Event]:
        try:
            for name, data in iter_events(resp.events()):
                if name == "error":
                    raise upstream_error(None, data, self.secrets())
                yield from translator.feed(name, _object(data))
            if not translator.done:
                raise errors.UpstreamError("anthropic ended the stream before message_stop.")
        finally:
            resp.close()  # also on GeneratorExit: a client gone closes the upstream at once
