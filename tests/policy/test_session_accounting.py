"""Deleting a session removes its conversation, never the accounting budgets,
limits and usage read; a key's chat call cannot name another key's session."""
import time

import openai
import pytest
import requests

from tests.log import poll_rows, rows

MASTER = "sk-master-sessions-0123456789"
HI = [{"role": "user", "content": "hi there"}]
PRIVATE = [{"role": "user", "content": "a secret recipe for soup"}]


def call(gw, key, method, path, headers=None, **kw):
    return requests.request(method, gw.url + "/v1" + path, timeout=10,
                            headers={"Authorization": f"Bearer {key}", **(headers or {})}, **kw)


def chat(gw, key, session: str | None = None, messages=HI):
    headers = {"X-Session-Id": session} if session else {}
    return call(gw, key, "POST", "/chat/completions", headers,
                json={"model": "openai/gpt-4o-mini", "messages": messages})


@pytest.fixture
def gw(start_gateway, openai_fake):
    return start_gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_API_KEY": "sk-test-0123456789",
                          "OPENAI_BASE_URL": openai_fake.url + "/v1"})


def new_key(gw, **fields) -> dict:
    return call(gw, MASTER, "POST", "/keys", json={"name": "k", **fields}).json()


def test_deleting_a_session_does_not_give_back_its_spend(gw):
    cost = float(chat(gw, MASTER).headers["x-gateway-cost-usd"])
    key = new_key(gw, monthly_budget_usd=2.5 * cost)
    statuses = []
    while 429 not in statuses and len(statuses) < 6:
        statuses.append(chat(gw, key["key"], "soup", PRIVATE).status_code)
        poll_rows(gw, "SELECT 1 FROM completions WHERE api_key_id = ? AND status = 200",
                  (key["id"],), count=statuses.count(200))
        time.sleep(1.1)  # a worker keeps a key's spend for one second
    assert statuses == [200, 200, 200, 429]
    usage_before = call(gw, key["key"], "GET", "/usage").json()["totals"]
    assert call(gw, key["key"], "DELETE", "/sessions/soup").status_code in (200, 204)
    time.sleep(1.1)
    assert chat(gw, key["key"], "soup").status_code == 429  # the spend is still counted
    assert chat(gw, key["key"]).status_code == 429
    usage_after = call(gw, key["key"], "GET", "/usage").json()["totals"]
    assert usage_after["cost_usd"] == pytest.approx(usage_before["cost_usd"])
    assert usage_after["requests"] >= usage_before["requests"]
    # the conversation itself is gone: the session, its messages and their bodies
    assert call(gw, key["key"], "GET", "/sessions/soup").status_code == 404
    assert not rows(gw, "SELECT 1 FROM completions WHERE session_id = 'soup'")
    assert not rows(gw, "SELECT 1 FROM contents WHERE body LIKE '%secret recipe%'")
    assert len(rows(gw, "SELECT 1 FROM completions WHERE api_key_id = ? AND status = 200",
                    (key["id"],))) == 3


def test_a_key_cannot_chat_into_another_keys_session(gw, openai_fake):
    a, b = new_key(gw), new_key(gw)
    assert chat(gw, a["key"], "a-only").status_code == 200
    poll_rows(gw, "SELECT 1 FROM sessions WHERE id = 'a-only'")
    before = len(openai_fake.requests)
    refused = chat(gw, b["key"], "a-only")
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "X-Session-Id"
    assert len(openai_fake.requests) == before  # nothing was called
    assert chat(gw, MASTER, "a-only").status_code == 200  # the master key sees every session
    totals = call(gw, a["key"], "GET", "/sessions/a-only").json()
    assert totals.get("message_count", 2) >= 2
    rows_in = rows(gw, "SELECT api_key_id FROM completions WHERE session_id = 'a-only'")
    assert b["id"] not in {r["api_key_id"] for r in rows_in}
    # b's own new session is b's
    assert chat(gw, b["key"], "b-own").status_code == 200


def test_a_malformed_session_id_is_400(gw):
    r = chat(gw, MASTER, "x" * 129)
    assert r.status_code == 400 and r.json()["error"]["param"] == "X-Session-Id"


def test_the_writer_never_files_a_row_under_another_keys_session(gw):
    """Two keys naming one new id at once: the request-time check cannot see a
    session not written yet, so the writer checks again."""
    a, b = new_key(gw), new_key(gw)
    with_a = chat(gw, a["key"], "raced")
    with_b = chat(gw, b["key"], "raced")  # may pass the request-time check before a's row exists
    poll_rows(gw, "SELECT 1 FROM completions WHERE api_key_id IN (?, ?)", (a["id"], b["id"]),
              count=1 + (with_b.status_code == 200))
    owner = rows(gw, "SELECT api_key_id FROM sessions WHERE id = 'raced'")[0]["api_key_id"]
    filed = rows(gw, "SELECT api_key_id FROM completions WHERE session_id = 'raced'")
    assert with_a.status_code == 200
    assert {r["api_key_id"] for r in filed} == {owner}
