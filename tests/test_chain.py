"""POST /v1/chain against the real gateway (echo by default, the OpenAI fake as
`openai`). Echo answers with the last user message, so what a step received
is visible in its answer."""
import json
import uuid

import pytest
import requests

from tests.fakes.openai_upstream import fixture
from tests.log import poll_rows, rows

ERROR_KEYS = {"message", "type", "param", "code"}
FAKE_ANSWER = json.loads(fixture("chat_nonstream.json"))["choices"][0]["message"]["content"]


def chain(gateway, body, request_id=None, **kwargs):
    headers = {"X-Request-Id": request_id} if request_id else {}
    return requests.post(gateway.url + "/v1/chain", json=body, headers=headers, timeout=30,
                         **kwargs)


def followed(text: str, answer: str) -> str:
    """How step N's last user message reads: the input, then step N-1's answer."""
    return f"{text}\n\n<previous_step_answer>\n{answer}\n</previous_step_answer>"


def user(text):
    return [{"role": "user", "content": text}]


def sent_to_fake(openai_fake, marker: str) -> dict:
    return next(r.json() for r in reversed(openai_fake.requests) if marker.encode() in r.body)


def payloads(response) -> list:
    return [b[len("data: "):] for b in response.text.split("\n\n") if b.startswith("data: ")]


def test_echo_then_echo_sees_the_first_answer(gateway):
    response = chain(gateway, {"steps": [{"model": "echo"},
                                         {"model": "echo", "system_prompt": "Refine it."}],
                               "messages": user("first draft")})
    assert response.status_code == 200, response.text
    body = response.json()
    first, second = body["steps"]
    assert first["output"] == "first draft"
    assert second["output"] == followed("first draft", "first draft")
    assert body["final"]["object"] == "chat.completion"
    assert body["final"]["choices"][0]["message"]["content"] == second["output"]
    for step in body["steps"]:
        assert set(step) == {"model", "provider", "output", "usage", "cost_usd", "latency_ms"}
        assert step["model"] == "echo" and step["provider"] == "echo"
        assert step["usage"]["prompt_tokens"] > 0 and step["latency_ms"] > 0
        assert step["cost_usd"] is not None
    assert second["usage"] == body["final"]["usage"]


def test_openai_step_receives_input_plus_previous_answer(gateway, openai_fake):
    marker = uuid.uuid4().hex
    messages = [{"role": "system", "content": "The chain's own system prompt."},
                {"role": "user", "content": f"Summarise {marker}"}]
    second = {"model": "openai/gpt-4o-mini", "system_prompt": "You refine drafts.",
              "temperature": 0.3}
    response = chain(gateway, {"messages": messages, "steps": [{"model": "echo"}, second]})
    assert response.status_code == 200, response.text
    sent = sent_to_fake(openai_fake, marker)
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.3
    assert "stream" not in sent
    # the step's system prompt replaces the input's; the answer follows the input
    assert sent["messages"] == [
        {"role": "system", "content": "You refine drafts."},
        {"role": "user", "content": followed(f"Summarise {marker}", f"Summarise {marker}")}]
    body = response.json()
    assert body["final"] == json.loads(fixture("chat_nonstream.json"))
    assert body["steps"][1]["output"] == FAKE_ANSWER and body["steps"][1]["provider"] == "openai"
    assert body["steps"][1]["cost_usd"] > 0


def test_step_without_prompt_keeps_the_input_and_shared_fields(gateway, openai_fake):
    marker = uuid.uuid4().hex
    messages = [{"role": "system", "content": "Kept."}, {"role": "user", "content": marker}]
    response = chain(gateway, {"messages": messages, "max_tokens": 40,
                               "steps": [{"model": "openai/gpt-4o-mini"}, {"model": "echo"}]})
    assert response.status_code == 200, response.text
    sent = sent_to_fake(openai_fake, marker)
    assert sent["messages"] == messages and sent["max_tokens"] == 40
    assert response.json()["steps"][1]["output"] == followed(marker, FAKE_ANSWER)


def test_list_content_gets_the_answer_as_a_new_part(gateway):
    content = [{"type": "text", "text": "parts"}]
    response = chain(gateway, {"messages": [{"role": "user", "content": content}],
                               "steps": [{"model": "echo"}, {"model": "echo"}]})
    assert response.json()["steps"][1]["output"] == followed("parts", "parts")


def test_failing_step_stops_the_chain(gateway):
    client_id = "chf-" + uuid.uuid4().hex
    response = chain(gateway, {"messages": user("go"), "steps": [
        {"model": "echo"}, {"model": "openai/error-500"}, {"model": "echo"}]}, client_id)
    request_id = response.headers["x-request-id"]  # the gateway's: it keys the rows
    assert response.headers["x-client-request-id"] == client_id
    assert response.status_code == 500
    body = response.json()
    assert set(body["error"]) == ERROR_KEYS and body["error"]["code"] == "upstream_error"
    assert body["step"] == 1
    assert [s["output"] for s in body["steps"]] == ["go"]
    found = poll_rows(gateway, "SELECT request_id, status FROM completions WHERE request_id LIKE ? "
                               "ORDER BY request_id", (request_id + "%",), count=3)
    # step 1's 500 was retried once, as chat retries: that attempt is `<id>-1.1`
    assert [(r["request_id"], r["status"]) for r in found] == [
        (f"{request_id}-0", 200), (f"{request_id}-1", 500), (f"{request_id}-1.1", 500)]


def test_failing_first_step_keeps_its_status_and_headers(gateway):
    response = chain(gateway, {"messages": user("go"), "steps": [
        {"model": "gpt-4o-mini", "provider": "nope"}, {"model": "echo"}]})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["step"] == 0 and response.json()["steps"] == []
    limited = chain(gateway, {"messages": user("go"), "steps": [{"model": "openai/error-429"}]})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"


def test_streamed_chain_streams_the_last_step_like_chat(gateway, openai_fake):
    marker = uuid.uuid4().hex
    response = chain(gateway, {"messages": user(marker), "stream": True, "steps": [
        {"model": "echo"}, {"model": "openai/gpt-4o-mini"}]}, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    chat = requests.post(gateway.url + "/v1/chat/completions", timeout=30, json={
        "model": "openai/gpt-4o-mini", "messages": user("hello"), "stream": True})
    assert response.content == chat.content
    sent = sent_to_fake(openai_fake, marker)
    assert sent["stream"] is True and sent["messages"] == user(followed(marker, marker))


def test_streamed_chain_of_echo(gateway):
    response = chain(gateway, {"messages": user("stream me"), "stream": True,
                               "stream_options": {"include_usage": True},
                               "steps": [{"model": "echo"}, {"model": "echo"}]})
    data = payloads(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == followed("stream me", "stream me")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_streamed_chain_failing_before_its_first_chunk_is_an_http_error(gateway):
    response = chain(gateway, {"messages": user("go"), "stream": True, "steps": [
        {"model": "echo"}, {"model": "openai/error-429"}]})
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["type"] == "rate_limit_error" and body["step"] == 1
    assert [s["model"] for s in body["steps"]] == ["echo"]


def test_each_step_is_a_log_row(gateway):
    client_id = "chl-" + uuid.uuid4().hex
    response = chain(gateway, {"messages": user("log me"), "steps": [
        {"model": "echo"}, {"model": "openai/gpt-4o-mini"}]}, client_id)
    body, request_id = response.json(), response.headers["x-request-id"]
    found = poll_rows(gateway, "SELECT * FROM completions WHERE client_request_id = ? "
                               "ORDER BY request_id", (client_id,), count=2)
    assert [r["request_id"] for r in found] == [f"{request_id}-0", f"{request_id}-1"]
    assert [r["provider"] for r in found] == ["echo", "openai"]
    for row, step in zip(found, body["steps"]):
        assert row["prompt_tokens"] == step["usage"]["prompt_tokens"]
        assert row["cost_usd"] == pytest.approx(step["cost_usd"])
    assert not rows(gateway, "SELECT 1 FROM completions WHERE request_id = ?", (request_id,))


def test_streamed_last_step_is_a_log_row_with_usage(gateway):
    client_id = "chs-" + uuid.uuid4().hex
    request_id = chain(gateway, {"messages": user("log me"), "stream": True, "steps": [
        {"model": "echo"}, {"model": "openai/gpt-4o-mini"}]}, client_id).headers["x-request-id"]
    found = poll_rows(gateway, "SELECT * FROM completions WHERE request_id LIKE ? "
                               "ORDER BY request_id", (request_id + "%",), count=2)
    assert [r["streamed"] for r in found] == [0, 1]
    assert found[1]["prompt_tokens"] > 0 and found[1]["tokens_estimated"] == 0
    assert found[1]["cost_usd"] > 0 and found[1]["client_disconnected"] == 0


@pytest.mark.parametrize("body, param", [
    ({"messages": user("x")}, "steps"),
    ({"messages": user("x"), "steps": []}, "steps"),
    ({"messages": user("x"), "steps": ["echo"]}, "steps[0]"),
    ({"messages": user("x"), "steps": [{}]}, "steps[0].model"),
    ({"messages": user("x"), "steps": [{"model": ""}]}, "steps[0].model"),
    ({"messages": user("x"), "steps": [{"model": "echo"}, {"model": "echo", "temperature": 7}]},
     "steps[1].temperature"),
    ({"messages": user("x"), "steps": [{"model": "echo", "system_prompt": 5}]},
     "steps[0].system_prompt"),
    ({"messages": user("x"), "steps": [{"model": "echo", "messages": user("y")}]},
     "steps[0].messages"),
    ({"messages": user("x"), "temperature": 7, "steps": [{"model": "echo"}]}, "temperature"),
    ({"steps": [{"model": "echo"}]}, "messages"),
    ({"messages": user("x"), "stream": 1, "steps": [{"model": "echo"}]}, "stream"),
])
def test_bad_requests_are_400(gateway, body, param):
    response = chain(gateway, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "invalid_request_error"
    assert error["param"] == param
