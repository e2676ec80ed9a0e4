"""Response headers built from client input: a model id is any Unicode string
upstream, but a header value is Latin-1 at most and CR/LF would split it."""
import json
from urllib.parse import quote

import openai
import pytest
import requests

from tests.log import poll_rows


def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)


def metric(gateway, name: str) -> float:
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize("model", ["模型", "gpt-4o-mini✓"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_unicode_model_id_is_served_and_named_percent_encoded(gateway, openai_fake, model,
                                                                 stream):
    calls = len(openai_fake.requests)
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="openai/" + model, stream=stream, messages=[{"role": "user", "content": "hi"}])
    assert raw.http_response.status_code == 200
    assert raw.headers["x-gateway-model"] == quote(model, safe="")
    body = raw.parse()
    if stream:
        assert [c for c in body]  # the whole stream arrives
    else:
        assert body.choices[0].message.content
    assert openai_fake.requests[calls].json()["model"] == model  # the upstream got it unchanged
    request_id = raw.headers["x-request-id"]
    [row] = poll_rows(gateway, "SELECT * FROM completions WHERE request_id = ?", (request_id,))
    assert row["status"] == 200
    assert row["model_requested"] == "openai/" + model
    assert row["prompt_tokens"] and row["completion_tokens"]  # the spend is recorded
    assert f'"request_id":"{request_id}"' in gateway.logs()  # and the access line written


def test_echo_answers_under_a_unicode_model_id(gateway):
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="echo/模型", messages=[{"role": "user", "content": "hi there"}])
    assert raw.http_response.status_code == 200
    assert raw.headers["x-gateway-model"] == quote("模型", safe="")


@pytest.mark.parametrize("model", ["gpt-4o\r\nX-Injected: 1", "gpt\n4o", "gpt\x00", "a\x7fb",
                                   "a\x85b"])
def test_control_characters_in_model_are_400_before_any_upstream_call(gateway, openai_fake,
                                                                       model):
    calls = len(openai_fake.requests)
    r = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                      data=json.dumps({"model": "openai/" + model,
                                       "messages": [{"role": "user", "content": "hi"}]}),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "model"
    assert "X-Injected" not in r.headers
    assert len(openai_fake.requests) == calls


def test_in_flight_returns_to_zero_after_unicode_models(gateway):
    for model in ("模型", "gpt-4o-mini✓"):
        sdk(gateway).chat.completions.create(model="openai/" + model,
                                             messages=[{"role": "user", "content": "hi"}])
    poll_rows(gateway, "SELECT 1 FROM completions WHERE model_requested = ?",
              ("openai/gpt-4o-mini✓",))
    assert metric(gateway, "switchboard_requests_in_flight") == 0
