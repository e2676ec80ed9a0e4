"""Bad input gets a clear OpenAI-shaped 4xx; routing failures are 404 model_not_found."""
import json
import time

import openai
import pytest
import requests

HI = [{"role": "user", "content": "hi"}]


def post(gateway, data, headers=None, path="/v1/chat/completions"):
    return requests.post(gateway.url + path, data=data, timeout=10,
                         headers={"content-type": "application/json", **(headers or {})})


def error_of(response):
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize("data, param, code", [
    (b"{not json", None, "invalid_json"),
    (b"", None, "invalid_json"),
    (b"[1, 2]", None, "invalid_json"),
    (json.dumps({"messages": HI}), "model", "missing_required_parameter"),
    (json.dumps({"model": "echo"}), "messages", "missing_required_parameter"),
    (json.dumps({"model": "echo", "messages": []}), "messages", "invalid_value"),
    (json.dumps({"model": "echo", "messages": HI, "temperature": "hot"}), "temperature", "invalid_value"),
    (json.dumps({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}), "messages[0].role",
     "invalid_value"),
    (json.dumps({"model": "echo", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
     "messages[0].content[0].text", "missing_required_parameter"),
    (json.dumps({"model": "echo", "messages": HI, "n": 0}), "n", "invalid_value"),
    (json.dumps({"model": "echo", "messages": HI, "stream": "yes please"}), "stream", "invalid_value"),
])
def test_bad_requests_are_400_with_param(gateway, data, param, code):
    r = post(gateway, data)
    assert r.status_code == 400
    error = error_of(r)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code
    assert "Traceback" not in error["message"]


def test_the_sdk_raises_bad_request(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=[])
    assert info.value.body["param"] == "messages"


def test_content_parts_and_all_roles_are_accepted(gateway):
    messages = [{"role": "system", "content": "be brief"}, {"role": "developer", "content": "really"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "user", "content": [{"type": "text", "text": "hello"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    r = post(gateway, json.dumps({"model": "echo", "messages": messages, "max_completion_tokens": 5,
                                  "some_vendor_field": {"x": 1}}))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello"


def test_unknown_provider_is_404_listing_the_configured_ones(gateway):
    r = post(gateway, json.dumps({"model": "x", "messages": HI}), {"X-Provider": "nope"})
    assert r.status_code == 404
    error = error_of(r)
    assert error["code"] == "model_not_found" and "echo" in error["message"] and "openai" in error["message"]


def test_unconfigured_provider_names_the_missing_variable(gateway):
    r = post(gateway, json.dumps({"model": "x", "messages": HI, "provider": "groq"}))
    assert r.status_code == 404
    assert "GROQ_API_KEY" in error_of(r)["message"]


def test_unknown_route_and_wrong_method(gateway):
    r = requests.get(gateway.url + "/v1/nothing-here", timeout=5)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = requests.get(gateway.url + "/v1/chat/completions", timeout=5)
    assert r.status_code == 405 and error_of(r)["type"] == "invalid_request_error"
    assert r.headers["allow"] == "POST"
    r = requests.post(gateway.url + "/v1/models", timeout=5)
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]


def chunked(payload: bytes, size: int = 100):
    """A body without Content-Length: sent with Transfer-Encoding: chunked."""
    return (payload[i:i + size] for i in range(0, len(payload), size))


def test_chunked_request_body_is_read_whole(gateway):
    text = "word " * 300
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": text}]}).encode()
    r = post(gateway, chunked(body))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == text


def test_oversized_body_is_413(start_gateway):
    gw = start_gateway({"MAX_REQUEST_BYTES": "2000"})
    big = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x" * 5000}]})
    r = post(gw, big)
    assert r.status_code == 413
    assert error_of(r)["code"] == "request_too_large"
    assert "2000 bytes" in error_of(r)["message"]
    r = post(gw, chunked(big.encode()))  # no Content-Length: refused once past the limit
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"
    assert post(gw, json.dumps({"model": "echo", "messages": HI})).status_code == 200


def test_request_ids(gateway):
    r = post(gateway, json.dumps({"model": "echo", "messages": HI}), {"X-Request-Id": "client-chosen-42"})
    assert r.headers["x-request-id"].startswith("req_")  # the gateway's own, always
    assert r.headers["x-client-request-id"] == "client-chosen-42"
    r = post(gateway, json.dumps({"model": "echo", "messages": HI}), {"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"].startswith("req_") and "x-client-request-id" not in r.headers


def test_full_path_clients_may_omit_v1(gateway):
    r = post(gateway, json.dumps({"model": "echo", "messages": HI}), path="/chat/completions")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"


def test_client_disconnect_closes_the_upstream(gateway, openai_fake):
    openai_fake.disconnects.clear()
    r = requests.post(gateway.url + "/v1/chat/completions", stream=True, timeout=10,
                      json={"model": "openai/slow-stream", "messages": HI, "stream": True})
    lines = r.iter_lines()
    assert next(lines).startswith(b"data: ")
    r.close()  # the client goes away mid-stream
    assert openai_fake.disconnects.wait(5), "the upstream never saw the connection close"


def test_secrets_never_reach_the_log(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="openai/error-500", messages=HI)
    time.sleep(0.2)
    logs = gateway.logs()
    assert "sk-test-gateway-key" not in logs and "sk-fakefake" not in logs
    assert '"status":500' in logs
