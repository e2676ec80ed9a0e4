"""GET /v1/usage: live traffic checked against sums of the SQLite rows, and a
known set of rows (written straight into the log, in 2001) for percentiles,
days, keys and time parsing."""
import random
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import openai
import pytest

from proxy.log.queries import percentile
from tests.log import api, client, execute, poll_rows, rows, start_module_gateway

DAY1 = datetime(2001, 3, 4, 10, tzinfo=timezone.utc).timestamp()
DAY2 = datetime(2001, 3, 5, 23, 30, tzinfo=timezone.utc).timestamp()
WIKI = [15, 20, 35, 40, 50]  # nearest-rank: p30 = 20, p50 = 35, p95 = 50
ONE_TO_TWENTY = list(range(1, 21))  # p50 = 10, p95 = 19

_COLUMNS = ("request_id", "created_at", "session_id", "api_key_id", "provider", "model_requested",
            "model_answered", "status", "prompt_tokens", "completion_tokens", "cached_tokens",
            "reasoning_tokens", "cost_usd", "latency_ms", "streamed")


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = start_module_gateway(openai_fake, tmp_path_factory, "usage")
    _insert_known(gateway)
    yield gateway
    gateway.stop()


def _row(model, latency, created_at=DAY1, status=200, cost=0.01, key="key-a"):
    return {"request_id": "known-" + uuid.uuid4().hex, "created_at": created_at, "session_id": None,
            "api_key_id": key, "provider": "known", "model_requested": model, "model_answered": model,
            "status": status, "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 2,
            "reasoning_tokens": 1, "cost_usd": cost, "latency_ms": latency, "streamed": 0}


def _insert_known(gw):
    known = [_row("wiki", v) for v in random.sample(WIKI, len(WIKI))]
    known += [_row("twenty", v, created_at=DAY2, key="key-b", cost=None if v == 7 else 0.01)
              for v in random.sample(ONE_TO_TWENTY, 20)]
    # an error: counted, but its latency and missing cost are not a success's
    known.append(_row("wiki", 5000.0, status=502, cost=None))
    execute(gw, f"INSERT INTO completions ({', '.join(_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(_COLUMNS))})", [tuple(r[c] for c in _COLUMNS) for r in known])
    wiki = rows(gw, "SELECT id FROM completions WHERE model_answered = 'wiki' ORDER BY id")
    execute(gw, "INSERT INTO feedback (completion_row, feedback_type, rating, created_at) VALUES (?, ?, ?, ?)",
            [(wiki[0]["id"], "thumbs_up", 4, DAY1), (wiki[1]["id"], "thumbs_down", 1, DAY1),
             (wiki[2]["id"], "flag", None, DAY1)])


def usage(gw, **params):
    response = api(gw, "GET", "/v1/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def known_usage(gw, group_by, **params):
    params = {"from": "2001-03-01", "to": "2001-03-31", **params}
    return usage(gw, group_by=group_by, **params)


def by_group(report):
    return {g["group"]: g for g in report["data"]}


def test_nearest_rank_percentile():
    assert [percentile(WIKI, p) for p in (5, 30, 40, 50, 95, 100)] == [15, 20, 20, 35, 50, 50]
    assert percentile(ONE_TO_TWENTY, 50) == 10 and percentile(ONE_TO_TWENTY, 95) == 19
    assert percentile([], 50) is None and percentile([3.5], 95) == 3.5


def test_known_set_by_model(gw):
    report = known_usage(gw, "model")
    assert report["object"] == "usage" and report["group_by"] == "model"
    assert report["percentiles"] == "nearest-rank"
    groups = by_group(report)
    assert list(groups) == ["twenty", "wiki"]  # busiest first
    wiki, twenty = groups["wiki"], groups["twenty"]
    assert (wiki["requests"], wiki["errors"]) == (6, 1)
    assert wiki["latency_ms"] == {"p50": 35, "p95": 50, "count": 5}
    assert twenty["latency_ms"] == {"p50": 10, "p95": 19, "count": 20}
    assert wiki["prompt_tokens"] == 60 and wiki["completion_tokens"] == 30
    assert wiki["total_tokens"] == 90 and wiki["cached_tokens"] == 12 and wiki["reasoning_tokens"] == 6
    assert wiki["cost_usd"] == pytest.approx(0.05) and wiki["cost_unknown_requests"] == 0
    assert twenty["cost_usd"] == pytest.approx(0.19) and twenty["cost_unknown_requests"] == 1
    assert wiki["feedback"] == {"thumbs_up": 1, "thumbs_down": 1, "flag": 1, "ratings": 2,
                                "rating_avg": 2.5}
    assert twenty["feedback"]["ratings"] == 0 and twenty["feedback"]["rating_avg"] is None
    totals = report["totals"]
    assert totals["requests"] == 26 and totals["errors"] == 1
    assert totals["latency_ms"] == {"p50": percentile(WIKI + ONE_TO_TWENTY, 50),
                                    "p95": percentile(WIKI + ONE_TO_TWENTY, 95), "count": 25}
    assert totals["cost_usd"] == pytest.approx(0.24) and totals["feedback"]["thumbs_up"] == 1


def test_known_set_by_day_key_and_provider(gw):
    days = known_usage(gw, "day")
    assert [(g["group"], g["requests"]) for g in days["data"]] == [("2001-03-04", 6), ("2001-03-05", 20)]
    keys = by_group(known_usage(gw, "key"))
    assert {k: g["requests"] for k, g in keys.items()} == {"key-a": 6, "key-b": 20}
    providers = by_group(known_usage(gw, "provider"))
    assert list(providers) == ["known"] and providers["known"]["requests"] == 26


@pytest.mark.parametrize("start, end, requests", [
    ("2001-03-04", "2001-03-04", 6),  # a date as `to` includes that whole day
    ("2001-03-05", "2001-03-05", 20),
    ("2001-03-04T00:00:00Z", "2001-03-05T00:00:00Z", 6),
    ("2001-03-05T00:30:00+01:00", "2001-03-06", 20),  # 23:30 UTC the day before: day 1 excluded
    (str(int(DAY1)), str(int(DAY2)), 6),  # unix seconds, `to` exclusive
    (str(int(DAY1)), str(DAY2 + 0.5), 26),
    ("2001-03-04T10:00:00", "2001-03-04T10:00:01", 6),  # naive: UTC
])
def test_time_range_formats(gw, start, end, requests):
    assert known_usage(gw, "provider", **{"from": start, "to": end})["totals"]["requests"] == requests


@pytest.mark.parametrize("params, param", [
    ({"group_by": "week"}, "group_by"),
    ({"group_by": "model; DROP TABLE completions"}, "group_by"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2001-13-01"}, "to"),
    ({"from": "nan"}, "from"),
    ({"from": "2001-03-05", "to": "2001-03-01"}, "from"),
])
def test_bad_parameters_are_400(gw, params, param):
    response = api(gw, "GET", "/v1/usage", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert rows(gw, "SELECT count(*) AS n FROM completions")[0]["n"] > 0


def _expected(db_rows, key):
    groups = defaultdict(lambda: defaultdict(float))
    for r in db_rows:
        g = groups[key(r)]
        g["requests"] += 1
        g["errors"] += r["status"] >= 400
        for column in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
            g[column] += r[column] or 0
        g["cost_usd"] += r["cost_usd"] or 0
    return groups


def test_live_traffic_agrees_with_the_rows(gw):
    sdk = client(gw)
    sid = "usage-" + uuid.uuid4().hex[:8]
    for text in ("one", "two words", "three little words"):
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": text}],
                                    extra_headers={"X-Session-Id": sid})
    for _ in range(2):
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    list(sdk.chat.completions.create(model="openai/gpt-4o-mini", stream=True,
                                     messages=[{"role": "user", "content": "hi"}]))
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="openai/error-400", messages=[{"role": "user", "content": "x"}])
    live = poll_rows(gw, "SELECT * FROM completions WHERE request_id NOT LIKE 'known-%'", count=7)
    assert len(live) == 7
    start, end = min(r["created_at"] for r in live) - 1, max(r["created_at"] for r in live) + 1
    span = {"from": str(start), "to": str(end)}
    keys = {"model": lambda r: r["model_answered"] or r["model_requested"],
            "provider": lambda r: r["provider"], "session": lambda r: r["session_id"],
            "day": lambda r: datetime.fromtimestamp(r["created_at"], timezone.utc).strftime("%Y-%m-%d")}
    for group_by, key in keys.items():
        report = usage(gw, group_by=group_by, **span)
        expected = _expected(live, key)
        assert set(by_group(report)) == set(expected), group_by
        for name, group in by_group(report).items():
            for column, value in expected[name].items():
                assert group[column] == pytest.approx(value), (group_by, name, column)
        totals = report["totals"]
        assert totals["requests"] == 7 and totals["errors"] == 1
        assert totals["total_tokens"] == sum((r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
                                             for r in live)
        assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in live))
        assert totals["cost_usd"] > 0
        ok = [r["latency_ms"] for r in live if r["status"] < 400]
        assert totals["latency_ms"] == {"p50": percentile(ok, 50), "p95": percentile(ok, 95),
                                        "count": 6}
    providers = by_group(usage(gw, group_by="provider", **span))
    assert providers["openai"]["errors"] == 1 and providers["echo"]["cost_usd"] == 0
    assert by_group(usage(gw, group_by="session", **span))[sid]["requests"] == 3


def test_defaults_cover_the_last_30_days(gw):
    report = usage(gw)
    assert report["group_by"] == "day"
    start = datetime.fromisoformat(report["from"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(report["to"].replace("Z", "+00:00"))
    assert (end - start).days == 30 and abs(end.timestamp() - datetime.now(timezone.utc).timestamp()) < 60
    assert all(not g["group"].startswith("2001") for g in report["data"])
