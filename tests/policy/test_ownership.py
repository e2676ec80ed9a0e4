"""A virtual key sees only its own sessions, usage and answers; the master key sees all."""
import time

import openai
import pytest
import requests

from tests.gateway import Gateway

MASTER = "sk-master-ownership-0123456789"
HI = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER}).start(tmp_path_factory.mktemp("ownership"))
    yield gateway
    gateway.stop()


def call(gw, key, method, path, **kw):
    return requests.request(method, gw.url + "/v1" + path, timeout=10,
                            headers={"Authorization": f"Bearer {key}"}, **kw)


@pytest.fixture(scope="module")
def keys(gw):
    made = [call(gw, MASTER, "POST", "/keys", json={"name": name}).json()["key"] for name in "ab"]
    return made


def test_sessions_usage_and_feedback_are_scoped_to_the_key(gw, keys):
    a, b = keys
    reply = openai.OpenAI(base_url=gw.url + "/v1", api_key=a, max_retries=0).chat.completions.create(
        model="echo", messages=HI, extra_headers={"X-Session-Id": "a-private"})
    created_by_b = call(gw, b, "POST", "/sessions", json={"title": "b's"}).json()["id"]
    deadline = time.time() + 5
    while call(gw, MASTER, "GET", "/sessions/a-private").status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)

    assert {s["id"] for s in call(gw, a, "GET", "/sessions").json()["data"]} == {"a-private"}
    assert {s["id"] for s in call(gw, b, "GET", "/sessions").json()["data"]} == {created_by_b}
    assert {"a-private", created_by_b} <= {s["id"] for s in call(gw, MASTER, "GET", "/sessions").json()["data"]}
    for method in ("GET", "DELETE"):
        assert call(gw, b, method, "/sessions/a-private").status_code == 404
    assert call(gw, b, "PATCH", "/sessions/a-private", json={"title": "mine now"}).status_code == 404
    assert call(gw, b, "POST", "/sessions/a-private/messages", json={"content": "x"}).status_code == 404
    assert call(gw, b, "POST", "/feedback", json={"completion_id": reply.id, "rating": 1}).status_code == 404
    assert call(gw, a, "POST", "/feedback", json={"completion_id": reply.id, "rating": 5}).status_code == 201
    assert call(gw, b, "GET", "/usage?group_by=key").json()["totals"]["requests"] == 0
    assert call(gw, a, "GET", "/usage?group_by=key").json()["totals"]["requests"] == 1
    # b cannot write into a's session through a chat call either: it is not found
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=gw.url + "/v1", api_key=b, max_retries=0).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "injected"}],
            extra_headers={"X-Session-Id": "a-private"})
    time.sleep(0.3)
    messages = call(gw, a, "GET", "/sessions/a-private").json()["messages"]
    assert all("injected" not in str(m["content"]) for m in messages)
