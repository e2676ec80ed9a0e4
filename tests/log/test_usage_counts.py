"""Usage and metrics count calls to the gateway: a request whose tries failed and
were retried (or fell back) is one request, with its provider calls reported
beside it as `attempts`, in /v1/usage and in /metrics."""
import sqlite3
import uuid
from datetime import datetime, timezone

import openai
import pytest

from proxy.log.migrations import MIGRATIONS
from tests.fakes import flaky_upstream
from tests.gateway import Gateway
from tests.log import api, client, poll, poll_rows
from tests.log.test_metrics_and_content import scrape, total

HI = [{"role": "user", "content": "hi there"}]
CONFIG = """
[providers.flaky]
type = "openai"
base_url = "{flaky}/v1"
retries = 1
cooldown_after = 100000
"""


@pytest.fixture(scope="module")
def flaky():
    fake = flaky_upstream.start()
    yield fake
    fake.server.__exit__(None, None, None)


@pytest.fixture
def gw(flaky, start_gateway, tmp_path):
    (tmp_path / "gateway.toml").write_text(CONFIG.format(flaky=flaky.server.url))
    return start_gateway({"GATEWAY_CONFIG": str(tmp_path / "gateway.toml")}, workers=2)


def usage_totals(gw, **params) -> dict:
    response = api(gw, "GET", "/v1/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def counted(totals: dict) -> tuple:
    return totals["requests"], totals["errors"], totals.get("attempts")


def metrics_once_applied(gw, requests: int, attempts: int) -> dict:
    """A scrape once every row has reached the metrics (each worker applies the
    rows its log writer wrote every 0.25 s)."""
    return poll(lambda: scrape(gw), timeout=5, until=lambda s: (
        total(s, "switchboard_requests_total") >= requests
        and total(s, "switchboard_upstream_attempts_total") >= attempts))


def test_a_request_whose_retry_failed_too_is_one_request_and_two_attempts(gw, flaky):
    with pytest.raises(openai.InternalServerError):
        client(gw).chat.completions.create(model="flaky/down", messages=HI)
    assert len(poll_rows(gw, "SELECT * FROM completions", count=2)) == 2  # the try and the retry
    assert counted(usage_totals(gw)) == (1, 1, 2)
    samples = metrics_once_applied(gw, requests=1, attempts=2)
    assert total(samples, "switchboard_requests_total") == 1
    assert total(samples, "switchboard_requests_total", status="500") == 1
    assert total(samples, "switchboard_upstream_attempts_total", gen_ai_provider_name="flaky") == 2
    assert total(samples, "switchboard_upstream_errors_total", gen_ai_provider_name="flaky") == 2


def test_a_retry_that_succeeds_is_no_error_and_a_refused_call_no_attempt(gw, flaky):
    sdk = client(gw)
    flaky_model = f"flaky/flaky-1-{uuid.uuid4().hex[:8]}"  # 500 once, then the answer
    assert sdk.chat.completions.create(model=flaky_model, messages=HI).choices[0].message.content
    with pytest.raises(openai.BadRequestError):  # refused before any provider is called
        sdk.chat.completions.create(model="flaky/ok", messages=[])
    assert len(poll_rows(gw, "SELECT * FROM completions", count=3)) == 3
    assert counted(usage_totals(gw)) == (2, 1, 2)
    by_model = {g["group"]: g for g in api(gw, "GET", "/v1/usage",
                                           params={"group_by": "model_requested"}).json()["data"]}
    assert counted(by_model[flaky_model]) == (1, 0, 2)
    assert counted(by_model[None]) == (1, 1, 0)  # refused before its model was read
    samples = metrics_once_applied(gw, requests=2, attempts=2)
    assert total(samples, "switchboard_requests_total") == 2
    assert total(samples, "switchboard_requests_total", status="200") == 1
    assert total(samples, "switchboard_upstream_attempts_total", status="200") == 1


_OLD_COLUMNS = "request_id, created_at, provider, model_requested, status, streamed"
DAY = datetime(2001, 3, 4, 10, tzinfo=timezone.utc).timestamp()


def test_attempt_rows_logged_before_the_upgrade_are_told_apart(tmp_path):
    """A log written before attempts had their own column: an attempt is a row
    `<id>.<n>` of a request `<id>` that is in the log (a client's own id may hold
    dots too)."""
    gw = Gateway({})
    conn = sqlite3.connect(gw.db_path)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, sql in MIGRATIONS[:2]:  # the log as the gateway left it before the upgrade
        conn.executescript(sql)
        conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, DAY))
    conn.executemany(f"INSERT INTO completions ({_OLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0)", [
        ("req-1.1", DAY, "p", "m", 502), ("req-1.2", DAY, "p", "m", 502), ("req-1", DAY, "q", "m", 200),
        ("client.v2.3", DAY, "p", "m", 200),        # a client's id: no request `client.v2`
        ("refused", DAY, None, "m", 400)])          # refused before any provider was called
    conn.commit()
    conn.close()
    gw.start(tmp_path)
    try:
        totals = usage_totals(gw, **{"from": "2001-03-01", "to": "2001-03-31"})
        assert counted(totals) == (3, 1, 4)
    finally:
        gw.stop()
