"""POST /v1/compare against the real gateway: echo, the OpenAI fake, the Anthropic
fake, and a `vllm` fake that only answers once two requests are in flight at
the same moment (concurrency proven by rendezvous, not by timing)."""
import json
import threading
import uuid

import pytest
import requests

from tests.fakes import anthropic_upstream, openai_upstream
from tests.fakes.server import FakeServer, Reply
from tests.gateway import Gateway
from tests.log import poll_rows

USER = [{"role": "user", "content": "Compare me, please."}]
ERROR_KEYS = {"message", "type", "param", "code"}


class Rendezvous:
    """An OpenAI fake whose `together-*` models answer only when two such
    requests are being handled at once; alone, one gives up with a 503."""

    def __init__(self, parties: int = 2):
        self.barrier = threading.Barrier(parties, timeout=3)
        self.met = 0

    def handle(self, req):
        if req.json().get("model", "").startswith("together"):
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.barrier.reset()
                return Reply(503, {"Content-Type": "application/json"}, json.dumps(
                    {"error": {"message": "alone: no other request was in flight",
                               "type": "server_error", "param": None, "code": None}}).encode())
            self.met += 1
        return openai_upstream.handle(req)


@pytest.fixture(scope="module")
def rendezvous():
    fake = Rendezvous()
    server = FakeServer(fake.handle).__enter__()
    fake.server = server
    yield fake
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def anthropic_fake():
    server = anthropic_upstream.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(openai_fake, anthropic_fake, rendezvous, tmp_path_factory):
    env = {"OPENAI_API_KEY": "sk-compare-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1",
           **anthropic_upstream.gateway_env(anthropic_fake),
           "VLLM_BASE_URL": rendezvous.server.url + "/v1", "UPSTREAM_TIMEOUT": "10"}
    gateway = Gateway(env).start(tmp_path_factory.mktemp("compare"))
    yield gateway
    gateway.stop()


def compare(gw, body, request_id=None, **kwargs):
    headers = {"X-Request-Id": request_id} if request_id else {}
    return requests.post(gw.url + "/v1/compare", json=body, headers=headers, timeout=30, **kwargs)


def events(response) -> list:
    """The SSE payloads, decoded (`[DONE]` kept as the string)."""
    out = []
    for block in response.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content(chunks) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])


def test_compare_across_providers_in_request_order(gw, openai_fake, anthropic_fake):
    models = ["echo", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"]
    response = compare(gw, {"models": models, "messages": USER, "max_tokens": 50,
                            "system_prompt": "Be brief."})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["model"] for r in results] == models
    assert [r["provider"] for r in results] == ["echo", "openai", "anthropic"]
    for result in results:
        completion = result["completion"]
        assert completion["object"] == "chat.completion"
        assert "error" not in result
        assert result["usage"] == completion["usage"] and result["usage"]["prompt_tokens"] > 0
        assert result["latency_ms"] > 0 and result["ttft_ms"] is not None
    assert results[0]["completion"]["choices"][0]["message"]["content"] == USER[0]["content"]
    # priced by the model that answered, as /v1/chat/completions and the log price it (the
    # Anthropic capture answers as claude-sonnet-4-6, which the price table does not list)
    assert results[0]["cost_usd"] == 0.0 and results[1]["cost_usd"] > 0
    assert "cost_usd" in results[2]
    # system_prompt: a system message first, as each provider speaks it
    assert anthropic_fake.last.json()["system"] == "Be brief."
    sent = next(r.json() for r in reversed(openai_fake.requests)
                if r.json().get("messages", [{}])[-1].get("content") == USER[0]["content"])
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 50


def test_system_prompt_does_not_replace_the_clients_own(gw, openai_fake):
    marker = uuid.uuid4().hex
    messages = [{"role": "system", "content": "Mine."}, {"role": "user", "content": marker}]
    response = compare(gw, {"models": ["echo", "openai/gpt-4o-mini"], "messages": messages,
                            "system_prompt": "Not this."})
    assert response.status_code == 200, response.text
    sent = next(r.json() for r in openai_fake.requests if marker.encode() in r.body)
    assert sent["messages"] == messages


def test_one_failure_does_not_fail_the_rest(gw):
    models = ["echo", "openai/error-500", {"model": "gpt-4o-mini", "provider": "nope"},
              "openai/gpt-4o-mini"]
    response = compare(gw, {"models": models, "messages": USER})
    assert response.status_code == 200, response.text
    ok, upstream, unknown, other = response.json()["results"]
    assert ok["completion"]["choices"][0]["message"]["content"] == USER[0]["content"]
    assert other["completion"]["object"] == "chat.completion"
    assert set(upstream["error"]) == ERROR_KEYS and "completion" not in upstream
    assert upstream["error"]["type"] == "server_error"
    assert upstream["error"]["code"] == "upstream_error" and upstream["provider"] == "openai"
    assert upstream["usage"] is None and upstream["cost_usd"] is None
    assert unknown["model"] == "gpt-4o-mini" and unknown["provider"] is None
    assert unknown["error"]["code"] == "model_not_found" and unknown["error"]["param"] == "provider"
    assert "nope" in unknown["error"]["message"]


def test_models_are_called_at_once(gw, rendezvous):
    before = rendezvous.met
    response = compare(gw, {"models": ["vllm/together-a", "vllm/together-b"], "messages": USER})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    # each fake request waited for the other one to be in flight before answering
    assert [r.get("error") for r in results] == [None, None]
    assert all(r["completion"]["object"] == "chat.completion" for r in results)
    assert rendezvous.met - before == 2


def test_streaming_compare_tags_every_chunk(gw):
    models = ["echo", "openai/gpt-4o-mini", "openai/error-500"]
    response = compare(gw, {"models": models, "messages": USER, "stream": True}, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    got = events(response)
    assert got[-1] == "[DONE]" and list(got[-2]) == ["summary"]
    tagged = got[:-2]
    chunks = {i: [e["chunk"] for e in tagged if e.get("model_index") == i and "chunk" in e]
              for i in range(3)}
    assert all(e["model"] == models[e["model_index"]] for e in tagged)
    assert content(chunks[0]) == USER[0]["content"]
    assert content(chunks[1]) and all(c["object"] == "chat.completion.chunk" for c in chunks[1])
    assert chunks[2] == []
    errors = [e for e in tagged if "error" in e]
    assert len(errors) == 1 and errors[0]["model_index"] == 2
    assert set(errors[0]["error"]) == ERROR_KEYS and errors[0]["error"]["type"] == "server_error"
    # usage was not asked for: no usage chunk for the client, but the summary has it
    assert not any(c.get("usage") for c in chunks[0] + chunks[1])
    summary = got[-2]["summary"]["results"]
    assert [r["model"] for r in summary] == models
    assert all("completion" not in r for r in summary)
    assert summary[0]["usage"]["prompt_tokens"] > 0 and summary[1]["usage"]["prompt_tokens"] > 0
    assert summary[1]["cost_usd"] > 0 and summary[1]["ttft_ms"] <= summary[1]["latency_ms"]
    assert summary[2]["error"]["code"] == "upstream_error" and summary[2]["usage"] is None


def test_streaming_compare_with_include_usage(gw):
    response = compare(gw, {"models": ["echo", "openai/gpt-4o-mini"], "messages": USER,
                            "stream": True, "stream_options": {"include_usage": True}})
    got = events(response)
    for index in (0, 1):
        chunks = [e["chunk"] for e in got[:-2] if e["model_index"] == index]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_streams_run_at_once(gw, rendezvous):
    before = rendezvous.met
    response = compare(gw, {"models": ["vllm/together-a", "vllm/together-b"], "messages": USER,
                            "stream": True})
    got = events(response)
    assert not [e for e in got[:-2] if "error" in e]
    assert {e["model_index"] for e in got[:-2]} == {0, 1}
    assert rendezvous.met - before == 2


@pytest.mark.parametrize("body, param", [
    ({"models": ["echo"], "messages": USER}, "models"),
    ({"models": "echo", "messages": USER}, "models"),
    ({"messages": USER}, "models"),
    ({"models": ["echo", 5], "messages": USER}, "models[1]"),
    ({"models": ["echo", {"model": "echo", "temperature": 1}], "messages": USER}, "models[1]"),
    ({"models": ["echo", "echo"]}, "messages"),
    ({"models": ["echo", "echo"], "messages": USER, "temperature": 5}, "temperature"),
    ({"models": ["echo", "echo"], "messages": [{"role": "user"}]}, "messages[0]"),
    ({"models": ["echo", "echo"], "messages": USER, "system_prompt": 3}, "system_prompt"),
    ({"models": ["echo", "echo"], "messages": USER, "stream": "yes"}, "stream"),
    ({"models": ["echo", "echo"], "model": "echo", "messages": USER}, "model"),
])
def test_bad_requests_are_400(gw, body, param):
    response = compare(gw, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_invalid_json_is_400(gw):
    response = requests.post(gw.url + "/v1/compare", data=b"{nope", timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_each_model_call_is_a_log_row(gw):
    client_id = "cmp-" + uuid.uuid4().hex
    models = ["echo", "openai/gpt-4o-mini", "openai/error-500"]
    response = compare(gw, {"models": models, "messages": USER}, client_id)
    results, request_id = response.json()["results"], response.headers["x-request-id"]
    everything = poll_rows(gw, "SELECT * FROM completions WHERE client_request_id = ? "
                           "ORDER BY request_id", (client_id,), count=4)
    # the 500 was retried once (like chat): that attempt has its own row, `<id>-2.1`
    assert [r["request_id"] for r in everything if "." in r["request_id"]] == [f"{request_id}-2.1"]
    rows = [r for r in everything if "." not in r["request_id"]]
    assert [r["request_id"] for r in rows] == [f"{request_id}-{i}" for i in range(3)]
    assert [r["provider"] for r in rows] == ["echo", "openai", "openai"]
    assert [r["model_requested"] for r in rows] == models
    assert [r["status"] for r in rows] == [200, 200, 500]
    for row, result in zip(rows[:2], results):
        assert row["prompt_tokens"] == result["usage"]["prompt_tokens"]
        assert row["cost_usd"] == pytest.approx(result["cost_usd"])
        assert row["streamed"] == 0
    assert rows[2]["error_type"] == "upstream_error"


def test_streamed_model_calls_are_log_rows(gw):
    client_id = "cmps-" + uuid.uuid4().hex
    response = compare(gw, {"models": ["echo", "openai/gpt-4o-mini"], "messages": USER,
                            "stream": True}, client_id)
    request_id = response.headers["x-request-id"]
    summary = events(response)[-2]["summary"]["results"]
    rows = poll_rows(gw, "SELECT * FROM completions WHERE request_id LIKE ? ORDER BY request_id",
                     (request_id + "%",), count=2)
    assert [r["streamed"] for r in rows] == [1, 1]
    assert [r["prompt_tokens"] for r in rows] == [s["usage"]["prompt_tokens"] for s in summary]
    assert rows[1]["tokens_estimated"] == 0 and rows[1]["cost_usd"] > 0
