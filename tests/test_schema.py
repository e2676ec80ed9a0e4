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


CUSTOM_TOOL = {"type": "custom", "custom": {"name": "sql", "format": {"type": "grammar", "grammar": {
    "syntax": "lark", "definition": "start: /SELECT .+/"}}}}


@pytest.mark.parametrize("request_body", [
    body(tools=[CUSTOM_TOOL, {"type": "function", "function": {"name": "f"}}]),
    body(tools=[CUSTOM_TOOL], tool_choice={"type": "custom", "custom": {"name": "sql"}}),
    body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}),
    body(messages=[USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"}]),
    body(messages=[USER, {"role": "function", "name": "f", "content": None}]),
    # OpenAI's schema requires only `role` of an assistant message (one that refers to an
    # earlier audio answer carries just `audio.id`)
    body(messages=[USER, {"role": "assistant", "audio": {"id": "audio_1"}}, USER]),
    # the spec sets no length on a function's name: an upstream that minds refuses it itself
    body(tools=[{"type": "function", "function": {"name": ""}}]),
    body(seed=2**63 - 1, logit_bias={"50256": -100}, top_logprobs=20, user="u1"),
])
def test_accepts_what_openai_accepts(request_body):
    validate(request_body)


@pytest.mark.parametrize("request_body, param, words", [
    (body(messages=[{"role": "user", "content": None}]), "messages[0]", "need content"),
    (body(messages=[{"role": "tool", "content": "42"}]), "messages[0]", "tool_call_id"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "messages[0].content[0].image_url", "Missing required parameter"),
    (body(temperature=3), "temperature", "less than or equal to 2"),
    (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
    (body(max_tokens=9223372036854775777), "max_tokens", "less than or equal to 2147483647"),
    (body(max_completion_tokens=2**31), "max_completion_tokens", "less than or equal to"),
    (body(tools=[{"type": "function", "function": {"name": 5}}]), "tools[0].function.name",
     "valid string"),
    (body(tools=[{"type": "function"}]), "tools[0].function", "Missing required parameter"),
    (body(tools=[{"function": {"name": "f"}}]), "tools[0].type", "Missing required parameter"),
    (body(tool_choice={"type": "function"}), "tool_choice.function", "Missing required parameter"),
    (body(tool_choice="sometimes"), "tool_choice", "'none', 'auto' or 'required'"),
    (body(messages=[{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}]),
     "messages[0].tool_calls[0].function", "Missing required parameter"),
    # nothing is converted: echo and the translators read the body as sent
    (body(n="2"), "n", "valid integer"),
    (body(max_tokens=5.0), "max_tokens", "valid integer"),
    (body(temperature="0.5"), "temperature", "valid number"),
    (body(stream="true"), "stream", "valid boolean"),
    (body(reasoning_effort=["high"]), "reasoning_effort", "valid string"),
    (body(messages=[]), "messages", "at least 1"),
    ({"messages": [USER]}, "model", "Missing required parameter"),
])
def test_refuses_naming_the_field(request_body, param, words):
    with pytest.raises(InvalidRequest) as refused:
        validate(request_body)
    assert refused.value.param == param
    assert words in refused.value.message
