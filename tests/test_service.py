"""Service endpoints and the config they report."""
import requests


def test_index_health_ready(gateway):
    index = requests.get(gateway.url + "/", timeout=5)
    assert index.json()["name"] == "switchboard" and index.json()["status"] == "ok"
    assert index.headers["x-request-id"].startswith("req_")
    assert requests.get(gateway.url + "/health", timeout=5).json() == {"status": "ok"}
    ready = requests.get(gateway.url + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["default_provider"] == "echo"


def test_not_ready_when_the_default_provider_is_unconfigured(start_gateway):
    gw = start_gateway({"PROVIDER_NAME": "groq"})
    ready = requests.get(gw.url + "/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"


def test_providers_shape(gateway):
    body = requests.get(gateway.url + "/v1/providers", timeout=5).json()
    assert body["default"] == "echo"
    by_name = {p["name"]: p for p in body["providers"]}
    assert by_name["echo"]["available"] and by_name["echo"]["default_model"] == "echo"
    assert by_name["openai"]["available"]  # configured by the session gateway
    assert by_name["groq"]["available"] is False and by_name["groq"]["missing"] == ["GROQ_API_KEY"]
    assert "sk-test" not in str(body)


def test_models_shape(gateway):
    body = requests.get(gateway.url + "/v1/models", timeout=5).json()
    assert body["object"] == "list"
    gpt4o = next(m for m in body["data"] if m["id"] == "gpt-4o")
    assert gpt4o["object"] == "model" and gpt4o["provider"] == "openai"
    assert gpt4o["context_length"] == 128000 and gpt4o["supports_vision"] and gpt4o["supports_tools"]
    assert all(m["provider"] != "groq" for m in body["data"])


def test_models_through_the_sdk(gateway):
    import openai
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x")
    ids = [m.id for m in client.models.list()]
    assert "echo" in ids and "gpt-4o-mini" in ids
