"""OpenAI's chat-completions request, as one pydantic schema.

It validates; it does not re-serialise: the gateway forwards the client's own
JSON (unknown fields included, since clients send vendor fields). The schema is
typed dicts checked by one TypeAdapter, so validating builds no objects."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      with_config)
from typing_extensions import NotRequired, TypedDict

from proxy.errors import InvalidRequest


_OPEN = with_config(ConfigDict(extra="allow"))  # vendor fields are kept, never rejected
Opt = NotRequired  # a field the client may leave out


@_OPEN
class TextPart(TypedDict):
    type: Literal["text"]
    text: str


@_OPEN
class ImageURL(TypedDict):
    url: str
    detail: Opt[str | None]


@_OPEN
class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


def _not_known(part: dict) -> dict:
    if part["type"] in ("text", "image_url"):
        raise ValueError(f"malformed {part['type']} content part")
    return part


@_OPEN
class OtherPart(TypedDict):
    """input_audio, file, refusal and parts OpenAI adds later."""
    type: str


ContentPart = Annotated[Union[TextPart, ImagePart, Annotated[OtherPart, AfterValidator(_not_known)]],
                        Field(union_mode="left_to_right")]


@_OPEN
class FunctionCall(TypedDict):
    name: str
    arguments: str


@_OPEN
class ToolCall(TypedDict):
    id: str
    type: Opt[Literal["function"]]
    function: FunctionCall


def _content_rules(message: dict) -> dict:
    role, content = message["role"], message.get("content")
    if role == "assistant":
        if content is None and not message.get("tool_calls") and not message.get("function_call"):
            raise ValueError("assistant messages need content or tool_calls")
    elif content is None:
        raise ValueError(f"{role} messages need content")
    if role == "tool" and not message.get("tool_call_id"):
        raise ValueError("tool messages need tool_call_id")
    return message


@_OPEN
class Message(TypedDict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Opt[Union[str, list[ContentPart], None]]
    name: Opt[str | None]
    tool_calls: Opt[list[ToolCall] | None]
    tool_call_id: Opt[str | None]


@_OPEN
class FunctionDef(TypedDict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: Opt[str | None]
    parameters: Opt[dict[str, Any] | None]
    strict: Opt[bool | None]


@_OPEN
class Tool(TypedDict):
    type: Literal["function"]
    function: FunctionDef


@_OPEN
class StreamOptions(TypedDict):
    include_usage: Opt[bool | None]


@_OPEN
class ResponseFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Opt[dict[str, Any] | None]


def _within(kind: type, **bounds):
    """An optional number within bounds (`None` allowed: clients send explicit nulls)."""
    return Opt[Annotated[Union[kind, None], Field(**bounds)]]


@_OPEN
class ChatRequest(TypedDict):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Annotated[Message, AfterValidator(_content_rules)]], Field(min_length=1)]
    stream: Opt[bool | None]
    stream_options: Opt[StreamOptions | None]
    max_tokens: _within(int, ge=1)
    max_completion_tokens: _within(int, ge=1)
    n: _within(int, ge=1, le=128)
    temperature: _within(float, ge=0, le=2)
    top_p: _within(float, ge=0, le=1)
    presence_penalty: _within(float, ge=-2, le=2)
    frequency_penalty: _within(float, ge=-2, le=2)
    stop: Opt[Union[str, list[str], None]]
    logprobs: Opt[bool | None]
    top_logprobs: _within(int, ge=0, le=20)
    logit_bias: Opt[dict[str, float] | None]
    seed: Opt[int | None]
    user: Opt[str | None]
    tools: Opt[list[Tool] | None]
    tool_choice: Opt[Union[Literal["none", "auto", "required"], dict[str, Any], None]]
    parallel_tool_calls: Opt[bool | None]
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
