"""An OpenAI-compatible upstream's answer is checked, not trusted: a 200 that is not
JSON, a stream that stops before its end, a body that echoes one of the gateway's
secrets; and its own HTTP errors reach the client with their own status."""
import json

import openai
import pytest
import requests

from tests.fakes.openai_upstream import fixture, sse_blocks
from tests.fakes.server import FakeServer, Reply
from tests.log import poll_rows

PROVIDER_KEY = "sk-upstream-provider-key-0123456789"
MASTER_KEY = "sk-gateway-master-key-abcdefghij"
SSE = {"Content-Type": "text/event-stream; charset=utf-8"}
JSON = {"Content-Type": "application/json"}
HI = [{"role": "user", "content": "hi"}]


def chunk(delta: dict, finish=None) -> bytes:
    return b"data: " + json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": f"upstream_{status}"}}).encode()


ANSWERS = {
    "not-json": lambda: Reply(200, JSON, b"<html>502 Bad Gateway</html>"),
    "json-list": lambda: Reply(200, JSON, b"[1, 2]"),
    "cut": lambda: Reply(200, SSE, iter([chunk({"role": "assistant", "content": ""}),
                                         chunk({"content": "half an ans"})])),
    "ends-without-done": lambda: Reply(200, SSE, iter([chunk({"content": "whole"}),
                                                       chunk({}, finish="stop")])),
    "echoes-secrets": lambda: Reply(200, JSON, json.dumps({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": f"your keys: {PROVIDER_KEY} and {MASTER_KEY}"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}).encode()),
    "streams-secrets": lambda: Reply(200, SSE, iter([
        chunk({"role": "assistant", "content": f"key {PROVIDER_KEY}"}),
        b"data: " + json.dumps({"error": {"message": f"bad key {MASTER_KEY}",
                                          "type": "server_error"}}).encode() + b"\n\n"])),
    "whole": lambda: Reply(200, SSE, iter(sse_blocks(fixture("chat_stream_no_usage.sse")))),
}


def answer(req):
    model = req.json()["model"]
    if model.startswith("status-"):
        status = int(model.removeprefix("status-"))
        return Reply(status, JSON, error_body(status, f"upstream says {status}, key {PROVIDER_KEY}"))
    return ANSWERS[model]()


@pytest.fixture(scope="module")
def upstream():
    with FakeServer(answer) as server:
        yield server


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    from tests.gateway import Gateway
    config = tmp_path_factory.mktemp("config") / "gateway.toml"
    config.write_text('[providers.openai]\nretries = 0\n')
    gateway = Gateway({"OPENAI_API_KEY": PROVIDER_KEY, "OPENAI_BASE_URL": upstream.url + "/v1",
                       "PROVIDER_NAME": "openai", "GATEWAY_MASTER_KEY": MASTER_KEY,
                       "GATEWAY_CONFIG": str(config)})
    gateway.start(tmp_path_factory.mktemp("gw"))
    yield gateway
    gateway.stop()


def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def row(gw, request_id: str) -> dict:
    [found] = poll_rows(gw, "SELECT * FROM completions WHERE request_id = ?", (request_id,))
    return found


def everything_stored(gw) -> bytes:
    return b"".join(p.read_bytes() for p in gw.db_path.parent.rglob("*") if p.is_file())


@pytest.mark.parametrize("model", ["not-json", "json-list"])
def test_a_200_that_is_not_a_json_object_is_502(gw, model):
    r = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": model, "messages": HI}, headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_error"
    assert row(gw, r.headers["x-request-id"])["status"] == 502


def test_a_stream_cut_before_its_end_ends_with_an_error_event(gw):
    r = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "cut", "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"})
    events = [e for e in r.content.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    error = json.loads(events[-2].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_truncated"
    assert row(gw, r.headers["x-request-id"])["error_type"] == "upstream_truncated"
    with pytest.raises(openai.APIError):
        list(client(gw).chat.completions.create(model="cut", messages=HI, stream=True))


def test_a_stream_with_a_finish_reason_but_no_done_is_whole(gw):
    chunks = list(client(gw).chat.completions.create(model="ends-without-done", messages=HI,
                                                     stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_complete_stream_is_relayed_unchanged(gw):
    r = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "whole", "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert r.content == fixture("chat_stream_no_usage.sse")


def test_secrets_echoed_in_a_200_body_are_scrubbed(gw):
    raw = client(gw).chat.completions.with_raw_response.create(model="echoes-secrets",
                                                               messages=HI)
    content = raw.parse().choices[0].message.content
    assert PROVIDER_KEY not in content and MASTER_KEY not in content
    assert content == "your keys: *** and ***"
    row(gw, raw.headers["x-request-id"])
    stored = everything_stored(gw)
    assert PROVIDER_KEY.encode() not in stored and MASTER_KEY.encode() not in stored


def test_secrets_echoed_mid_stream_are_scrubbed(gw):
    r = requests.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "streams-secrets", "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert b"key ***" in r.content and b"bad key ***" in r.content
    assert PROVIDER_KEY.encode() not in r.content and MASTER_KEY.encode() not in r.content
    row(gw, r.headers["x-request-id"])
    stored = everything_stored(gw)
    assert PROVIDER_KEY.encode() not in stored and MASTER_KEY.encode() not in stored


def test_a_virtual_keys_own_secret_is_scrubbed_too(gw, upstream):
    created = requests.post(gw.url + "/v1/keys", timeout=10, json={"name": "echoed"},
                            headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
    secret = created["key"]
    original = ANSWERS["echoes-secrets"]
    ANSWERS["echoes-virtual"] = lambda: Reply(200, JSON, original().body.replace(
        PROVIDER_KEY.encode(), secret.encode()))
    vclient = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    content = vclient.chat.completions.create(model="echoes-virtual",
                                              messages=HI).choices[0].message.content
    assert secret not in content and content == "your keys: *** and ***"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_upstream_server_errors_keep_their_status_and_body(gw, status):
    with pytest.raises(openai.APIStatusError) as info:
        client(gw).chat.completions.create(model=f"status-{status}", messages=HI)
    assert info.value.status_code == status
    error = info.value.body
    assert error["code"] == f"upstream_{status}" and error["type"] == "server_error"
    assert error["message"] == f"upstream says {status}, key ***"


def test_an_unreachable_upstream_is_502(start_gateway):
    from tests.gateway import free_port
    gw = start_gateway({"OPENAI_API_KEY": PROVIDER_KEY, "PROVIDER_NAME": "openai",
                        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(openai.APIStatusError) as info:
        openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="m", messages=HI)
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_error"
