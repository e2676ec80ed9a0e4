"""One conformance suite over every provider: the official openai SDK against a
gateway whose providers all point at fake upstreams that speak their real wire
formats. A capability matrix says what each provider is checked for; a
capability is off only where the provider itself cannot do it (echo has no
tools, an agent takes text) or where its fake has no such capture (Azure's
fake relays the same bytes as OpenAI's and carries no tool capture)."""
import json
from dataclasses import dataclass, field

import openai
import pytest

from tests.fakes import anthropic_upstream, azure_upstream, bedrock_upstream
from tests.gateway import Gateway

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
       "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
TOOLS = [{"type": "function", "function": {
    "name": "get_temperature", "description": "Current temperature in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}
ALL = {"text", "stream", "usage", "tools", "stream_tools", "images", "json", "errors", "length"}


@dataclass
class Case:
    provider: str
    model: str
    can: set
    error_model: str | None = None  # a model (or input) that makes the fake fail
    error: type = openai.RateLimitError
    length_model: str | None = None
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.provider


CASES = [
    Case("echo", "echo", {"text", "stream", "usage", "images", "length"}),
    Case("openai", "openai/gpt-4o-mini", ALL - {"length"}, error_model="openai/error-429"),
    Case("azure", "azure/gpt-4o-mini", {"text", "stream", "usage", "images", "errors"},
         error_model="azure/gpt-5", error=openai.NotFoundError),
    Case("anthropic", "anthropic/claude-sonnet-4-5", ALL, error_model="anthropic/error-429",
         length_model="anthropic/stop-max_tokens"),
    Case("bedrock", "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", ALL,
         error_model="bedrock/error-throttling", length_model="bedrock/us.amazon.nova-max-tokens"),
    Case("bedrock-agent", "bedrock-agent/agent", {"text", "stream", "usage", "errors"},
         error_model="throttle me"),
]


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    fakes = [anthropic_upstream.start(), azure_upstream.start(), bedrock_upstream.start()]
    env = {"OPENAI_API_KEY": "sk-conformance-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1",
           **anthropic_upstream.gateway_env(fakes[0]), **azure_upstream.gateway_env(fakes[1]),
           **bedrock_upstream.gateway_env(fakes[2])}
    gateway = Gateway(env).start(tmp_path_factory.mktemp("conformance"))
    yield gateway
    gateway.stop()
    for fake in fakes:
        fake.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def needs(case: Case, capability: str):
    if capability not in case.can:
        pytest.skip(f"{case.provider}: {capability} is outside its capability matrix")


def ask(text="What is the weather like in Paris today?"):
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_text(client, case):
    needs(case, "text")
    reply = client.chat.completions.create(model=case.model, messages=ask())
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl")
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_stream(client, case):
    needs(case, "stream")
    chunks = list(client.chat.completions.create(model=case.model, messages=ask(), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # not asked for
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("case", CASES, ids=str)
def test_usage(client, case):
    needs(case, "usage")
    reply = client.chat.completions.create(model=case.model, messages=ask())
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    chunks = list(client.chat.completions.create(model=case.model, messages=ask(), stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def _calls_from_stream(chunks):
    calls, finish = {}, None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or delta.id
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    return calls, finish


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tools(client, case):
    needs(case, "tools")
    reply = client.chat.completions.create(model=case.model, messages=ask(), tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.id and call.type == "function" and call.function.name
    assert isinstance(json.loads(call.function.arguments), dict)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_streamed_tools(client, case):
    needs(case, "stream_tools")
    calls, finish = _calls_from_stream(client.chat.completions.create(
        model=case.model, messages=ask(), tools=TOOLS, stream=True))
    assert finish == "tool_calls" and calls
    first = calls[min(calls)]
    assert first["id"] and first["name"]
    assert isinstance(json.loads(first["arguments"]), dict)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_images(client, case):
    needs(case, "images")
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                             {"type": "image_url", "image_url": {"url": PNG}}]}]
    reply = client.chat.completions.create(model=case.model, messages=messages)
    assert reply.choices[0].message.content


@pytest.mark.parametrize("case", CASES, ids=str)
def test_json_mode(client, case):
    needs(case, "json")
    reply = client.chat.completions.create(model=case.model, messages=ask(), response_format=SCHEMA)
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    assert reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_errors(client, case):
    needs(case, "errors")
    model, messages = (case.model, ask(case.error_model)) if case.provider == "bedrock-agent" \
        else (case.error_model, ask())
    with pytest.raises(case.error):
        client.chat.completions.create(model=model, messages=messages)
    with pytest.raises(case.error):
        list(client.chat.completions.create(model=model, messages=messages, stream=True))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_length_finish(client, case):
    needs(case, "length")
    model = case.length_model or case.model
    reply = client.chat.completions.create(model=model, messages=ask("one two three four five"),
                                           max_tokens=2)
    assert reply.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model=model, messages=ask("one two three four five"),
                                                 max_tokens=2, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
