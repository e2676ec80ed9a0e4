"""`bedrock` (Converse / ConverseStream through boto3) against the fake Bedrock
runtime, driven through a real gateway with the official openai SDK; plus unit
tests of the event-stream encoder, the request translation and the error table."""
from __future__ import annotations

import base64
import glob
import json
from pathlib import Path

import openai
import pytest
import requests
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from providers.aws import error_from
from providers.base import Call
from providers.bedrock import JSON_TOOL, converse_request
from proxy.errors import InvalidRequest
from tests.fakes import bedrock_upstream as fake
from tests.fakes import eventstream as es
from tests.gateway import Gateway, free_port

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
ADD = {"type": "function", "function": {"name": "add_numbers", "description": "Add two numbers",
       "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                       "b": {"type": "number"}}}}}
TEMP = {"type": "function", "function": {"name": "get_temperature",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CAPTURES = sorted(glob.glob(str(Path(fake.FIXTURES) / "*.eventstream")))


# ---- event-stream encoder ------------------------------------------------------

@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: Path(p).name)
def test_encoder_reproduces_captures_byte_for_byte(path):
    data = Path(path).read_bytes()
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    messages = list(buffer)
    assert b"".join(es.frame(list(m.headers.items()), m.payload) for m in messages) == data
    assert [len(f) for f in es.frames(data)] == [len(es.frame(list(m.headers.items()), m.payload))
                                                  for m in messages]
    for m in messages:  # payloads are compact JSON with sorted keys, as `payload()` writes
        assert es.payload(json.loads(m.payload)) == m.payload
    if ":event-type" in messages[0].headers:
        first = messages[0]
        rebuilt = es.event(first.headers[":event-type"], json.loads(first.payload))
        assert rebuilt == es.frames(data)[0]


def test_encoder_exception_and_error_frames_parse_in_botocore():
    buffer = EventStreamBuffer()
    buffer.add_data(es.exception("throttlingException", "slow down") + es.error("Boom", "it broke"))
    exception, error = list(buffer)
    assert exception.headers[":exception-type"] == "throttlingException"
    assert json.loads(exception.payload) == {"message": "slow down"}
    assert error.headers == {":error-code": "Boom", ":error-message": "it broke",
                             ":message-type": "error"}
    assert exception.to_response_dict()["status_code"] == 400


# ---- request translation (no network) -----------------------------------------------

def _request(body: dict, model: str = MODEL) -> tuple[dict, object]:
    return converse_request(Call(body={"model": model, **body}, raw=None, model=model,
                                 stream=False, include_usage=False, request_id="req_test"))


def test_translation_system_alternation_tools_and_images():
    request, plan = _request({
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": "Add 15 and 27"},
            {"role": "user", "content": [{"type": "text", "text": "and look"},
                                         {"type": "image_url", "image_url": {"url": PNG_URL}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "add_numbers",
                                                              "arguments": '{"a":15,"b":27}'}},
                {"id": "t2", "type": "function", "function": {"name": "add_numbers",
                                                              "arguments": '{"a":1,"b":2}'}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "42"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "3"}]},
            {"role": "user", "content": "Thanks, now explain."}],
        "tools": [ADD], "tool_choice": "required", "max_tokens": 100, "temperature": 0.2,
        "top_p": 0.9, "stop": "END"})
    assert request["modelId"] == MODEL
    assert request["system"] == [{"text": "Be brief."}, {"text": "Use tools."}]
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    first = request["messages"][0]["content"]
    assert first[:2] == [{"text": "Add 15 and 27"}, {"text": "and look"}]
    assert first[2] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert request["messages"][1]["content"][1] == {
        "toolUse": {"toolUseId": "t2", "name": "add_numbers", "input": {"a": 1, "b": 2}}}
    results = request["messages"][2]["content"]
    assert results == [  # the user's text rides inside the last result: no mixed turn
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "3"},
                                                       {"text": "Thanks, now explain."}]}}]
    assert request["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2, "topP": 0.9,
                                          "stopSequences": ["END"]}
    assert request["toolConfig"]["toolChoice"] == {"any": {}}
    assert request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == \
        ADD["function"]["parameters"]
    assert not plan.no_tools and not plan.json_tool


def test_tool_choice_none_omits_tools_unless_history_needs_them():
    request, plan = _request({"messages": [{"role": "user", "content": "hi"}], "tools": [ADD],
                              "tool_choice": "none"})
    assert "toolConfig" not in request and plan.no_tools
    request, plan = _request({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {
            "name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "found"}], "tool_choice": "none"})
    assert request["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    assert plan.no_tools


def test_json_schema_becomes_a_forced_tool():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request, plan = _request({"messages": [{"role": "user", "content": "capital?"}],
                              "response_format": {"type": "json_schema", "json_schema": {
                                  "name": "answer", "schema": schema}}})
    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}
    assert request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    assert plan.json_tool


@pytest.mark.parametrize("body, param", [({"logprobs": True}, "logprobs"), ({"n": 2}, "n"),
                                         ({"audio": {"voice": "x"}}, "audio")])
def test_unsupported_parameters_are_refused(body, param):
    with pytest.raises(InvalidRequest) as info:
        _request({"messages": [{"role": "user", "content": "hi"}], **body})
    assert info.value.param == param and info.value.code == "unsupported_parameter"


CUSTOM = {"type": "custom", "custom": {"name": "sql"}}


@pytest.mark.parametrize("body, param", [
    ({"tools": [ADD, CUSTOM]}, "tools[1].type"),
    ({"tools": [ADD], "tool_choice": {"type": "custom", "custom": {"name": "sql"}}},
     "tool_choice.type"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "t1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}]}]},
     "messages[1].tool_calls[0].type"),
])
def test_custom_tools_are_refused_naming_the_field(body, param):
    """OpenAI's `custom` tools (free-text input) have no Converse form."""
    with pytest.raises(InvalidRequest) as info:
        _request({"messages": [{"role": "user", "content": "hi"}], **body})
    assert info.value.param == param and info.value.code == "unsupported_value"


@pytest.mark.parametrize("code, status, kind", [
    ("ThrottlingException", 429, "rate_limit_error"),
    ("ValidationException", 400, "invalid_request_error"),
    ("AccessDeniedException", 403, "invalid_request_error"),
    ("ResourceNotFoundException", 404, "invalid_request_error"),
    ("ModelTimeoutException", 504, "server_error"),
    ("ServiceUnavailableException", 503, "server_error"),
    ("InternalServerException", 502, "server_error"),
    ("ModelErrorException", 502, "server_error")])
def test_error_table_uses_the_structured_code(code, status, kind):
    error = ClientError({"Error": {"Code": code, "Message": "arn:aws:iam::123456789012:role/x"},
                         "ResponseMetadata": {"HTTPStatusCode": 499}}, "Converse")
    mapped = error_from(error, "bedrock")
    assert (mapped.status, mapped.type) == (status, kind)
    assert "123456789012" not in mapped.message
    in_stream = EventStreamError({"Error": {"Code": code[0].lower() + code[1:], "Message": "m"}},
                                 "ConverseStream")
    assert error_from(in_stream, "bedrock").status == status


# ---- through a real gateway ------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream():
    server = fake.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    gateway = Gateway({**fake.gateway_env(upstream), "UPSTREAM_TIMEOUT": "2"})
    gateway.start(tmp_path_factory.mktemp("bedrock"))
    yield gateway
    gateway.stop()


def last_call(upstream):
    return fake.converse_calls(upstream)[-1]


def ask(client, model=MODEL, content="hi", **kwargs):
    return client.chat.completions.create(model=f"bedrock/{model}",
                                          messages=[{"role": "user", "content": content}], **kwargs)


def collect(stream):
    text, reasoning, calls, finish, usage = [], [], {}, None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            text.append(delta.content or "")
            reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = call.id or entry["id"]
                entry["name"] = (call.function.name if call.function else None) or entry["name"]
                entry["arguments"] += (call.function.arguments if call.function else "") or ""
            finish = choice.finish_reason or finish
    return "".join(text), "".join(reasoning), calls, finish, usage


def test_text_usage_and_request_shape(client, upstream):
    reply = client.chat.completions.create(
        model=f"bedrock/{MODEL}", max_tokens=50, temperature=0.5,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "user", "content": "there"}])
    assert reply.choices[0].message.content == "Hello from Bedrock."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == MODEL
    usage = reply.usage  # prompt = input + cache read + cache write
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (115, 9, 124)
    assert usage.prompt_tokens_details.cached_tokens == 100
    model, operation, body = last_call(upstream)
    assert (model, operation) == (MODEL, "converse")
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}, {"text": "there"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.5}


def test_stream_text_with_include_usage_via_x_provider(client, upstream):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"X-Provider": "bedrock"})
    text, _, calls, finish, usage = collect(stream)
    assert (text, calls, finish) == ("Hello from Bedrock.", {}, "stop")
    assert (usage.prompt_tokens, usage.completion_tokens) == (115, 9)
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert last_call(upstream)[:2] == (MODEL, "converse-stream")
    reply = client.chat.completions.create(model="us.amazon.nova-micro-v1:0",  # listed: no prefix
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from Bedrock."
    assert last_call(upstream)[:2] == ("us.amazon.nova-micro-v1:0", "converse")


@pytest.mark.parametrize("model, stream, finish", [
    ("max-tokens-model", False, "length"), ("max-tokens-model", True, "length"),
    ("guardrail-model", False, "content_filter"), ("guardrail-model", True, "content_filter")])
def test_finish_reasons(client, model, stream, finish):
    if stream:
        assert collect(ask(client, model, stream=True))[3] == finish
    else:
        reply = ask(client, model)
        assert reply.choices[0].finish_reason == finish
    if model == "max-tokens-model" and not stream:  # the captured answer and its usage
        assert reply.choices[0].message.content == "# The Last Ember of Varathorn"
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (16, 10)


def test_tool_call_non_streaming(client, upstream):
    reply = ask(client, content="Add 15 and 27", tools=[ADD])
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.content.startswith("I'll calculate 15 + 27")
    call, = message.tool_calls
    assert (call.id, call.function.name) == ("tooluse_CVmuFOrTItCY07vxuA84mU", "add_numbers")
    assert json.loads(call.function.arguments) == {"a": 15, "b": 27}
    tools = last_call(upstream)[2]["toolConfig"]
    assert tools["tools"][0]["toolSpec"]["name"] == "add_numbers"
    assert tools["toolChoice"] == {"auto": {}}


def test_tool_call_streamed_index_counts_calls_not_blocks(client):
    text, _, calls, finish, _ = collect(ask(client, content="temperature?", tools=[TEMP],
                                            stream=True))
    assert text.startswith("<thinking> To find the temperature")
    assert finish == "tool_calls"
    assert calls == {0: {"id": "tooluse_lAG_zP8QRHmSYOwZzzaCqA", "name": "get_temperature",
                         "arguments": '{"city":"Paris"}'}}
    _, _, calls, _, _ = collect(ask(client, "parallel-model", "two cities", tools=[TEMP],
                                    stream=True))
    assert [(i, c["id"], json.loads(c["arguments"])) for i, c in sorted(calls.items())] == [
        (0, "tooluse_par1", {"city": "Paris"}), (1, "tooluse_par2", {"city": "Lyon"})]


def test_tool_results_round_trip(client, upstream):
    reply = client.chat.completions.create(model=f"bedrock/{MODEL}", tools=[ADD], messages=[
        {"role": "user", "content": "Add 15 and 27"},
        {"role": "assistant", "content": "Calling.", "tool_calls": [
            {"id": "tooluse_1", "type": "function",
             "function": {"name": "add_numbers", "arguments": '{"a": 15, "b": 27}'}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "42"},
        {"role": "user", "content": "Say it in words."}])
    assert reply.choices[0].message.content == "Hello from Bedrock."
    body = last_call(upstream)[2]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"text": "Calling."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "add_numbers", "input": {"a": 15, "b": 27}}}]
    assert body["messages"][2]["content"] == [{"toolResult": {
        "toolUseId": "tooluse_1", "content": [{"text": "42"}, {"text": "Say it in words."}]}}]


def test_tool_choice_none_with_tool_history_returns_no_calls(client, upstream):
    reply = client.chat.completions.create(model=f"bedrock/{MODEL}", tools=[ADD],
                                           tool_choice="none", messages=[
        {"role": "user", "content": "Add"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {
            "name": "add_numbers", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "Add again"}])
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
    config = last_call(upstream)[2]["toolConfig"]
    assert "toolChoice" not in config and config["tools"][0]["toolSpec"]["name"] == "add_numbers"


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answer_is_text(client, upstream, stream):
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "population": {"type": "integer"}}}
    kwargs = dict(content="capital of France?", response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    if stream:
        text, _, calls, finish, _ = collect(ask(client, stream=True, **kwargs))
    else:
        reply = ask(client, **kwargs)
        text, calls = reply.choices[0].message.content, reply.choices[0].message.tool_calls
        finish = reply.choices[0].finish_reason
    assert json.loads(text) == {"city": "Paris", "population": 42}
    assert (not calls, finish) == (True, "stop")
    assert last_call(upstream)[2]["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}


def test_reasoning_content(client):
    text, reasoning, _, finish, usage = collect(ask(client, "reasoning-model", stream=True,
                                                    stream_options={"include_usage": True}))
    assert reasoning.startswith("The user has greeted me with a simple \"Hello\".")
    assert text == "Hello! It's nice to meet you. How can I help you today?"
    assert (finish, usage.prompt_tokens, usage.completion_tokens) == ("stop", 36, 73)
    message = ask(client, "reasoning-model").choices[0].message
    assert message.model_extra["reasoning_content"] == "The user greets me."
    assert message.content == "Hello! How can I help?"


def test_image_data_url_bytes_reach_bedrock(client, upstream):
    ask(client, content=[{"type": "text", "text": "what is this?"},
                         {"type": "image_url", "image_url": {"url": PNG_URL}}])
    image = last_call(upstream)[2]["messages"][0]["content"][1]["image"]
    assert image["format"] == "png"
    assert base64.b64decode(image["source"]["bytes"]) == PNG


def test_image_url_refused_by_media_policy(client, upstream):
    before = len(fake.converse_calls(upstream))
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, content=[{"type": "image_url",
                              "image_url": {"url": "http://127.0.0.1:9/cat.png"}}])
    assert "refused" in info.value.message
    assert len(fake.converse_calls(upstream)) == before


def test_unsupported_parameter_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, logprobs=True)
    assert info.value.code == "unsupported_parameter"


@pytest.mark.parametrize("model, error, status", [
    ("error-throttling", openai.RateLimitError, 429),
    ("error-validation", openai.BadRequestError, 400),
    ("error-access", openai.PermissionDeniedError, 403),
    ("error-notfound", openai.NotFoundError, 404),
    ("error-timeout", openai.InternalServerError, 504),
    ("error-unavailable", openai.InternalServerError, 503),
    ("error-internal", openai.InternalServerError, 502)])
@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_errors(client, model, error, status, stream):
    with pytest.raises(error) as info:
        ask(client, model, stream=stream)
    assert info.value.status_code == status
    assert "123456789012" not in info.value.message
    if model == "error-validation":
        assert info.value.body["message"] == "The provided model identifier is invalid."
        assert info.value.type == "invalid_request_error"
    if model == "error-notfound":
        assert info.value.code == "model_not_found"
    if model == "error-access":
        assert "is not authorized" in info.value.message


@pytest.mark.parametrize("model, words", [
    ("stream-error-unavailable", "Bedrock is unable to process your request."),
    ("stream-error-throttling", "Too many tokens"),
    ("stream-error-unmodeled", "An internal failure occurred.")])
def test_exception_inside_the_stream(client, model, words):
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in ask(client, model, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "Hello from Bedrock."
    assert words in info.value.message


def test_read_timeout_is_504(client):
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "hang")
    assert info.value.status_code == 504


def test_client_disconnect_releases_the_bedrock_stream(gw, upstream):
    body = {"model": "bedrock/slow-stream", "stream": True,
            "messages": [{"role": "user", "content": "tick"}]}
    with requests.post(gw.url + "/v1/chat/completions", json=body, stream=True, timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(l for l in lines if l.startswith(b"data: ") and b"tick" in l)
    assert upstream.disconnects.wait(5), "the gateway kept reading Bedrock after the client left"


def test_provider_listed(gw):
    listing = requests.get(gw.url + "/v1/providers", timeout=5).json()["providers"]
    bedrock = next(p for p in listing if p["name"] == "bedrock")
    assert bedrock["available"] and bedrock["type"] == "bedrock"


def test_unreachable_endpoint_is_502(start_gateway):
    closed = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway({**fake.gateway_env(type("S", (), {"url": closed})()),
                             "UPSTREAM_CONNECT_TIMEOUT": "1"})
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as info:
                ask(client, stream=stream)
            assert info.value.status_code == 502


def test_concurrent_calls_share_one_worker(client):
    """boto3 under gevent: a slow Bedrock answer does not hold the worker's other requests."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        if i % 2:
            return collect(ask(client, "delay", stream=True))[0]
        return ask(client, "delay").choices[0].message.content

    from tests.fakes import bedrock_upstream
    bedrock_upstream.IN_FLIGHT["max"] = 0
    with ThreadPoolExecutor(12) as pool:
        texts = list(pool.map(one, range(12)))
    assert texts == ["Hello from Bedrock."] * 12
    # one gateway worker had several slow Bedrock calls open at the same time
    assert bedrock_upstream.IN_FLIGHT["max"] >= 6
