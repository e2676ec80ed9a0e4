"""Azure OpenAI through the openai SDK: deployment URLs, api-key, filter fields removed."""
import json

import openai
import pytest
import requests

from tests.fakes import azure_upstream
from tests.fakes.openai_upstream import fixture, sse_blocks
from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def azure_fake():
    server = azure_upstream.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(azure_fake, tmp_path_factory):
    gateway = Gateway({**azure_upstream.gateway_env(azure_fake), "PROVIDER_NAME": "azure"})
    gateway.start(tmp_path_factory.mktemp("azure"))
    yield gateway
    gateway.stop()


def test_non_streaming_uses_the_deployment_and_drops_filter_fields(client, gw, azure_fake):
    raw = requests.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI},
                        timeout=10)
    assert azure_fake.last.path == "/openai/deployments/mini-prod/chat/completions?api-version=2024-10-21"
    assert azure_fake.last.headers["api-key"] == "azure-test-key-123456"
    assert "authorization" not in azure_fake.last.headers
    assert raw.content == fixture("chat_nonstream.json")  # OpenAI's own bytes, key order and all
    reply = client.chat.completions.create(model="gpt-4o", messages=HI)
    assert azure_fake.last.path.startswith("/openai/deployments/gpt-4o/")
    assert reply.choices[0].message.content


def test_stream_has_openai_shape(client, gw):
    body = requests.post(gw.url + "/v1/chat/completions", timeout=10,
                         json={"model": "gpt-4o-mini", "messages": HI, "stream": True}).content
    assert b"prompt_filter_results" not in body and b"content_filter" not in body
    # OpenAI's own bytes: the capture, less the usage the gateway asked for its log
    sent = sse_blocks(fixture("chat_stream_include_usage.sse"))
    assert sse_blocks(body) == [b.replace(b',"usage":null', b"") for b in sent if b'"choices":[]' not in b]
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].id.startswith("chatcmpl-") and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.total_tokens == 30


def test_undeployed_model_is_404_listing_deployments(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-5", messages=HI)
    assert "gpt-4o-mini" in info.value.body["message"]
    assert info.value.body["code"] == "model_not_found"


def test_azure_in_models_and_providers(gw):
    models = requests.get(gw.url + "/v1/models", timeout=5).json()["data"]
    assert {"gpt-4o-mini", "gpt-4o"} <= {m["id"] for m in models if m["provider"] == "azure"}
    providers = {p["name"]: p for p in requests.get(gw.url + "/v1/providers", timeout=5).json()["providers"]}
    assert providers["azure"]["available"] is True
    assert json.dumps(providers).find("azure-test-key") == -1
