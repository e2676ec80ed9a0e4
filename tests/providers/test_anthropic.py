"""The native `anthropic` provider end to end: the openai SDK against a real gateway
whose Anthropic upstream is the capture-built fake; then the pure translation pieces."""
import asyncio
import json
from types import SimpleNamespace

import openai
import pytest
import requests

from providers import anthropic as anth
from proxy import errors
from tests.fakes import anthropic_upstream as fake_api
from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                           "temp_c": {"type": "integer"}},
          "required": ["city", "temp_c"], "additionalProperties": False}
TEXT = json.loads(fake_api.fixture("messages_nonstream_text.json"))["content"][0]["text"]


@pytest.fixture(scope="module")
def fake():
    server = fake_api.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    gateway = Gateway({**fake_api.gateway_env(fake), "PROVIDER_NAME": "anthropic"})
    gateway.start(tmp_path_factory.mktemp("anthropic"))
    yield gateway
    gateway.stop()


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture
def client(gw):
    with sdk(gw) as client:  # closed, so no idle keep-alive delays the gateway's shutdown
        yield client


def _extra(obj, name):
    return getattr(obj, name, None) or (obj.model_extra or {}).get(name)


def collect(chunks):
    """A streamed answer put back together from its deltas."""
    out = SimpleNamespace(text="", reasoning="", calls={}, finish=None, usage=None, chunks=0)
    for chunk in chunks:
        out.chunks += 1
        out.usage = chunk.usage or out.usage
        for choice in chunk.choices:
            delta = choice.delta
            out.text += delta.content or ""
            out.reasoning += _extra(delta, "reasoning_content") or ""
            for call in delta.tool_calls or ():
                slot = out.calls.setdefault(call.index, {"id": None, "name": None, "args": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] = (call.function and call.function.name) or slot["name"]
                slot["args"] += (call.function and call.function.arguments) or ""
            out.finish = choice.finish_reason or out.finish
    return out


# ---- answers ------------------------------------------------------------------

def test_text_non_streaming(client, fake):
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=HI)
    assert reply.id.startswith("chatcmpl-")  # the gateway's id; Anthropic's msg id is not reused
    assert reply.model == "claude-sonnet-4-6"  # the model that answered, as Anthropic reports it
    choice = reply.choices[0]
    assert choice.message.content == TEXT and choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (717, 52)
    assert reply.usage.prompt_tokens_details.cached_tokens == 0
    sent = fake.last
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == fake_api.API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers  # the client's own key never goes upstream
    assert sent.json() == {"model": "claude-sonnet-4-5", "max_tokens": 4096,
                           "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_text_stream_with_cached_usage(client, fake):
    chunks = list(client.chat.completions.create(
        model="claude-sonnet-4-5-cached", messages=HI, stream=True,
        stream_options={"include_usage": True}))
    got = collect(chunks)
    assert fake.last.json()["stream"] is True
    assert got.text == TEXT and got.finish == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and got.usage is chunks[-1].usage
    assert got.usage.prompt_tokens == 3 + 20 + 1217  # input + cache writes + cache reads
    assert got.usage.prompt_tokens_details.cached_tokens == 1217
    assert got.usage.completion_tokens == 52 and got.usage.total_tokens == 1240 + 52


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                                 stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert collect(chunks).text == TEXT


def test_stream_is_openai_sse_on_the_wire(gw):
    body = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "claude-sonnet-4-5", "messages": HI, "stream": True}).content
    events = body.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    assert all(e.startswith(b"data: {") for e in events[:-2])
    assert b"event:" not in body and b"ping" not in body and b"message_start" not in body


def test_tool_calls_non_streaming(client):
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=HI, tools=[WEATHER])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll calculate 15 + 27 right away using the `add_numbers` tool!"
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("toolu_0111pu1MrxY8aTqNzYSWAgQF",
                                                        "function", "add_numbers")
    assert json.loads(call.function.arguments) == {"a": 15, "b": 27}


def test_tool_calls_streamed_use_tool_call_indexes(client):
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                                 tools=[WEATHER], stream=True))
    got = collect(chunks)
    # Anthropic's block index is 1 (text is block 0); OpenAI's index counts tool calls
    assert list(got.calls) == [0]
    assert got.calls[0]["id"] == "toolu_01Lfr3kUnHMZApePPRWMv1uS"
    assert got.calls[0]["name"] == "get_current_temperature"
    assert json.loads(got.calls[0]["args"]) == {"city": "San Francisco"}
    assert got.text.startswith("I'll help you find out") and got.finish == "tool_calls"
    first = next(c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls)
    assert first.id and first.function.name and first.function.arguments == ""


def _thinking_capture():
    message = fake_api.sse_to_message(fake_api.fixture("messages_stream_thinking.sse"))
    return message["content"][0]["thinking"], message["content"][1]["text"]


def test_thinking_streams_as_reasoning_content(client, fake):
    got = collect(client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                                 reasoning_effort="low", stream=True))
    thinking, text = _thinking_capture()
    assert got.reasoning == thinking and got.text == text and got.finish == "stop"
    sent = fake.last.json()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] == 4096 + 1024  # the budget comes on top of the default


def test_thinking_non_streaming(client):
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                           reasoning_effort="medium", max_tokens=8000)
    thinking, text = _thinking_capture()
    assert _extra(reply.choices[0].message, "reasoning_content") == thinking
    assert reply.choices[0].message.content == text
    assert reply.usage.completion_tokens == 282


@pytest.mark.parametrize("stream", [True, False])
def test_stop_sequence(client, fake, stream):
    kwargs = dict(model="claude-haiku-4-5", messages=HI, stop="```", max_tokens=64)
    if stream:
        got = collect(client.chat.completions.create(stream=True, **kwargs))
        text, finish = got.text, got.finish
    else:
        choice = client.chat.completions.create(**kwargs).choices[0]
        text, finish = choice.message.content, choice.finish_reason
    assert fake.last.json()["stop_sequences"] == ["```"]
    assert text.startswith("\ndef pelican():") and finish == "stop"


@pytest.mark.parametrize("reason, finish", [
    ("end_turn", "stop"), ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("a_reason_from_2030", "stop")])
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons(client, reason, finish, stream):
    if stream:
        got = collect(client.chat.completions.create(model=f"stop-{reason}", messages=HI,
                                                     stream=True))
        assert got.finish == finish and got.text == TEXT
    else:
        reply = client.chat.completions.create(model=f"stop-{reason}", messages=HI)
        assert reply.choices[0].finish_reason == finish


# ---- structured output ---------------------------------------------------------

def _json_format(schema=SCHEMA):
    return {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema,
                                                   "strict": True}}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answer_is_the_message_text(client, fake, stream):
    kwargs = dict(model="claude-sonnet-4-5", messages=HI, response_format=_json_format())
    if stream:
        got = collect(client.chat.completions.create(stream=True, **kwargs))
        text, finish, calls = got.text, got.finish, got.calls
    else:
        choice = client.chat.completions.create(**kwargs).choices[0]
        text, finish, calls = choice.message.content, choice.finish_reason, choice.message.tool_calls
    assert json.loads(text) == {"city": "Paris", "temp_c": 42}
    assert finish == "stop" and not calls
    sent = fake.last.json()
    [tool] = sent["tools"]
    assert tool["name"] == anth.JSON_TOOL and tool["input_schema"] == SCHEMA
    assert sent["tool_choice"] == {"type": "tool", "name": anth.JSON_TOOL,
                                   "disable_parallel_tool_use": True}


def test_json_object_mode(client, fake):
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                           response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content) == {}
    assert fake.last.json()["tools"][0]["input_schema"] == {"type": "object"}


def test_json_schema_next_to_client_tools_does_not_force_either(client, fake):
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                           tools=[WEATHER], response_format=_json_format())
    sent = fake.last.json()
    assert [t["name"] for t in sent["tools"]] == ["get_weather", anth.JSON_TOOL]
    assert "tool_choice" not in sent
    assert reply.choices[0].finish_reason == "tool_calls"  # a real tool was called


# ---- request translation -----------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
    {"role": "user", "content": "What is the weather"},
    {"role": "user", "content": [
        {"type": "text", "text": "in Paris and Rome?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/map.jpg", "detail": "low"}}]},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "toolu_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "toolu_b", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
    {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "21C"}]},
    {"role": "user", "content": "And tomorrow?"},
]


def test_request_translation(client, fake):
    client.chat.completions.create(
        model="claude-sonnet-4-5", messages=CONVERSATION, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, stop=["END"], temperature=0.3, top_p=0.9,
        max_completion_tokens=300, user="user-42", n=1,
        seed=7, presence_penalty=0.5, frequency_penalty=0.1, logit_bias={"50256": -100})
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    assert fake.last.json() == {
        "model": "claude-sonnet-4-5", "max_tokens": 300,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": [
                text("What is the weather"), text("in Paris and Rome?"),
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "url",
                                             "url": "https://example.com/map.jpg"}}]},
            {"role": "assistant", "content": [
                text("Checking."),
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather",
                 "input": {"city": "Rome"}}]},
            {"role": "user", "content": [  # both results and the next question: one turn
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": [text("18C")]},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": [text("21C")]},
                text("And tomorrow?")]}],
        "tools": [{"name": "get_weather", "description": "Current weather in a city.",
                   "input_schema": WEATHER["function"]["parameters"]}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.9,
        "metadata": {"user_id": "user-42"}}


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"})])
def test_tool_choice(client, fake, choice, expected):
    client.chat.completions.create(model="claude-sonnet-4-5", messages=HI, tools=[WEATHER],
                                   tool_choice=choice)
    assert fake.last.json()["tool_choice"] == expected


def test_parallel_tool_calls_false_without_tool_choice(client, fake):
    client.chat.completions.create(model="claude-sonnet-4-5", messages=HI, tools=[WEATHER],
                                   parallel_tool_calls=False)
    assert fake.last.json()["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize("params, param", [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                                           ({"top_logprobs": 3, "logprobs": False}, "top_logprobs")])
def test_unsupported_parameters_are_rejected_before_upstream(client, fake, params, param):
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=HI, **params)
    assert info.value.body["code"] == "unsupported_parameter"
    assert info.value.body["param"] == param and "anthropic" in info.value.body["message"]
    assert len(fake.requests) == before


@pytest.mark.parametrize("messages, param", [
    ([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
     "messages[0].content[0]"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}],
     "messages[0].content[0]"),
])
def test_untranslatable_requests_are_400(client, messages, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert info.value.body["param"] == param


# ---- errors ---------------------------------------------------------------------

@pytest.mark.parametrize("fields, param", [
    ({"tools": [WEATHER, {"type": "custom", "custom": {"name": "sql"}}]}, "tools[1].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}},
     "tool_choice.type"),
    ({"messages": [*HI, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}]}]},
     "messages[1].tool_calls[0].type"),
])
def test_custom_tools_are_400_before_upstream(client, fake, fields, param):
    """Valid for OpenAI, not expressible in Messages: refused by name, never a 500."""
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**{"model": "claude-sonnet-4-5", "messages": HI, **fields})
    assert (info.value.body["param"], info.value.body["code"]) == (param, "unsupported_value")
    assert len(fake.requests) == before


@pytest.mark.parametrize("model, exc, status, etype, code", [
    ("error-400", openai.BadRequestError, 400, "invalid_request_error", None),
    ("error-401", openai.AuthenticationError, 401, "invalid_request_error", "invalid_api_key"),
    ("error-402", openai.APIStatusError, 402, "insufficient_quota", "insufficient_quota"),
    ("error-403", openai.PermissionDeniedError, 403, "invalid_request_error", "permission_denied"),
    ("error-404", openai.NotFoundError, 404, "invalid_request_error", "model_not_found"),
    ("error-413", openai.APIStatusError, 413, "invalid_request_error", "request_too_large"),
    ("error-429", openai.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
    ("error-500", openai.InternalServerError, 502, "server_error", "upstream_error"),
    ("error-504", openai.InternalServerError, 504, "server_error", "upstream_timeout"),
    ("error-529", openai.InternalServerError, 503, "server_error", "overloaded"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors(client, model, exc, status, etype, code, stream):
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=HI, stream=stream)
    error = info.value
    assert error.status_code == status  # a real HTTP error, streaming or not
    assert (error.body["type"], error.body["code"]) == (etype, code)


def test_error_messages_are_scrubbed(client):
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="error-401", messages=HI)
    message = info.value.body["message"]
    assert message.startswith("invalid x-api-key")
    assert fake_api.API_KEY not in message and "Zx9Yw8" not in message


def test_rate_limit_keeps_retry_after(client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="error-429", messages=HI)
    assert info.value.response.headers["retry-after"] == "7"


def test_overloaded_keeps_the_upstream_words(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="error-529", messages=HI)
    assert "overloaded_error" in info.value.body["message"]


def test_mid_stream_error_raises_while_iterating(client):
    received = []
    stream = client.chat.completions.create(model="error-midstream", messages=HI, stream=True)
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "\ndef pelican():\n    return \"A large waterbird with a long bill and a"
    assert info.value.body["code"] == "overloaded"


def test_error_event_before_any_content_is_an_http_error(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="error-prestream", messages=HI, stream=True)
    assert info.value.status_code == 503


def test_stream_cut_before_message_stop_is_an_error(client):
    with pytest.raises(openai.APIError):
        collect(client.chat.completions.create(model="cut-stream", messages=HI, stream=True))


# ---- async client ------------------------------------------------------------------

def test_async_client(gw):
    async def run():
        aclient = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        reply = await aclient.chat.completions.create(model="claude-sonnet-4-5", messages=HI)
        stream = await aclient.chat.completions.create(
            model="claude-sonnet-4-5", messages=HI, tools=[WEATHER], stream=True)
        calls = collect([chunk async for chunk in stream]).calls
        with pytest.raises(openai.RateLimitError):
            await aclient.chat.completions.create(model="error-429", messages=HI)
        await aclient.close()
        return reply, calls

    reply, calls = asyncio.run(run())
    assert reply.choices[0].message.content == TEXT
    assert calls[0]["name"] == "get_current_temperature"


def test_the_gateway_never_crashed(gw):
    """Every failure above was translated: none reached the catch-all handlers."""
    logs = gw.logs()
    assert "unhandled error" not in logs and "stream failed" not in logs


# ---- configuration and routing ---------------------------------------------------

def test_options_and_routing_without_default_provider(start_gateway, fake):
    gw = start_gateway({**fake_api.gateway_env(fake), "ANTHROPIC_VERSION": "2024-02-02",
                        "ANTHROPIC_DEFAULT_MAX_TOKENS": "123"})
    routes = [("anthropic/claude-opus-4-1", None),
              ("claude-opus-4-1", None),  # a preset model routes by name
              ("some-new-claude", {"X-Provider": "anthropic"})]
    with sdk(gw) as client:
        for model, headers in routes:
            client.chat.completions.create(model=model, messages=HI, extra_headers=headers)
            assert fake.last.json()["model"] == model.removeprefix("anthropic/")
            assert fake.last.json()["max_tokens"] == 123
            assert fake.last.headers["anthropic-version"] == "2024-02-02"
        listed = {m.id for m in client.models.list() if m.model_extra["provider"] == "anthropic"}
    assert {"claude-sonnet-4-5", "claude-haiku-4-5"} <= listed


def test_wrong_key_and_missing_key(start_gateway, fake):
    wrong = start_gateway({**fake_api.gateway_env(fake), "ANTHROPIC_API_KEY": "wrong-key-123456"})
    with sdk(wrong) as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="claude-sonnet-4-5", messages=HI,
                                       extra_headers={"X-Provider": "anthropic"})
    missing = start_gateway({"ANTHROPIC_BASE_URL": fake.url})
    with sdk(missing) as client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                       extra_headers={"X-Provider": "anthropic"})
    assert "ANTHROPIC_API_KEY" in info.value.body["message"]


def test_client_disconnect_closes_the_upstream(start_gateway):
    server = fake_api.start()
    try:
        gw = start_gateway({**fake_api.gateway_env(server), "PROVIDER_NAME": "anthropic"})
        with requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=10, json={
                "model": "slow-stream", "messages": HI, "stream": True}) as resp:
            lines = resp.iter_lines()
            assert next(l for l in lines if l).startswith(b"data: ")
        assert server.disconnects.wait(5) and not server.completed.is_set()
    finally:
        server.__exit__(None, None, None)


# ---- pure translation ----------------------------------------------------------------

def events_of(stream_events, json_tool=None):
    translator = anth.Translator(json_tool)
    return [e for name, data in stream_events for e in translator.feed(name, data)]


def test_usage_takes_input_from_message_start_when_message_delta_omits_it():
    got = events_of([
        ("message_start", {"message": {"id": "msg_1", "model": "m", "usage": {
            "input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
            "output_tokens": 1}}}),
        ("ping", {}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
        ("message_stop", {})])
    assert got[0] == anth.ResponseMeta(id="msg_1", model="m")
    assert got[-1] == anth.Usage(prompt_tokens=115, completion_tokens=9, cached_tokens=100)


def test_tool_call_indexes_count_calls_and_empty_input_is_an_object():
    message = {"id": "m", "model": "m", "stop_reason": "tool_use", "usage": {}, "content": [
        {"type": "text", "text": "Two calls."},
        {"type": "tool_use", "id": "t1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "t2", "name": "b", "input": {}}]}
    calls = [e for e in events_of(anth.replay(message)) if isinstance(e, anth.ToolCallDelta)]
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "t1", "a", ""), (0, None, None, '{"x":1}'), (1, "t2", "b", ""), (1, None, None, "{}")]
    streamed = events_of([
        ("content_block_start", {"index": 0, "content_block": {"type": "tool_use", "id": "t",
                                                               "name": "n", "input": {}}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                       "partial_json": ""}}),
        ("content_block_stop", {"index": 0})])
    assert [c.arguments for c in streamed] == ["", "{}"]


def test_error_mapping_uses_type_then_status_never_text():
    def mapped(status, body):
        error = anth.upstream_error(status, body if isinstance(body, bytes) else
                                    json.dumps(body).encode(), ("s3cret-key",))
        return error.status, error.type, error.code, error.message

    body = lambda kind, msg: {"type": "error", "error": {"type": kind, "message": msg}}  # noqa
    assert mapped(500, body("overloaded_error", "x"))[:3] == (503, "server_error", "overloaded")
    assert mapped(500, body("api_error", "rate limit exceeded"))[:3] == (502, "server_error",
                                                                         "upstream_error")
    assert mapped(418, body("teapot_error", "no"))[:2] == (418, "invalid_request_error")
    assert mapped(503, b"<html>bad gateway</html>")[:2] == (502, "server_error")
    assert mapped(None, body("overloaded_error", "Overloaded"))[0] == 503
    assert "s3cret-key" not in mapped(400, body("invalid_request_error", "key s3cret-key"))[3]


def test_build_request_edge_cases():
    build = lambda **body: anth.build_request({"model": "m", **body}, "m", False, 4096)[0]  # noqa
    with pytest.raises(errors.InvalidRequest):
        build(messages=[{"role": "function", "name": "f", "content": "x"}])
    # empty turns are dropped, temperature is clamped into Anthropic's range
    out = build(messages=[*HI, {"role": "assistant", "content": ""}], temperature=1.7)
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert out["temperature"] == 1.0
    # thinking: its budget stays under the client's max_tokens; forced tools and sampling go
    out = build(messages=HI, reasoning_effort="high", max_tokens=5000, temperature=0.2,
                tools=[WEATHER], tool_choice="required")
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert out["tool_choice"] == {"type": "auto"} and "temperature" not in out
    assert "thinking" not in build(messages=HI, reasoning_effort="low", max_tokens=500)


def test_closing_the_events_closes_the_upstream():
    class Upstream:
        closed = False

        def events(self):
            yield b'event: message_start\ndata: {"type":"message_start","message":{"usage":{}}}\n\n'
            yield (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   b'"delta":{"type":"text_delta","text":"hi"}}\n\n')
            raise AssertionError("read on after the client went away")

        def close(self):
            self.closed = True

    upstream = Upstream()
    provider = anth.AnthropicProvider.__new__(anth.AnthropicProvider)
    provider.spec = SimpleNamespace(api_key="k")
    events = provider._stream(upstream, anth.Translator())
    assert isinstance(next(events), anth.ResponseMeta)
    assert next(events) == anth.TextDelta("hi")
    events.close()  # what the gateway does when the client goes away
    assert upstream.closed
