"""`model: "auto"`: the cheapest model that can serve the request, or the fastest."""
import sqlite3
import time

import openai
import pytest

from tests.fakes.openai_upstream import start as start_openai_fake
from tests.gateway import Gateway

CONFIG = """
[providers.local]
type = "openai"
base_url = "{local}/v1"
models = ["llama-3.3-70b-versatile"]

[pricing."llama-3.3-70b-versatile"]
input = 0.001
output = 0.001

[pricing."gpt-4o-mini"]
input = 0.002
output = 0.002
"""
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
       "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    local = start_openai_fake()
    tmp = tmp_path_factory.mktemp("auto")
    (tmp / "gateway.toml").write_text(CONFIG.format(local=local.url))
    gateway = Gateway({"GATEWAY_CONFIG": str(tmp / "gateway.toml"), "OPENAI_API_KEY": "sk-auto-0123456789",
                       "OPENAI_BASE_URL": openai_fake.url + "/v1"}).start(tmp)
    yield gateway
    gateway.stop()
    local.__exit__(None, None, None)


def auto(gw, messages, **kw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages, **kw)
    return raw.headers["x-gateway-provider"], raw.headers["x-gateway-model"]


def text(size=10):
    return [{"role": "user", "content": "word " * size}]


def test_cheapest_model_that_fits(gw):
    assert auto(gw, text()) == ("local", "llama-3.3-70b-versatile")
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": PNG}}]}]
    assert auto(gw, image) == ("openai", "gpt-4o-mini")  # llama has no vision
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert auto(gw, text(), tools=tools) == ("local", "llama-3.3-70b-versatile")
    # ~150k tokens: past llama's 131k and gpt-4o-mini's 128k windows
    assert auto(gw, text(120_000)) == ("openai", "gpt-4.1-nano")
    assert auto(gw, text(), max_tokens=200_000) == ("openai", "gpt-4.1-nano")


def test_fastest_uses_measured_latency(gw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o", messages=text())
    time.sleep(0.3)
    provider, model = auto(gw, text(), extra_headers={"x-gateway-route": "fastest"})
    conn = sqlite3.connect(gw.db_path)
    measured = {(p, m.split("/", 1)[-1]) for p, m in
                conn.execute("SELECT provider, model_requested FROM completions WHERE status = 200")}
    conn.close()
    assert (provider, model) in measured | {("local", "llama-3.3-70b-versatile")}


def test_auto_is_logged_with_its_choice(gw):
    auto(gw, text(3))
    time.sleep(0.3)
    conn = sqlite3.connect(gw.db_path)
    row = conn.execute("SELECT model_requested, provider, model_answered FROM completions "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    assert row[0] == "auto" and row[1] == "local"


def test_nothing_fits_and_bad_hints_are_400(gw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=text(), max_tokens=5_000_000)
    assert info.value.body["code"] == "no_model_fits"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=text(),
                                       extra_headers={"x-gateway-route": "random"})
