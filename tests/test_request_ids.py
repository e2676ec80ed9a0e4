"""Rows are keyed by an id the gateway makes; the client's X-Request-Id is kept
beside it (returned, logged, stored), so repeating or guessing an id drops nothing."""
import time

import requests

from tests.log import poll_rows, rows

MASTER = "sk-master-request-ids-0123456789"
HI = [{"role": "user", "content": "hi there"}]


def chat(gw, key: str, request_id: str, model: str = "echo") -> requests.Response:
    return requests.post(gw.url + "/v1/chat/completions", timeout=10,
                         json={"model": model, "messages": HI},
                         headers={"Authorization": f"Bearer {key}", "X-Request-Id": request_id})


def test_eight_calls_with_one_client_id_are_eight_rows(gateway):
    answers = [requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                             json={"model": "echo", "messages": HI},
                             headers={"X-Request-Id": "fixed-id-1"}) for _ in range(8)]
    ids = {a.headers["x-request-id"] for a in answers}
    assert len(ids) == 8 and all(i.startswith("req_") for i in ids)
    assert {a.headers["x-client-request-id"] for a in answers} == {"fixed-id-1"}
    found = poll_rows(gateway, "SELECT request_id FROM completions WHERE request_id IN "
                      f"({', '.join('?' * 8)})", tuple(ids), count=8)
    assert len(found) == 8
    assert len(rows(gateway, "SELECT 1 FROM completions WHERE client_request_id = 'fixed-id-1'")) >= 8
    assert '"client_request_id":"fixed-id-1"' in gateway.logs()


def test_a_repeated_request_id_cannot_keep_a_key_under_its_budget(start_gateway, openai_fake):
    gw = start_gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_API_KEY": "sk-test-0123456789",
                        "OPENAI_BASE_URL": openai_fake.url + "/v1"})
    cost = float(chat(gw, MASTER, "x", "openai/gpt-4o-mini").headers["x-gateway-cost-usd"])
    key = requests.post(gw.url + "/v1/keys", timeout=10, headers={"Authorization": f"Bearer {MASTER}"},
                        json={"name": "thrifty", "monthly_budget_usd": 2.5 * cost}).json()
    statuses = []
    while 429 not in statuses and len(statuses) < 8:
        statuses.append(chat(gw, key["key"], "fixed-id-1", "openai/gpt-4o-mini").status_code)
        poll_rows(gw, "SELECT 1 FROM completions WHERE api_key_id = ?", (key["id"],),
                  count=statuses.count(200))
        time.sleep(1.1)  # a worker keeps a key's spend for one second
    assert statuses == [200, 200, 200, 429]  # every call's spend counted: the budget trips
    spent = rows(gw, "SELECT count(*) AS n FROM completions WHERE api_key_id = ? AND status = 200",
                 (key["id"],))[0]["n"]
    assert spent == statuses.count(200)


def test_another_clients_id_cannot_overwrite_its_row(gateway):
    first = chat(gateway, "x", "shared-guessable-id")
    second = chat(gateway, "x", "shared-guessable-id")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    found = poll_rows(gateway, "SELECT request_id FROM completions WHERE client_request_id = ?",
                      ("shared-guessable-id",), count=2)
    assert {r["request_id"] for r in found} >= {first.headers["x-request-id"],
                                                second.headers["x-request-id"]}
