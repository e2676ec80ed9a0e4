"""The gateway's OpenAPI 3.1 document (GET /openapi.json), built once per process
from the operations table (proxy/openapi/operations.py), which is itself built
from the schemas and check tables the routes validate with."""
from __future__ import annotations

import re
from functools import cache

import orjson

from proxy import __version__
from proxy.openapi import bodies
from proxy.openapi.operations import OPERATIONS, Op
from proxy.openapi.shapes import ERRORS, SCHEMAS, ref

INFO = {
    "title": "Switchboard",
    "version": __version__,
    "summary": "An OpenAI-compatible LLM gateway.",
    "description": (
        "Every `/v1` path also answers without the prefix (`/chat/completions`), for "
        "full-path clients. Every answer carries `x-request-id`.\n\n"
        "Errors are OpenAI's: `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`, "
        "`param` naming the field at fault. A refused request writes nothing."),
}
# the ways a key may be presented (proxy/policy/keys.py `presented_key`)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "The master key (GATEWAY_MASTER_KEY) or a virtual key."},
    "api-key": {"type": "apiKey", "in": "header", "name": "api-key"},
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
REQUEST_ID = {"description": "The gateway's id of this request; it keys the log.",
              "required": True, "schema": {"type": "string", "pattern": "^req_[0-9a-f]{32}$"}}
_HEADERS = {"x-request-id": {"$ref": "#/components/headers/RequestId"}}


@cache
def encoded(keys_enabled: bool) -> bytes:
    return orjson.dumps(document(keys_enabled))


def document(keys_enabled: bool) -> dict:
    """The document; `keys_enabled`: GATEWAY_MASTER_KEY is set, so routes need a key."""
    paths: dict = {}
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation(method, path, op, keys_enabled)
    doc = {"openapi": "3.1.0", "info": INFO, "tags": _tags(), "paths": paths,
           "components": _components(keys_enabled)}
    if keys_enabled:
        doc["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return doc


def operation(method: str, path: str, op: Op, keys_enabled: bool) -> dict:
    out = {"operationId": re.sub(r"[^a-z0-9]+", "_", f"{method}{path}".lower()).strip("_"),
           "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if op.parameters:
        out["parameters"] = op.parameters
    if op.body is not None:
        media = {"schema": op.body, **({"example": op.example} if op.example else {})}
        out["requestBody"] = {"required": op.body_required,
                              "content": {"application/json": media}}
    out["responses"] = {**{str(status): {**response, "headers": _HEADERS}
                           for status, response in op.answers.items()},
                        **{str(status): {"$ref": f"#/components/responses/{_error_name(status)}"}
                           for status in op.errors}}
    if op.public and keys_enabled:
        out["security"] = []
    return out


def _tags() -> list[dict]:
    return [{"name": tag} for tag in dict.fromkeys(op.tag for op in OPERATIONS.values())]


def _error_name(status) -> str:
    return f"Error{status}"


def _components(keys_enabled: bool) -> dict:
    chat, chat_parts = bodies.chat_schema()
    assert not set(chat_parts) & set(SCHEMAS), "a chat schema's name is taken"
    responses = {_error_name(status): {"description": description, "headers": _HEADERS,
                                       "content": {"application/json": {"schema": ref("Error")}}}
                 for status, description in ERRORS.items()}
    components = {"schemas": {**SCHEMAS, **chat_parts, "ChatRequest": chat},
                  "responses": responses, "headers": {"RequestId": REQUEST_ID}}
    if keys_enabled:
        components["securitySchemes"] = SECURITY_SCHEMES
    return components
