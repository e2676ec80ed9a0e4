"""The sidecar log under the real gateway: one row per call with the right
tokens and cost, nothing lost across workers or on SIGTERM, usage for streams."""
import signal
import sqlite3
import threading
import time

import openai
import pytest
import requests

from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi there"}]


def rows(gw, sql="SELECT * FROM completions ORDER BY id", args=()):
    conn = sqlite3.connect(gw.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def wait_rows(gw, count, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = rows(gw)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return rows(gw)


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = Gateway({"OPENAI_API_KEY": "sk-log-tests-0123456789",
                       "OPENAI_BASE_URL": openai_fake.url + "/v1"}, workers=2)
    gateway.start(tmp_path_factory.mktemp("log"))
    yield gateway
    gateway.stop()


def client(gw, **kw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, **kw)


def test_each_call_is_one_row_with_tokens_and_cost(gw):
    before = len(rows(gw))
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HI)
    reply = raw.parse()
    list(c.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, stream=True))
    c.chat.completions.create(model="echo", messages=HI)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="echo", messages=[])
    found = wait_rows(gw, before + 4)[before:]
    assert len(found) == 4
    by_request = {r["request_id"]: r for r in found}
    row = by_request[raw.headers["x-request-id"]]
    # gpt-4o-mini: 129 prompt tokens at $0.15/M + 9 completion tokens at $0.60/M
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (129, 9, 0)
    assert row["cost_usd"] == pytest.approx(129 * 0.15e-6 + 9 * 0.60e-6)
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(row["cost_usd"])
    assert row["completion_id"] == reply.id and row["model_answered"] == "gpt-4o-mini-2024-07-18"
    assert row["provider"] == "openai" and row["model_requested"] == "openai/gpt-4o-mini"
    assert row["finish_reason"] == "stop" and row["status"] == 200 and row["streamed"] == 0
    streamed = next(r for r in found if r["streamed"])
    # the client did not ask for usage; the gateway did, for the log
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (12, 18)
    assert streamed["tokens_estimated"] == 0 and streamed["cost_usd"] > 0
    echo = next(r for r in found if r["provider"] == "echo")
    assert (echo["prompt_tokens"], echo["completion_tokens"], echo["cost_usd"]) == (9, 2, 0.0)
    refused = next(r for r in found if r["status"] == 400)
    assert refused["error_type"] == "invalid_value" and refused["cost_usd"] is None


def test_concurrent_calls_across_two_workers_give_exactly_n_rows(gw):
    before = len(rows(gw))
    n, errors = 120, []

    def call(i):
        try:
            c = client(gw)
            if i % 2:
                list(c.chat.completions.create(model="echo", messages=HI, stream=True))
            else:
                c.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = wait_rows(gw, before + n)[before:]
    assert len(found) == n and len({r["request_id"] for r in found}) == n




def test_a_cut_stream_is_estimated_and_marked(gw):
    before = len(rows(gw))
    with pytest.raises(openai.APIError):
        list(client(gw).chat.completions.create(model="openai/cut-stream", messages=HI, stream=True))
    row = wait_rows(gw, before + 1)[-1]
    assert row["tokens_estimated"] == 1 and row["prompt_tokens"] > 0
    assert row["error_type"] == "upstream_error"


def test_client_disconnect_is_recorded(gw):
    before = len(rows(gw))
    r = requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=10,
                      json={"model": "openai/slow-stream", "messages": HI, "stream": True})
    next(r.iter_lines())
    r.close()
    deadline = time.time() + 5
    while time.time() < deadline and len(rows(gw)) <= before:
        time.sleep(0.05)
    row = rows(gw)[-1]
    assert row["client_disconnected"] == 1 and row["streamed"] == 1


def test_history_is_not_repeated_per_row(gw):
    conversation = [{"role": "system", "content": "You are terse. " * 50}]
    c = client(gw)
    for turn in range(4):
        conversation.append({"role": "user", "content": f"question {turn}"})
        answer = c.chat.completions.create(model="echo", messages=conversation).choices[0].message
        conversation.append({"role": "assistant", "content": answer.content})
    time.sleep(0.3)
    stored = rows(gw, "SELECT body FROM contents WHERE body LIKE '%You are terse%'")
    assert len(stored) == 1  # the long system prompt is stored once, not once per turn


def test_sigterm_under_load_loses_no_row(openai_fake, tmp_path):
    gw = Gateway({"OPENAI_API_KEY": "sk-log-tests-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1",
                  "GRACEFUL_TIMEOUT": "10"}, workers=2).start(tmp_path)
    ok, stop = [], threading.Event()

    def load():
        c = client(gw, timeout=10)
        while not stop.is_set():
            try:
                r = c.chat.completions.with_raw_response.create(model="echo", messages=HI)
                ok.append(r.headers["x-request-id"])
            except openai.APIConnectionError:
                return

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(30)
    stop.set()
    for t in threads:
        t.join()
    written = {r["request_id"] for r in rows(gw)}
    assert ok and set(ok) <= written
    gw.stop()
