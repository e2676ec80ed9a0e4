"""Retries, fallbacks, cool-downs and load balancing, through the openai SDK,
against upstreams that fail on purpose."""
import sqlite3
import time

import openai
import pytest

from tests.fakes import anthropic_upstream, flaky_upstream
from tests.gateway import Gateway

HI = [{"role": "user", "content": "hi there"}]
CONFIG = """
[providers.primary]
type = "openai"
base_url = "{primary}/v1"
retries = 1
first_byte_timeout = 1
cooldown_after = 1000      # this module's failures on purpose must not cool it down

[providers.backup]
type = "openai"
base_url = "{backup}/v1"
retries = 0

[models."overloaded"]
provider = "primary"
model = "overloaded"
fallbacks = ["anthropic/claude-sonnet-4-5"]

[models."balanced"]
deployments = [{{ provider = "primary", model = "ok", weight = 3 }}, {{ provider = "backup", model = "ok", weight = 1 }}]

[models."cooling"]
provider = "cooling"
model = "down"
fallbacks = ["backup/ok"]

[providers.cooling]
type = "openai"
base_url = "{primary}/v1"
retries = 0
cooldown_after = 3
cooldown_seconds = 60
"""


# public model -> the primary's failing model; each falls back to backup/ok
FALLING_BACK = {"resilient": "down", "limited": "limited", "limited-long": "limited-long",
                "too-long": "too-long", "bad": "bad", "slow": "hang", "reset": "reset"}
CONFIG += "".join(f'\n[models."{name}"]\nprovider = "primary"\nmodel = "{model}"\n'
                  f'fallbacks = ["backup/ok"]\n' for name, model in FALLING_BACK.items())


@pytest.fixture(scope="module")
def fakes():
    primary, backup = flaky_upstream.start(), flaky_upstream.start()
    anthropic = anthropic_upstream.start()
    yield primary, backup, anthropic
    for server in (primary.server, backup.server, anthropic):
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory):
    primary, backup, anthropic = fakes
    tmp = tmp_path_factory.mktemp("resilience")
    (tmp / "gateway.toml").write_text(CONFIG.format(primary=primary.server.url, backup=backup.server.url))
    gateway = Gateway({"GATEWAY_CONFIG": str(tmp / "gateway.toml"),
                       **anthropic_upstream.gateway_env(anthropic)}).start(tmp)
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def served_by(raw):
    return raw.headers["x-gateway-provider"], raw.headers["x-gateway-model"]


def rows_like(gw, request_id):
    conn = sqlite3.connect(gw.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(
            "SELECT * FROM completions WHERE request_id LIKE ? ORDER BY request_id", (request_id + "%",))]
    finally:
        conn.close()


def wait_rows(gw, request_id, count):
    deadline = time.time() + 5
    while time.time() < deadline and len(rows_like(gw, request_id)) < count:
        time.sleep(0.05)
    return rows_like(gw, request_id)


def test_a_flaky_upstream_is_retried(client, fakes):
    raw = client.chat.completions.with_raw_response.create(model="primary/flaky-1", messages=HI)
    assert served_by(raw) == ("primary", "flaky-1")
    assert fakes[0].calls("flaky-1") == 2


def test_a_failing_model_falls_back_and_every_attempt_is_logged(client, gw, fakes):
    raw = client.chat.completions.with_raw_response.create(
        model="resilient", messages=HI, extra_headers={"X-Request-Id": "resilient-1"})
    assert served_by(raw) == ("backup", "ok")
    assert raw.parse().choices[0].message.content
    request_id = raw.headers["x-request-id"]
    rows = wait_rows(gw, request_id, 3)
    assert [(r["request_id"], r["provider"], r["status"], r["client_request_id"]) for r in rows] == [
        (request_id, "backup", 200, "resilient-1"), (f"{request_id}.1", "primary", 500, "resilient-1"),
        (f"{request_id}.2", "primary", 500, "resilient-1")]


def test_retry_after_is_honoured_then_the_fallback_serves(client, fakes):
    before = fakes[0].calls("limited")
    raw = client.chat.completions.with_raw_response.create(model="limited", messages=HI)
    assert served_by(raw) == ("backup", "ok")
    assert fakes[0].calls("limited") == before + 2  # retried once after its retry-after
    hits = [r for r in fakes[0].server.requests if r.json().get("model") == "limited"]
    assert len(hits) >= 2


def test_a_long_retry_after_moves_on_at_once(client, fakes):
    before = fakes[0].calls("limited-long")
    assert served_by(client.chat.completions.with_raw_response.create(
        model="limited-long", messages=HI)) == ("backup", "ok")
    assert fakes[0].calls("limited-long") == before + 1


def test_a_context_window_error_goes_straight_to_the_fallback(client, fakes):
    before = fakes[0].calls("too-long")
    assert served_by(client.chat.completions.with_raw_response.create(
        model="too-long", messages=HI)) == ("backup", "ok")
    assert fakes[0].calls("too-long") == before + 1  # not retried on the same model


def test_a_bad_request_is_not_retried_nor_sent_elsewhere(client, fakes):
    before_backup = fakes[1].calls("ok")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bad", messages=HI)
    assert fakes[0].calls("bad") == 1 and fakes[1].calls("ok") == before_backup


def test_a_hanging_upstream_times_out_and_falls_back(client):
    assert served_by(client.chat.completions.with_raw_response.create(
        model="slow", messages=HI)) == ("backup", "ok")


def test_a_529_falls_back_to_another_provider_type(client):
    raw = client.chat.completions.with_raw_response.create(model="overloaded", messages=HI)
    assert served_by(raw) == ("anthropic", "claude-sonnet-4-5")


def test_no_retry_once_bytes_reached_the_client(client, fakes):
    before = fakes[1].calls("ok")
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="reset", messages=HI, stream=True):
            pass
    assert fakes[1].calls("ok") == before  # the fallback was not tried mid-stream


def test_a_failing_provider_is_cooled_down(client, fakes):
    for _ in range(3):  # three failures in a row open the breaker (one worker)
        assert served_by(client.chat.completions.with_raw_response.create(
            model="cooling", messages=HI)) == ("backup", "ok")
    tried = fakes[0].calls("down")
    for _ in range(4):
        assert served_by(client.chat.completions.with_raw_response.create(
            model="cooling", messages=HI)) == ("backup", "ok")
    assert fakes[0].calls("down") == tried  # skipped while cooling down


def test_load_is_spread_by_weight(client):
    seen = [served_by(client.chat.completions.with_raw_response.create(model="balanced", messages=HI))[0]
            for _ in range(40)]
    assert seen.count("primary") > seen.count("backup") > 0


def test_streams_are_retried_before_their_first_byte(client, fakes):
    chunks = list(client.chat.completions.create(model="primary/flaky-1-stream", messages=HI,
                                                 stream=True, stream_options={"include_usage": True}))
    assert fakes[0].calls("flaky-1-stream") == 2  # a 500 before the first byte, then retried
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.total_tokens == 30
