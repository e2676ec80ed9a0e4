"""OpenAI's published OpenAPI document against the gateway: every request that conforms
to `POST /chat/completions` is served by echo (2xx: never refused, never a 5xx) and every
answer conforms to the documented response, streamed chunks included; `GET /models` too.
The document is vendored, cut down to these two operations (tests/fixtures/SOURCES.md).
The runs are bounded and deterministic: a fixed number of derandomized examples, no
shrinking, no example database."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance)

SPEC = Path(__file__).parent / "fixtures" / "openai-openapi" / "openapi.chat.json"
ECHO = {"X-Provider": "echo"}  # echo answers whatever the model is called


def as_tested(spec: dict) -> dict:
    """The document where the gateway deliberately differs from it (README, "Choices made")."""
    schemas = spec["components"]["schemas"]
    request = schemas["CreateChatCompletionRequest"]["allOf"][1]["properties"]
    # printable ASCII: control characters are refused before routing, and Unicode model
    # ids are tested in tests/test_model_header.py
    request["model"] = {"type": "string", "pattern": "^[ -~]+$"}
    for limit in ("max_tokens", "max_completion_tokens"):
        # at least 1: the rate limiter adds them to its estimate; at most a 32-bit int:
        # no model answers more, and a larger number is refused (proxy/schema.py)
        request[limit] = {**request[limit], "minimum": 1, "maximum": 2**31 - 1}
    for role in ("Developer", "System", "User", "Tool", "Function"):
        # the document lets any message carry extra fields, so a user message with a
        # `tool_calls` of numbers conforms; OpenAI's API refuses unknown message fields, and
        # the gateway checks `tool_calls` the same way whatever the role (an assistant's
        # shape), so other roles are not sent one
        schemas[f"ChatCompletionRequest{role}Message"]["properties"]["tool_calls"] = False
    for answer in ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse"):
        # OpenAI sends null itself: the document's own logprobs example does, and so does
        # tests/fixtures/openai/chat_nonstream_reasoning_o1mini.json
        schemas[answer]["properties"]["system_fingerprint"]["type"] = ["string", "null"]
    return spec


def integers_as_integers(value):
    """JSON Schema counts 2.0 as an integer; the gateway does not (echo and the
    translators read `n` and `max_tokens` as sent), so generated 2.0s are sent as 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integers_as_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integers_as_integers(item) for item in value]
    return value


def nulls_as_json_schema(node):
    """The document still marks nullable values OpenAPI 3.0's way (`nullable: true`),
    which a JSON Schema validator does not read."""
    if isinstance(node, list):
        return [nulls_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: nulls_as_json_schema(item) for key, item in node.items()}
    if converted.get("nullable") is True:  # a property named `nullable` is a dict
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


DOCUMENT = as_tested(json.loads(SPEC.read_text()))
# every event of a stream is read (schemathesis keeps the first 20 by default); no
# configuration file is discovered, so nothing on the machine changes the run
SCHEMA = schemathesis.openapi.from_dict(
    DOCUMENT, config=schemathesis.Config.from_dict({"max-stream-events": 1_000_000}))
SCHEMA.hook("map_body")(lambda context, body: integers_as_integers(body))
CHAT, MODELS = SCHEMA["/chat/completions"]["POST"], SCHEMA["/models"]["GET"]
# schemathesis reads a text/event-stream schema as the schema of the events themselves;
# OpenAI's is the schema of each event's `data` JSON, so chunks are checked here
CHUNK = jsonschema_rs.validator_for({
    "$ref": "#/components/schemas/CreateChatCompletionStreamResponse",
    "components": nulls_as_json_schema(DOCUMENT["components"])})
JSON_CHECKS = [content_type_conformance, response_schema_conformance]

BOUNDED = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
                   # big generated bodies trip hypothesis' generation-speed checks
                   suppress_health_check=list(HealthCheck))


def check_stream(text: str) -> None:
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], text[-300:]
    for event in events[:-2]:
        assert event.startswith("data: "), event
        CHUNK.validate(json.loads(event.removeprefix("data: ")))


@pytest.mark.parametrize("stream", [None, True], ids=["as-generated", "streamed"])
@BOUNDED
@given(case=CHAT.as_strategy())
def test_every_conforming_chat_request_is_served_as_documented(gateway, case, stream):
    if stream:  # few generated bodies ask for a stream
        case.body["stream"] = True
    response = case.call(base_url=gateway.url + "/v1", headers=ECHO)
    assert response.status_code == 200, (f"{response.status_code} {response.text[:800]}\n"
                                         f"{case.as_curl_command(headers=ECHO)[:3000]}")
    if response.headers["content-type"][0].startswith("text/event-stream"):
        check_stream(response.text)
        case.validate_response(response, checks=[content_type_conformance])
    else:
        case.validate_response(response, checks=JSON_CHECKS)


@settings(BOUNDED, max_examples=5)
@given(case=MODELS.as_strategy())
def test_models_list_is_as_documented(gateway, case):
    response = case.call(base_url=gateway.url + "/v1")
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=JSON_CHECKS)


USER = {"role": "user", "content": "hi"}
CUSTOM_TOOL = {"type": "custom", "custom": {"name": "sql", "format": {
    "type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /SELECT .+/"}}}}


@pytest.mark.parametrize("fields", [
    {"tools": [CUSTOM_TOOL], "tool_choice": {"type": "custom", "custom": {"name": "sql"}}},
    {"tools": [CUSTOM_TOOL], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "custom", "custom": {"name": "sql"}}]}}},
    {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"}]},
    {"messages": [USER, {"role": "function", "name": "lookup", "content": None}]},
], ids=["custom-tool", "allowed-tools", "custom-tool-call", "function-null-content"])
def test_the_relay_forwards_what_openai_accepts_unchanged(gateway, openai_fake, fields):
    raw = json.dumps({"model": "gpt-4o-mini", "messages": [USER], **fields}).encode()
    calls = len(openai_fake.requests)
    r = requests.post(gateway.url + "/v1/chat/completions", data=raw, timeout=10,
                      headers={"Content-Type": "application/json", "X-Provider": "openai"})
    assert r.status_code == 200, r.text
    assert openai_fake.requests[calls].body == raw


@pytest.mark.parametrize("stream", [False, True])
def test_fields_of_parts_the_gateway_does_not_read_are_not_read(gateway, stream):
    """The document leaves content parts open (no `additionalProperties: false`): a vendor
    `text` of any type on an audio part is the upstream's business, never a 500."""
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"},
             "text": 5}
    r = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "echo", "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, audio]}]})
    assert r.status_code == 200, r.text
    assert "hello" in r.text


@pytest.mark.parametrize("field, value, words", [
    ("n", "2", "valid integer"), ("max_tokens", "3", "valid integer"),
    ("max_tokens", 1.0, "valid integer"), ("max_completion_tokens", True, "valid integer"),
])
def test_a_number_of_the_wrong_type_is_a_400_naming_it(gateway, field, value, words):
    """Validation converts nothing, so echo never reads a string where it counts."""
    r = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "echo", "messages": [{"role": "user", "content": "one two three"}], field: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (field, "invalid_value")
    assert words in error["message"]
