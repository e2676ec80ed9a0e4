"""Operators describe their own models in GATEWAY_CONFIG ([model_info.NAME]:
context window, capabilities, price) and say which models `auto` may pick
([auto] models); /v1/models, `auto` and pricing all read the same facts."""
import json

import openai
import pytest
import requests

from tests.fakes.server import FakeServer, Reply
from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


def answer(req):
    model = req.json()["model"]
    return Reply(200, {"Content-Type": "application/json"}, json.dumps({
        "id": "chatcmpl-local", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"{model} here"}}],
        "usage": USAGE}).encode())


CONFIG = """
[providers.local]
type = "openai"
base_url = "{url}/v1"
models = ["house-llm", "tiny-llm"]

[model_info."house-llm"]
context_length = 32768
supports_tools = true
supports_vision = false
price = {{ input = 1.0, output = 2.0 }}

[model_info."tiny-llm"]
context_length = 2048
supports_tools = false
price = {{ input = 0.5, output = 0.5 }}
{auto}
"""


@pytest.fixture(scope="module")
def local():
    with FakeServer(answer) as server:
        yield server


def start(start_gateway, tmp_path, local, auto: str = "") -> Gateway:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(url=local.url, auto=auto))
    # a configured OpenAI preset too: its catalog models are cheaper candidates for `auto`
    return start_gateway({"GATEWAY_CONFIG": str(path), "OPENAI_API_KEY": "sk-unused-0123456789",
                          "OPENAI_BASE_URL": local.url + "/v1"})


def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def test_models_lists_the_operators_facts(start_gateway, tmp_path, local):
    gw = start(start_gateway, tmp_path, local)
    listed = {m["id"]: m for m in requests.get(gw.url + "/v1/models", timeout=10).json()["data"]
              if m["provider"] == "local"}
    assert listed["house-llm"]["context_length"] == 32768
    assert listed["house-llm"]["supports_tools"] is True
    assert listed["tiny-llm"]["context_length"] == 2048


def test_pricing_uses_the_operators_price(start_gateway, tmp_path, local):
    gw = start(start_gateway, tmp_path, local)
    raw = client(gw).chat.completions.with_raw_response.create(model="local/house-llm",
                                                               messages=HI)
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)


def test_auto_picks_only_from_the_operators_list(start_gateway, tmp_path, local):
    gw = start(start_gateway, tmp_path, local, auto='[auto]\nmodels = ["local/house-llm", "tiny-llm"]')
    raw = client(gw).chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert (raw.headers["x-gateway-provider"], raw.headers["x-gateway-model"]) == \
        ("local", "tiny-llm")  # the cheapest of the two named
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    raw = client(gw).chat.completions.with_raw_response.create(model="auto", messages=HI,
                                                               tools=tools)
    assert raw.headers["x-gateway-model"] == "house-llm"  # the only one named that has tools
    long = [{"role": "user", "content": "word " * 20000}]  # ~25k tokens: past tiny's window
    raw = client(gw).chat.completions.with_raw_response.create(model="auto", messages=long)
    assert raw.headers["x-gateway-model"] == "house-llm"


def test_without_a_list_auto_may_pick_any_model_it_knows(start_gateway, tmp_path, local):
    gw = start(start_gateway, tmp_path, local)
    raw = client(gw).chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.headers["x-gateway-provider"] == "openai"  # a catalog model is cheaper


@pytest.mark.parametrize("bad", ['context_length = "big"', "supports_tools = 1",
                                 "colour = 'blue'", "context_length = -5"])
def test_a_malformed_model_description_stops_the_start(tmp_path, local, bad):
    path = tmp_path / "gateway.toml"
    path.write_text(f'[model_info."house-llm"]\n{bad}\n')
    with pytest.raises(RuntimeError, match="model_info.house-llm"):
        Gateway({"GATEWAY_CONFIG": str(path)}).start(tmp_path)
