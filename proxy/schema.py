"""OpenAI's chat-completions request, as one pydantic model.

It validates; it does not re-serialise: the gateway forwards the client's own
JSON (unknown fields included, since clients send vendor fields)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.errors import InvalidRequest


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(_Open):
    """input_audio, file, refusal and parts OpenAI adds later."""
    type: str

    @model_validator(mode="after")
    def _not_known(self):
        if self.type in ("text", "image_url"):
            raise ValueError(f"malformed {self.type} content part")
        return self


ContentPart = Annotated[Union[TextPart, ImagePart, OtherPart], Field(union_mode="left_to_right")]


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_rules(self):
        if self.role == "assistant":
            if self.content is None and not self.tool_calls and not getattr(self, "function_call", None):
                raise ValueError("assistant messages need content or tool_calls")
        elif self.content is None:
            raise ValueError(f"{self.role} messages need content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need tool_call_id")
        return self


class FunctionDef(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(_Open):
    include_usage: bool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: Union[str, list[str], None] = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], dict[str, Any], None] = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


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


def validate(body: dict) -> ChatRequest:
    return validate_as(ChatRequest, body)


def validate_as(model: type[BaseModel], body: dict):
    """Validate `body` as `model`; the first problem becomes a 400 naming its field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # the deepest error is the most specific one (a union reports every branch)
        first = max(exc.errors(), key=lambda e: len(e["loc"]))
        param = _param(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                                 code="missing_required_parameter") from None
        raise InvalidRequest(f"Invalid value for '{param}': {message}.", param=param,
                             code="invalid_value") from None
