"""First-token deadlines (`first_token_timeout`, issue 14): an attempt whose first
content token is late is abandoned (its upstream connection closed) and the next
route is tried, logged as an attempt of its own error type."""

import requests
import openai
import pytest

from providers import registry
from proxy.config import Config
from proxy.routing import first_token
from proxy.upstream import HttpPool
from tests.fakes import anthropic_upstream, openai_upstream
from tests.fakes.paced_upstream import PacedUpstream
from tests.gateway import Gateway

HI = [{"role": "user", "content": "say hi"}]
CONFIG = """
[providers.slowpoke]
type = "openai"
base_url = "{slow}/v1"
retries = 0
first_token_timeout = 0.4

[providers.backup]
type = "openai"
base_url = "{backup}/v1"
retries = 0

[providers.lonely]
type = "openai"
base_url = "{lonely}/v1"
retries = 1
first_token_timeout = 0.4

[providers.patient]
type = "openai"
base_url = "{patient}/v1"
retries = 0

[models."voice"]
provider = "slowpoke"
model = "gpt-4o-mini"
fallbacks = ["backup/gpt-4o-mini"]

[models."voice-claude"]
provider = "anthropic"
model = "claude-sonnet-4-5"
first_token_timeout = 0.4
fallbacks = ["backup/gpt-4o-mini"]

[models."strict"]
provider = "patient"
model = "gpt-4o-mini"
first_token_timeout = 0.4

[models."unhurried"]
provider = "patient"
model = "gpt-4o-mini"
"""


@pytest.fixture(scope="module")
def fakes():
    made = {name: PacedUpstream(openai_upstream.handle)
            for name in ("slow", "backup", "lonely", "patient")}
    made["anthropic"] = PacedUpstream(anthropic_upstream.handle)
    yield made
    for fake in made.values():
        fake.close()


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_token")
    (tmp / "gateway.toml").write_text(CONFIG.format(**{k: f.url for k, f in fakes.items()}))
    env = {"GATEWAY_CONFIG": str(tmp / "gateway.toml"), "ANTHROPIC_API_KEY": anthropic_upstream.API_KEY,
           "ANTHROPIC_BASE_URL": fakes["anthropic"].url}
    gateway = Gateway(env).start(tmp)
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def streamed_text(stream) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_late_first_token_moves_to_the_next_route(client, gw, fakes):
    fakes["slow"].pace(3.0)  # its role chunk comes at once: that is not a token
    closed = fakes["slow"].closed
    raw = client.chat.completions.with_raw_response.create(model="voice", messages=HI, stream=True)
    assert (raw.headers["x-gateway-provider"], raw.headers["x-gateway-model"]) == \
        ("backup", "gpt-4o-mini")
    assert streamed_text(raw.parse())
    assert fakes["slow"].wait_closed(closed + 1) == closed + 1  # abandoned, connection closed
    request_id = raw.headers["x-request-id"]
    rows = gw.rows(request_id, 2)
    assert [(r["request_id"], r["provider"], r["status"], r["error_type"]) for r in rows] == [
        (request_id, "backup", 200, None),
        (f"{request_id}.1", "slowpoke", 504, "first_token_timeout")]


def test_a_late_whole_answer_moves_on_too(client, fakes):
    fakes["slow"].pace(3.0)
    raw = client.chat.completions.with_raw_response.create(model="voice", messages=HI)
    assert raw.headers["x-gateway-provider"] == "backup"
    assert raw.parse().choices[0].message.content


def test_a_token_in_time_is_served_by_the_first_route(client, fakes):
    fakes["slow"].pace(0.05)
    raw = client.chat.completions.with_raw_response.create(model="voice", messages=HI, stream=True)
    assert raw.headers["x-gateway-provider"] == "slowpoke"
    assert streamed_text(raw.parse())


def test_the_only_route_is_tried_again_at_once(gw, fakes):
    lonely = fakes["lonely"].pace(3.0, 0.0)
    before = len(lonely.requests)
    resp = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "lonely/gpt-4o-mini", "messages": HI, "stream": True})
    body, request_id = resp.content, resp.headers["x-request-id"]
    assert resp.status_code == 200 and body.endswith(b"data: [DONE]\n\n")
    assert len(lonely.requests) == before + 2
    rows = gw.rows(request_id, 2)
    assert [(r["status"], r["error_type"]) for r in rows] == [(200, None),
                                                             (504, "first_token_timeout")]


def test_every_route_late_is_a_504_in_openais_shape(gw, fakes):
    fakes["patient"].pace(3.0)
    resp = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "strict", "messages": HI, "stream": True})
    assert resp.status_code == 504
    error = resp.json()["error"]
    assert error["code"] == "first_token_timeout" and set(error) == {"message", "type", "param",
                                                                     "code"}
    assert "patient" in error["message"]


def test_without_a_deadline_a_slow_first_token_is_waited_for(client, fakes):
    fakes["patient"].pace(0.8)
    stream = client.chat.completions.create(model="unhurried", messages=HI, stream=True)
    assert streamed_text(stream)


def test_a_translated_provider_has_the_deadline_too(client, fakes):
    fakes["anthropic"].pace(3.0)
    raw = client.chat.completions.with_raw_response.create(model="voice-claude", messages=HI,
                                                           stream=True)
    assert raw.headers["x-gateway-provider"] == "backup"
    assert streamed_text(raw.parse())
    fakes["anthropic"].pace(0.0)
    raw = client.chat.completions.with_raw_response.create(model="voice-claude", messages=HI,
                                                           stream=True)
    assert raw.headers["x-gateway-provider"] == "anthropic"


@pytest.mark.parametrize("value", ['"fast"', "-1", "0", "true", "1e9"])
def test_a_bad_deadline_is_a_startup_error(tmp_path, value):
    for table in (f'[providers.x]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                  f"first_token_timeout = {value}\n",
                  f'[models."m"]\nprovider = "echo"\nfirst_token_timeout = {value}\n'):
        path = tmp_path / "gateway.toml"
        path.write_text(table)
        with pytest.raises(ValueError, match="first_token_timeout"):
            config = Config.from_env({"GATEWAY_CONFIG": str(path)})
            registry.build(config.providers["x"], HttpPool())  # a provider reads its own


@pytest.mark.parametrize("piece, token", [
    (b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n', False),
    (b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}\n\n', False),
    (b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n', True),
    (b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n', True),  # spaced JSON
    (b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}\n\n', True),
    (b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1"}]}}]}\n\n', True),
    (b'data: {"choices":[{"delta":{"tool_calls":[]}}]}\n\n', False),
    (b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', False),
    (b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n', False),
    # a field's name inside a string value is escaped: never taken for the field
    (b'data: {"choices":[{"delta":{"role":"assistant","refusal":null}}],'
     b'"x":"say \\"content\\":\\"no\\""}\n\n', False),
    (b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
     b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', True),
])
def test_what_counts_as_a_first_token(piece, token):
    assert first_token.sse_has_content(piece) is token
