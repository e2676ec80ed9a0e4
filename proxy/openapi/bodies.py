"""Request bodies and parameters, built from what the routes validate with: the
check tables of proxy/params.py (each check carries its JSON schema) and the chat
request's pydantic schema (proxy/schema.py), so the document follows them."""
from __future__ import annotations

from functools import cache
from typing import Iterable, Mapping

from pydantic import TypeAdapter

from proxy import params
from proxy.openapi.shapes import STRING, array, nullable, obj
from proxy.schema import ChatRequest

REF_TEMPLATE = "#/components/schemas/{model}"


@cache
def chat_schema() -> tuple[dict, dict]:
    """The chat request's JSON schema and the schemas it refers to (its components)."""
    schema = TypeAdapter(ChatRequest).json_schema(ref_template=REF_TEMPLATE)
    components = schema.pop("$defs")
    properties = schema["properties"]
    # checked beside the schema (proxy/completion.py), with the same definition
    properties["model"] = {**properties["model"], "pattern": f"^[^{params.CONTROL}]*$"}
    properties["provider"] = nullable({**STRING, "description": "The provider to use (removed "
                                       "before forwarding); the X-Provider header wins."})
    return schema, components


def chat_fields(*without: str) -> dict:
    return {k: v for k, v in chat_schema()[0]["properties"].items() if k not in without}


def from_checks(checks: Mapping[str, params.Check], *, required: Iterable[str] = (),
                never_null: Iterable[str] = (), closed: bool = False) -> dict:
    """An object of the fields a check table reads, each as its check accepts it
    (or null, which a route reads as unset, unless `never_null` names it)."""
    never_null = set(never_null)
    properties = {name: check.schema if name in never_null else nullable(check.schema)
                  for name, check in checks.items()}
    body = obj(tuple(required), **properties)
    return {**body, "additionalProperties": False} if closed else body


def query(checks: Mapping[str, params.Check], **described: str) -> list[dict]:
    """Query parameters read through a check table (numbers sent as ASCII digits)."""
    return [parameter("query", name, check.schema, described.get(name, ""))
            for name, check in checks.items()]


def parameter(where: str, name: str, schema: dict, description: str = "") -> dict:
    out = {"name": name, "in": where, "required": where == "path", "schema": schema}
    return {**out, "description": description} if description else out


def feedback(completion_id: params.Check, message_id: params.Check,
             checks: Mapping[str, params.Check]) -> dict:
    """POST /v1/feedback: on a completion or a message (not both), with a type or a rating."""
    target = obj((), completion_id=completion_id.schema, message_id=digits_too(message_id),
                 **from_checks(checks)["properties"])
    return {**target, "oneOf": [present("completion_id"), present("message_id")],
            "anyOf": [present("feedback_type"), present("rating")]}


def present(name: str) -> dict:
    """`name` given and not null (null reads as unset)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def digits_too(check: params.Check) -> dict:
    """An integer check's values, also as their ASCII digits (ids clients keep as text)."""
    return {"anyOf": [check.schema, {"type": "string", "pattern": "^[0-9]{1,19}$"}]}


def _content_parts() -> dict:
    """A message's list of content parts, as the chat schema has it."""
    content = chat_schema()[1]["Message"]["properties"]["content"]["anyOf"]
    return next(branch for branch in content if branch.get("type") == "array")


def session_turn() -> dict:
    """POST /v1/sessions/{id}/messages: `content` and the chat fields, without messages."""
    content = {"anyOf": [{**STRING, "minLength": 1}, {**_content_parts(), "minItems": 1}],
               "description": "the new user message"}
    return obj(("content",), content=content, **chat_fields("messages"))


def compare(max_models: int) -> dict:
    target = {"anyOf": [{**STRING, "minLength": 1},
                        {**obj(("model",), model={**STRING, "minLength": 1}, provider=STRING),
                         "additionalProperties": False}]}
    return obj(("models", "messages"), models=array(target, minItems=2, maxItems=max_models),
               system_prompt=nullable({**STRING, "description": "added as a system message when "
                                       "the messages have none"}),
               **chat_fields("model"))


def chain(max_steps: int, not_per_step: Iterable[str]) -> dict:
    step = obj(("model",), system_prompt=nullable({**STRING, "description": "replaces the "
                                                   "input's system messages for this step"}),
               **chat_fields(*not_per_step))
    return obj(("steps", "messages"), steps=array(step, minItems=1, maxItems=max_steps),
               system_prompt=nullable({**STRING, "description": "every step's default prompt"}),
               **chat_fields("model"))
