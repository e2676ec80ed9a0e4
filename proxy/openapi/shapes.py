"""What the gateway answers, as JSON schema: described once here, proved by the
schemathesis run of tests/test_openapi.py against the running gateway.

Answer objects stay open (no `additionalProperties: false`): an upstream's extra
fields pass through, and a new field is no breaking change. Error bodies are
closed: they are the gateway's own, in OpenAI's shape."""
from __future__ import annotations

from proxy.errors import GatewayError
from proxy.log import queries
from proxy.policy.key_admin import CHECKS as KEY_CHECKS

STRING, INTEGER, NUMBER, BOOLEAN = ({"type": t} for t in ("string", "integer", "number", "boolean"))
OBJECT, ANY = {"type": "object"}, {}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def const(value: str) -> dict:
    return {"type": "string", "const": value}


def array(items: dict, **bounds) -> dict:
    return {"type": "array", "items": items, **bounds}


def obj(required: tuple[str, ...] | str, **properties) -> dict:
    """An object with `properties`; `required` names the ones always present ("*": all)."""
    names = list(properties) if required == "*" else list(required)
    return {"type": "object", "required": names, "properties": properties}


def listing(item: str, **more) -> dict:
    return obj("*", object=const("list"), data=array(ref(item)), **more)


def _error_object() -> dict:
    """OpenAI's error object, with the fields `GatewayError.body()` writes."""
    kinds = {"message": STRING, "type": STRING, "param": nullable(STRING), "code": nullable(STRING)}
    fields = GatewayError("").body()["error"]
    return {**obj("*", **{name: kinds[name] for name in fields}), "additionalProperties": False}


_TOKENS = nullable(INTEGER)
_FIGURES = {name: INTEGER for name in ("requests", "errors", "attempts", "prompt_tokens",
                                       "completion_tokens", "cached_tokens", "reasoning_tokens",
                                       "cost_unknown_requests", "total_tokens")}
_PERCENTILES = obj("*", p50=nullable(NUMBER), p95=nullable(NUMBER), count=INTEGER)
_FEEDBACK_COUNTS = obj(("ratings", "rating_avg"), **dict.fromkeys(queries.FEEDBACK_TYPES, INTEGER),
                       ratings=INTEGER, rating_avg=nullable(NUMBER))
_COMPLETION_FACTS = {  # on a session's assistant messages
    "request_id": nullable(STRING), "completion_id": nullable(STRING), "model": nullable(STRING),
    "provider": nullable(STRING), "finish_reason": nullable(STRING),
    "usage": obj((), **dict.fromkeys(("prompt_tokens", "completion_tokens", "cached_tokens",
                                      "reasoning_tokens", "total_tokens"), _TOKENS),
                 estimated=nullable(BOOLEAN)),
    "cost_usd": nullable(NUMBER), "latency_ms": nullable(NUMBER), "ttft_ms": nullable(NUMBER)}
_MODEL_RESULT = {"model": STRING, "provider": nullable(STRING), "latency_ms": nullable(NUMBER),
                 "ttft_ms": nullable(NUMBER), "usage": nullable(OBJECT),
                 "cost_usd": nullable(NUMBER)}
_STEP = obj("*", model=STRING, provider=nullable(STRING), output=STRING, usage=nullable(OBJECT),
            cost_usd=nullable(NUMBER), latency_ms=nullable(NUMBER))
_KEY_VIEW = {  # a stored key's fields as shown (a JSON list or object comes back as it was sent)
    **{name: nullable(ANY) for name in KEY_CHECKS},
    "name": STRING, "expires_at": nullable({"type": "string", "format": "date-time"})}

SCHEMAS = {
    "Error": obj("*", error=ref("ErrorObject")),
    "ErrorObject": _error_object(),
    "ChainError": {"allOf": [ref("Error"), obj("*", step=INTEGER, steps=array(_STEP))]},
    "ChatCompletion": obj(("id", "object", "created", "model", "choices"),
                          id=STRING, object=const("chat.completion"), created=INTEGER, model=STRING,
                          choices=array(obj(("index", "message", "finish_reason"), index=INTEGER,
                                            message=obj(("role",), role=STRING,
                                                        content=nullable(STRING)),
                                            finish_reason=nullable(STRING))),
                          usage=nullable(OBJECT)),
    "ChatCompletionChunk": obj(("id", "object", "created", "model", "choices"),
                               id=STRING, object=const("chat.completion.chunk"), created=INTEGER,
                               model=STRING, choices=array(obj(("index",), index=INTEGER,
                                                               delta=OBJECT,
                                                               finish_reason=nullable(STRING))),
                               usage=nullable(OBJECT)),
    "Model": obj(("id", "object", "created", "owned_by", "provider"),
                 id=STRING, object=const("model"), created=INTEGER, owned_by=STRING,
                 provider=STRING, context_length=INTEGER, supports_vision=BOOLEAN,
                 supports_tools=BOOLEAN),
    "ModelList": listing("Model"),
    "Provider": obj(("name", "type", "available", "default_model", "models"),
                    name=STRING, type=STRING, available=BOOLEAN, default_model=nullable(STRING),
                    models=array(STRING), missing=array(STRING)),
    "ProviderList": obj("*", providers=array(ref("Provider")), default=STRING),
    "Key": obj("*", id=STRING, object=const("api_key"), key_hint=STRING, **_KEY_VIEW,
               created_at={"type": "string", "format": "date-time"}, revoked=BOOLEAN),
    "NewKey": {"allOf": [ref("Key"), obj("*", key={
        "type": "string", "description": "The secret: shown only in this answer."})]},
    "KeyWithSpend": {"allOf": [ref("Key"), obj("*", spend_this_month_usd=NUMBER)]},
    "KeyList": listing("Key"),
    "Deleted": obj("*", id=STRING, object=STRING, deleted={"type": "boolean", "const": True}),
    "Session": obj("*", id=STRING, object=const("session"), created_at=INTEGER,
                   updated_at=INTEGER, title=nullable(STRING), model=nullable(STRING),
                   system_prompt=nullable(STRING), metadata=OBJECT, message_count=INTEGER,
                   total_tokens=INTEGER, total_cost_usd=NUMBER),
    "SessionList": listing("Session", has_more=BOOLEAN, next_cursor=nullable(STRING)),
    "SessionMessage": obj(("id", "object", "position", "role", "content", "created_at",
                           "feedback"),
                          id=INTEGER, object=const("session.message"), position=INTEGER,
                          role=STRING, content=ANY, name=STRING, tool_calls=ANY,
                          tool_call_id=STRING, created_at=INTEGER, **_COMPLETION_FACTS,
                          feedback=array(ref("Feedback"))),
    "FeedbackList": listing("Feedback", has_more=BOOLEAN, next_cursor=nullable(STRING)),
    "SessionWithMessages": {"allOf": [ref("Session"),
                                      obj("*", messages=array(ref("SessionMessage")))]},
    "Feedback": obj("*", id=INTEGER, object=const("feedback"), completion_id=nullable(STRING),
                    request_id=nullable(STRING), message_id=nullable(INTEGER),
                    session_id=nullable(STRING),
                    feedback_type=nullable({**STRING, "enum": list(queries.FEEDBACK_TYPES)}),
                    rating=nullable(INTEGER), comment=nullable(STRING), created_at=INTEGER),
    "UsageFigures": obj(tuple(_FIGURES) + ("cost_usd", "latency_ms", "feedback"), **_FIGURES,
                        cost_usd=NUMBER, latency_ms=_PERCENTILES, ttft_ms=_PERCENTILES,
                        feedback=_FEEDBACK_COUNTS),
    "Usage": obj("*", object=const("usage"), **{"from": {"type": "string", "format": "date-time"}},
                 to={"type": "string", "format": "date-time"},
                 group_by={"type": "string", "enum": list(queries.GROUPS)},
                 percentiles=const("nearest-rank"),
                 data=array({"allOf": [obj("*", group=nullable(STRING)), ref("UsageFigures")]}),
                 totals=ref("UsageFigures")),
    "CompareResults": obj("*", results=array({**obj(tuple(_MODEL_RESULT), **_MODEL_RESULT,
                                                    completion=ref("ChatCompletion"),
                                                    error=ref("ErrorObject")),
                                              "oneOf": [{"required": ["completion"]},
                                                        {"required": ["error"]}]})),
    "CompareEvent": {"oneOf": [
        obj("*", model_index=INTEGER, model=STRING, chunk=ref("ChatCompletionChunk")),
        obj("*", model_index=INTEGER, model=STRING, error=ref("ErrorObject")),
        obj("*", summary=obj("*", results=array(obj(tuple(_MODEL_RESULT), **_MODEL_RESULT,
                                                    error=ref("ErrorObject")))))]},
    "ChainResult": obj("*", steps=array(_STEP), final=ref("ChatCompletion")),
    "Index": obj("*", name=STRING, version=STRING, status=const("ok")),
    "Health": obj("*", status=const("ok")),
    "Readiness": obj("*", status={"type": "string", "enum": ["ready", "not_ready"]},
                     default_provider=STRING, providers=array(STRING)),
    "Status": obj("*", object=const("status"), keys_enabled=BOOLEAN, in_flight=INTEGER,
                  log_queue_depth=INTEGER, workers=INTEGER),
    "OpenAPI": obj(("openapi", "info", "paths"), openapi=STRING, info=OBJECT, paths=OBJECT),
}

# the statuses the gateway itself answers with an error body, and what each means here
ERRORS = {
    400: "Malformed JSON, or a value out of range: `param` names the field.",
    401: "No key, or an unknown, revoked or expired one (when GATEWAY_MASTER_KEY is set).",
    403: "The key may not do this (a model or provider it is not allowed, a master-key route).",
    404: "No such id, model or provider (another key's is not found either).",
    408: "The request body did not arrive in time: the connection closes.",
    409: "It already exists.",
    413: "The body is larger than MAX_REQUEST_BYTES.",
    429: "Over a rate limit or a budget (`retry-after` says when to retry).",
    "4XX": "Any other refusal of the upstream's, with its status.",
    "5XX": "The upstream failed (its own 5xx is kept for OpenAI-compatible upstreams; 502 when "
           "it could not be reached or answered badly, 504 when it timed out).",
}
# server-sent events: a text/event-stream answer's schema is one event (OpenAPI 3.1
# has no schema for a stream; schemathesis reads it so): `data` is JSON, or [DONE]
STREAM_NOTE = ("Server-sent events (`\"stream\": true`): each event's `data` is one JSON "
               "object; the stream ends with `data: [DONE]`. An error after the first byte "
               "is one event holding an OpenAI error.")


def event(payload: str) -> dict:
    """One server-sent event whose `data` is `payload` (or an error) as JSON, or [DONE]."""
    data = {"type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [ref(payload), ref("Error")]}}
    return obj(("data",), data={"anyOf": [const("[DONE]"), data]})
