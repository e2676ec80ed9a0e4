"""/metrics agrees with the log; a locked database delays no response and a full
queue is counted; content logging modes; retention."""
import sqlite3
import time

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway import Gateway
from tests.log.test_rows import rows, wait_rows

HI = [{"role": "user", "content": "hi there"}]


def scrape(gw) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics, parsed by prometheus_client."""
    text = requests.get(gw.url + "/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and want <= set(l))


def test_metrics_agree_with_the_log_across_workers(openai_fake, tmp_path):
    gw = Gateway({"OPENAI_API_KEY": "sk-metrics-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1"},
                 workers=2).start(tmp_path)
    try:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        for _ in range(15):
            c.chat.completions.create(model="echo", messages=HI)
            list(c.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, stream=True))
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="openai/error-429", messages=HI)
        # 31 calls; the 429 was retried once by the gateway, and that attempt has its own row
        logged = wait_rows(gw, 32)
        assert len(logged) == 32
        time.sleep(0.6)  # each worker applies written rows to its metrics every 0.25 s
        samples = {}
        for _ in range(4):  # scrapes land on either worker; the sums are the same
            samples = scrape(gw)
            assert total(samples, "switchboard_requests_total") == 31
        assert total(samples, "switchboard_requests_total", status="429") == 1
        # the gateway's retry is an attempt, not a request
        assert total(samples, "switchboard_upstream_attempts_total", status="429") == 2
        assert total(samples, "switchboard_tokens_total", gen_ai_token_type="input") == \
            sum(r["prompt_tokens"] or 0 for r in logged)
        assert total(samples, "switchboard_tokens_total", gen_ai_token_type="output") == \
            sum(r["completion_tokens"] or 0 for r in logged)
        assert total(samples, "switchboard_cost_usd_total") == \
            pytest.approx(sum(r["cost_usd"] or 0 for r in logged))
        # durations are the client's: one per call, not per attempt
        assert total(samples, "gen_ai_client_operation_duration_seconds_count") == 31
        assert total(samples, "gen_ai_server_time_to_first_token_seconds_count") == 30
        assert total(samples, "switchboard_upstream_errors_total", gen_ai_provider_name="openai") == 2
        assert total(samples, "switchboard_requests_in_flight") == 0
        assert total(samples, "switchboard_log_queue_depth") == 0
    finally:
        gw.stop()


def test_a_locked_database_delays_nothing_and_a_full_queue_is_counted(tmp_path):
    gw = Gateway({"LOG_QUEUE_MAX": "5"}).start(tmp_path)
    try:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=5)
        lock = sqlite3.connect(gw.db_path, timeout=1, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        c.chat.completions.create(model="echo", messages=HI)
        time.sleep(0.3)  # the writer takes that row and waits on the lock
        for _ in range(8):  # answered at once although nothing can be written
            assert c.chat.completions.create(model="echo", messages=HI).choices[0].message.content
        samples = scrape(gw)
        assert total(samples, "switchboard_log_rows_dropped_total") == 3
        assert total(samples, "switchboard_log_queue_depth") == 5
        assert "log queue full" in gw.logs()
        lock.execute("ROLLBACK")
        lock.close()
        assert len(wait_rows(gw, 6, timeout=15)) == 6
    finally:
        gw.stop()


SECRETY = [{"role": "user", "content": "mail me at jane.doe@example.com or +1 415 555 0100, "
                                       "card 4242 4242 4242 4242, key sk-abcdefghijklmnop1234"}]


@pytest.mark.parametrize("mode", ["full", "redacted", "none"])
def test_content_logging_modes(tmp_path, mode):
    gw = Gateway({"LOG_CONTENT": mode}).start(tmp_path)
    try:
        openai.OpenAI(base_url=gw.url + "/v1", api_key="x").chat.completions.create(
            model="echo", messages=SECRETY)
        row = wait_rows(gw, 1)[0]
        bodies = " ".join(r["body"] for r in rows(gw, "SELECT body FROM contents"))
        assert row["prompt_tokens"] > 0  # usage is logged in every mode
        if mode == "full":
            assert "jane.doe@example.com" in bodies
        elif mode == "redacted":
            assert bodies and "jane.doe" not in bodies and "4242 4242" not in bodies
            assert "555 0100" not in bodies and "sk-abcdefghijklmnop" not in bodies
            assert "[email]" in bodies and "[card]" in bodies
        else:
            assert bodies == "" and row["prompt_refs"] is None and row["answer_ref"] is None
    finally:
        gw.stop()


def test_retention_prunes_old_rows_and_orphaned_bodies():
    from proxy.log import db
    from proxy.log.retention import Retention

    conn = db.connect(":memory:")
    db.migrate(conn)
    now = time.time()
    conn.execute("INSERT INTO contents VALUES ('old', '{}'), ('new', '{}')")
    for i, (age_days, ref) in enumerate([(40, "old"), (1, "new")]):
        conn.execute("INSERT INTO completions (request_id, created_at, status, streamed, prompt_refs) "
                     "VALUES (?, ?, 200, 0, ?)", (f"r{i}", now - age_days * 86400, f'["{ref}"]'))
    assert Retention(days=30).run(conn) == 1
    assert [r[0] for r in conn.execute("SELECT request_id FROM completions")] == ["r1"]
    assert [r[0] for r in conn.execute("SELECT hash FROM contents")] == ["new"]
    for i in range(5):
        conn.execute("INSERT INTO completions (request_id, created_at, status, streamed) "
                     "VALUES (?, ?, 200, 0)", (f"x{i}", now))
    Retention(max_rows=3).run(conn)
    assert conn.execute("SELECT count(*) FROM completions").fetchone()[0] == 3


def test_migrations_are_recorded_and_idempotent(tmp_path):
    from proxy.log import db
    from proxy.log.migrations import MIGRATIONS

    conn = db.connect(str(tmp_path / "m.db"))
    assert db.migrate(conn) == [name for name, _ in MIGRATIONS]
    assert db.migrate(conn) == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    recorded = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    assert recorded == sorted(name for name, _ in MIGRATIONS)
