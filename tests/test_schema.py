"""The chat request schema: what it accepts, and the field a refusal names."""
import pytest

from proxy.errors import InvalidRequest
from proxy.schema import validate

USER = {"role": "user", "content": "hi"}


def body(**fields):
    return {"model": "gpt-4o-mini", "messages": [USER], **fields}


@pytest.mark.parametrize("request_body", [
    body(),
    body(messages=[{"role": "developer", "content": "be brief"}, USER,
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "42"}]),
    body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:x"}},
        {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}]}]),
    body(max_tokens=5, max_completion_tokens=5, temperature=0, top_p=1, n=2, stop=["x"],
         stream=True, stream_options={"include_usage": True}, vendor_field={"kept": True},
         tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
         tool_choice="auto", response_format={"type": "json_schema", "json_schema": {}}),
])
def test_accepts(request_body):
    validate(request_body)


@pytest.mark.parametrize("request_body, param, words", [
    (body(messages=[{"role": "assistant"}]), "messages[0]", "content or tool_calls"),
    (body(messages=[{"role": "user", "content": None}]), "messages[0]", "need content"),
    (body(messages=[{"role": "tool", "content": "42"}]), "messages[0]", "tool_call_id"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "messages[0].content[0].image_url", "Missing required parameter"),
    (body(temperature=3), "temperature", "less than or equal to 2"),
    (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
    (body(tools=[{"type": "function", "function": {"name": ""}}]), "tools[0].function.name",
     "at least 1"),
    (body(messages=[]), "messages", "at least 1"),
    ({"messages": [USER]}, "model", "Missing required parameter"),
])
def test_refuses_naming_the_field(request_body, param, words):
    with pytest.raises(InvalidRequest) as refused:
        validate(request_body)
    assert refused.value.param == param
    assert words in refused.value.message
