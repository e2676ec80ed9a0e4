"""What the gateway needs of OpenAI's chat-completions request, as one pydantic schema.

It validates; it does not re-serialise: the gateway forwards the client's own
JSON (unknown fields included, since clients send vendor fields). Only what the
gateway reads itself (routing, limits, echo, the translators) is checked, never
more strictly than OpenAI's published schema unless the gateway needs it (a
non-empty `model`, output limits of at least 1): the rest is the upstream's to
judge. The schema is typed dicts checked by one TypeAdapter, so validating
builds no objects."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      with_config)
from typing_extensions import NotRequired, TypedDict

from proxy.errors import InvalidRequest

# Only the verdict is used, never the validated copy: fields the schema does not
# name (vendor fields) pass unchecked and are not copied ("ignore" is ~30% faster
# than "allow"), and nothing is converted ("strict"), so a JSON "2" cannot pass
# for the 2 that echo and the translators read from the body as sent.
_OPEN_CONFIG = ConfigDict(extra="ignore", strict=True)
_OPEN = with_config(_OPEN_CONFIG)
Opt = NotRequired  # a field the client may leave out


@_OPEN
class Kind(TypedDict):
    """A content part, tool, tool call or tool choice of a kind the gateway does not
    read (`input_audio`, `custom` tools, `allowed_tools`, kinds OpenAI adds later):
    forwarded; a translator that cannot express it refuses it by name."""
    type: str


def _kinds(known: dict[str, type], *before: Any) -> Any:
    """A dict checked by the shape of the known kind its `type` names; any other
    `type` passes as a `Kind`. `before`: other forms tried first (a plain string)."""
    def unknown(item: dict) -> dict:
        if item["type"] in known:
            raise ValueError(f"malformed `{item['type']}`")
        return item
    return Annotated[Union[(*before, *known.values(), Annotated[Kind, AfterValidator(unknown)])],
                     Field(union_mode="left_to_right")]


@_OPEN
class TextPart(TypedDict):
    type: Literal["text"]
    text: str


@_OPEN
class ImageURL(TypedDict):
    url: str


@_OPEN
class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = _kinds({"text": TextPart, "image_url": ImagePart})


@_OPEN
class FunctionCall(TypedDict):
    name: str
    arguments: str


@_OPEN
class FunctionToolCall(TypedDict):
    id: str
    type: Opt[Literal["function"]]  # clients leave it out: a call without a type is a function call
    function: FunctionCall


ToolCall = _kinds({"function": FunctionToolCall})

# the roles whose content the translators read unconditionally (OpenAI requires it too);
# `assistant` content is optional, `function` content may be null
_CONTENT_REQUIRED = frozenset({"system", "developer", "user", "tool"})


def _content_rules(message: dict) -> dict:
    role = message["role"]
    if role in _CONTENT_REQUIRED and message.get("content") is None:
        raise ValueError(f"{role} messages need content")
    if role == "tool" and message.get("tool_call_id") is None:
        raise ValueError("tool messages need tool_call_id")
    return message


# the same rules in JSON schema, for the OpenAPI document (proxy/openapi) only
_CONTENT_RULES_SCHEMA = {"allOf": [
    {"if": {"properties": {"role": {"enum": sorted(_CONTENT_REQUIRED)}}},
     "then": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}},
    {"if": {"properties": {"role": {"const": "tool"}}},
     "then": {"required": ["tool_call_id"], "properties": {"tool_call_id": {"type": "string"}}}}]}


@with_config({**_OPEN_CONFIG, "json_schema_extra": _CONTENT_RULES_SCHEMA})
class Message(TypedDict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Opt[Union[str, list[ContentPart], None]]
    tool_calls: Opt[list[ToolCall] | None]
    tool_call_id: Opt[str | None]


@_OPEN
class FunctionName(TypedDict):
    name: str


@_OPEN
class FunctionTool(TypedDict):
    """A function tool, or a tool choice naming one: the same shape."""
    type: Literal["function"]
    function: FunctionName


@_OPEN
class StreamOptions(TypedDict):
    include_usage: Opt[bool | None]


@_OPEN
class ResponseFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Opt[dict[str, Any] | None]


# no model answers more than this; a larger value is a client bug (or an attempt on the
# limiter's arithmetic), not a request, and upstreams read it as a 32-bit int
MAX_OUTPUT_TOKENS = 2**31 - 1


def _within(kind: type, **bounds):
    """An optional number within bounds (`None` allowed: clients send explicit nulls)."""
    return Opt[Annotated[Union[kind, None], Field(**bounds)]]


@_OPEN
class ChatRequest(TypedDict):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Annotated[Message, AfterValidator(_content_rules)]], Field(min_length=1)]
    stream: Opt[bool | None]
    stream_options: Opt[StreamOptions | None]
    # at least 1 (OpenAI's schema sets no minimum): the rate limiter adds them to its estimate
    max_tokens: _within(int, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: _within(int, ge=1, le=MAX_OUTPUT_TOKENS)
    n: _within(int, ge=1, le=128)
    temperature: _within(float, ge=0, le=2)
    top_p: _within(float, ge=0, le=1)
    stop: Opt[Union[str, list[str], None]]
    reasoning_effort: Opt[str | None]
    tools: Opt[list[_kinds({"function": FunctionTool})] | None]
    tool_choice: Opt[_kinds({"function": FunctionTool}, Literal["none", "auto", "required"], None)]
    response_format: Opt[ResponseFormat | None]


# validated as plain dicts: no model instance per message (3-4x faster on a long conversation)
_CHAT_REQUEST = TypeAdapter(ChatRequest)


_UNION_TAGS = {"str", "none", "int", "float", "bool", "datetime", "date", "dict", "list"}


def _param(loc: tuple) -> str | None:
    """`messages[0].content[1].text` from pydantic's location, union branch tags skipped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[a-z_][a-z0-9_]*", part) and part not in _UNION_TAGS:
            out += ("." if out else "") + part
    return out or None


def _most_specific(errors: list[dict]) -> dict:
    """A union reports every branch: leave out the branches whose `type` tag did not
    match (a content part is the kind its `type` says), then the deepest error is
    the most specific one."""
    wrong_kind = {e["loc"][:-1] for e in errors
                  if e["type"] == "literal_error" and e["loc"][-1:] == ("type",)}
    matching = [e for e in errors if e["loc"][:-1] not in wrong_kind] or errors
    return max(matching, key=lambda e: len(e["loc"]))


def validate(body: dict) -> None:
    _checked(_CHAT_REQUEST.validate_python, body)


def validate_as(model: type[BaseModel], body: dict):
    """`body` as an instance of `model`; the first problem becomes a 400 naming its field."""
    return _checked(model.model_validate, body)


def _checked(validator, body: dict):
    try:
        return validator(body)
    except ValidationError as exc:
        first = _most_specific(exc.errors())
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                                 code="missing_required_parameter") from None
        raise InvalidRequest(f"Invalid value for '{param}': {message}.", param=param,
                             code="invalid_value") from None
