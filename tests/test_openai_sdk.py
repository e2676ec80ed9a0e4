"""The official openai SDK, pointed at the gateway, against the fake OpenAI upstream."""
import asyncio
import json

import openai
import pytest

from tests.fakes.openai_upstream import fixture, sse_blocks

MESSAGES = [{"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_capital", "description": "Capital of a country",
                                            "parameters": {"type": "object",
                                                           "properties": {"country": {"type": "string"}}}}}]


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)


def _captured_text(name: str) -> str:
    text = ""
    for block in sse_blocks(fixture(name)):
        payload = block.removeprefix(b"data: ").strip()
        if payload and payload != b"[DONE]":
            for choice in json.loads(payload)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def test_non_streaming_relays_the_upstream_answer(client, openai_fake):
    reply = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    expected = json.loads(fixture("chat_nonstream.json"))
    assert reply.id == expected["id"]
    assert reply.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert reply.usage.total_tokens == expected["usage"]["total_tokens"]
    sent = openai_fake.last
    assert sent.json()["model"] == "gpt-4o-mini"  # the provider prefix is not forwarded
    assert sent.headers["authorization"] == "Bearer sk-test-gateway-key-0123456789"


def test_streaming_without_usage(client, openai_fake):
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(stream)
    # the gateway asked the upstream for usage (for its log) ...
    assert openai_fake.last.json()["stream_options"] == {"include_usage": True}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        _captured_text("chat_stream_include_usage.sse")
    # ... and the client still sees no usage at all, as it asked
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streaming_with_include_usage(client):
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 30


def test_tool_calls_non_streaming(client):
    reply = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "error_tool" and call.function.arguments == "{}"


def test_tool_call_stream_reassembles(client):
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, tools=TOOLS,
                                            stream=True, stream_options={"include_usage": True})
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_capital"
    assert json.loads(calls[0]["arguments"]) == {"country": "UK"}


def test_n_greater_than_one(client):
    reply = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, n=3,
                                            stream=True, stream_options={"include_usage": True})
    texts = {}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert sorted(texts) == [0, 1, 2] and all(texts.values())


def test_response_format_and_vendor_fields_reach_the_upstream(client, openai_fake):
    client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=MESSAGES, logprobs=True, top_logprobs=2,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        extra_body={"vendor_field": {"keep": True}, "provider": "openai"})
    sent = openai_fake.last.json()
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert sent["vendor_field"] == {"keep": True}
    assert "provider" not in sent


def test_raw_response_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-upstream-request-id"] == "req_fakeupstream0002"
    assert raw.headers["x-ratelimit-limit-requests"] == "10000"
    assert raw.parse().choices[0].message.content


@pytest.mark.parametrize("model, error", [
    ("error-400", openai.BadRequestError),
    ("error-401", openai.AuthenticationError),
    ("error-404", openai.NotFoundError),
    ("error-429", openai.RateLimitError),
    ("error-500", openai.InternalServerError),
    ("error-503", openai.InternalServerError),
])
def test_upstream_errors_raise_the_sdk_classes(client, model, error):
    with pytest.raises(error) as info:
        client.chat.completions.create(model=f"openai/{model}", messages=MESSAGES)
    assert "sk-fakefake" not in str(info.value.body)


def test_upstream_4xx_keeps_status_and_message(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="openai/error-400", messages=MESSAGES)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "stop"
    assert "'stop' is not supported" in info.value.body["message"]


def test_upstream_5xx_keeps_its_status(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="openai/error-503", messages=MESSAGES)
    assert info.value.status_code == 503
    assert "sk-***" in info.value.body["message"]


def test_upstream_timeout_is_504(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="openai/hang", messages=MESSAGES,
                                       extra_body={"hang_seconds": 5})
    assert info.value.status_code == 504


def test_cut_stream_ends_with_an_error_event(client):
    stream = client.chat.completions.create(model="openai/cut-stream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_echo_through_the_sdk(client):
    reply = client.chat.completions.create(model="echo", messages=MESSAGES)
    assert reply.choices[0].message.content == "hi there"
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 2
    chunks = list(client.chat.completions.create(model="echo", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert [c.choices[0].delta.content for c in chunks[1:3]] == ["hi", " there"]
    assert chunks[-1].usage.total_tokens == 11


def test_async_client(gateway):
    async def run():
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        reply = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        stream = await client.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="openai/error-401", messages=MESSAGES)
        await client.close()
        return reply, text

    reply, text = asyncio.run(run())
    assert reply.choices[0].finish_reason == "stop"
    assert text == "hi there"
