"""The rate limiter against real stores: a temporary SQLite file and a real
redis-server (skipped when it is not installed). Time is an injected clock,
so nothing here depends on how fast the machine is."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
import uuid

import pytest

from proxy.policy.ratelimit import (Decision, Limits, go_duration, make_limiter, parse_rate,
                                    sqlite_path)
from proxy.policy.ratelimit_sqlite import SqliteRateLimiter
from tests.policy import redis_server

T0 = 60 * 29_000_000  # the start of a window (an epoch minute), far from the real clock


class Clock:
    """A settable clock; picklable, so spawned processes get a frozen copy."""

    def __init__(self, t: float = T0 + 30):
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url():
    if not redis_server.available():
        pytest.skip("redis-server not installed")
    server = redis_server.RedisServer().start()
    yield server.url
    server.stop()


def _redis_limiter(url: str, prefix: str, clock):
    from proxy.policy.ratelimit_redis import RedisRateLimiter
    return RedisRateLimiter(url, now=clock, prefix=prefix)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    """(kind, store address, key prefix): what a process needs to build its own limiter."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "gateway.ratelimit.db"), ""
    return "redis", request.getfixturevalue("redis_url"), f"test:{uuid.uuid4().hex}:"


def build(kind: str, address: str, prefix: str, clock):
    if kind == "sqlite":
        return SqliteRateLimiter(address, now=clock)
    return _redis_limiter(address, prefix, clock)


@pytest.fixture
def limiter(backend, clock):
    lim = build(*backend, clock)
    yield lim
    lim.close()


# --- requests per minute -----------------------------------------------------------

def test_rpm_admits_exactly_n_then_refuses(limiter):
    limits = Limits(rpm=5)
    decisions = [limiter.check("k", limits, 0) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining_requests for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.reason == "requests" and refused.window is None
    assert refused.limit_requests == 5 and refused.remaining_requests == 0
    # 5 counted at :30 of window k; one more fits once 1 - 4/5 of them has decayed,
    # i.e. 12 s into window k+1: 42 s from now
    assert refused.retry_after_s == pytest.approx(42, abs=0.01)
    assert refused.headers()["retry-after"] == "43"  # rounded up (42.001)
    assert limiter.check("other", limits, 0).allowed  # subjects are independent


def test_refused_request_counts_nothing(limiter, clock):
    limits = Limits(rpm=2, tpm=100)
    assert limiter.check("k", limits, 60).allowed
    refused = limiter.check("k", limits, 50)  # 60 + 50 > 100
    assert not refused.allowed and refused.reason == "tokens"
    after = limiter.check("k", limits, 40)  # exactly 100: fits, so the 50 was not counted
    assert after.allowed and after.remaining_tokens == 0 and after.remaining_requests == 0


def test_retry_after_is_when_it_fits(limiter, clock):
    limits = Limits(rpm=10)
    for _ in range(10):
        assert limiter.check("k", limits, 0).allowed
    refused = limiter.check("k", limits, 0)
    assert refused.retry_after_s == pytest.approx(36, abs=0.01)  # 6 s into the next window
    clock.t += refused.retry_after_s
    assert limiter.check("k", limits, 0).allowed
    assert not limiter.check("k", limits, 0).allowed


def test_window_rollover_weights_the_previous_window(limiter, clock):
    limits = Limits(rpm=10)
    clock.t = T0 + 30
    assert sum(limiter.check("k", limits, 0).allowed for _ in range(12)) == 10
    clock.t = T0 + 60 + 30  # half-way through the next window: 10 * 0.5 still count
    assert sum(limiter.check("k", limits, 0).allowed for _ in range(12)) == 5
    clock.t = T0 + 60 + 45  # 10 * 0.25 + 5 = 7.5 -> 2 more
    d = limiter.check("k", limits, 0)
    assert d.allowed and d.remaining_requests == 1  # 10 - (2.5 + 6) = 1.5
    assert limiter.check("k", limits, 0).allowed
    assert not limiter.check("k", limits, 0).allowed
    clock.t = T0 + 180  # two windows on: everything forgotten
    assert sum(limiter.check("k", limits, 0).allowed for _ in range(12)) == 10


def test_reset_is_time_until_back_to_full(limiter, clock):
    clock.t = T0 + 15
    d = limiter.check("k", Limits(rpm=10, tpm=1000), 0)
    # this window ends in 45 s, then its count fades over the next 60 s
    assert d.reset_requests_s == pytest.approx(105)
    assert d.reset_tokens_s == 0  # no tokens counted
    assert d.headers()["x-ratelimit-reset-requests"] == "1m45s"
    assert d.headers()["x-ratelimit-reset-tokens"] == "0s"
    clock.t = T0 + 75
    d = limiter.check("other", Limits(rpm=10), 0)
    assert d.reset_requests_s == pytest.approx(105)


def test_clock_going_back_is_strict(limiter, clock):
    limits = Limits(rpm=4)
    clock.t = T0 + 65
    assert sum(limiter.check("k", limits, 0).allowed for _ in range(2)) == 2
    clock.t = T0 + 59  # behind the stored window: counted as that window, prev at full weight
    assert sum(limiter.check("k", limits, 0).allowed for _ in range(5)) == 2


# --- tokens per minute -----------------------------------------------------------

def test_tpm_counts_estimated_tokens(limiter):
    limits = Limits(tpm=1000)
    first = limiter.check("k", limits, 400)
    assert first.allowed and first.remaining_tokens == 600 and first.limit_requests is None
    assert limiter.check("k", limits, 600).allowed
    refused = limiter.check("k", limits, 1)
    assert not refused.allowed and refused.reason == "tokens"
    assert refused.headers()["x-ratelimit-remaining-tokens"] == "0"
    assert "x-ratelimit-limit-requests" not in refused.headers()


def test_request_larger_than_tpm_can_never_fit(limiter):
    d = limiter.check("k", Limits(rpm=10, tpm=100), 101)
    assert not d.allowed and d.reason == "tokens"
    assert d.retry_after_s is None and "retry-after" not in d.headers()
    assert limiter.check("k", Limits(rpm=10, tpm=100), 100).allowed


def test_both_limits_refuse_with_the_longer_wait(limiter):
    limits = Limits(rpm=2, tpm=100)
    assert limiter.check("k", limits, 10).allowed
    assert limiter.check("k", limits, 90).allowed
    refused = limiter.check("k", limits, 100)
    assert refused.reason == "requests"
    # requests fit 30 s into the next window; 100 more tokens only at its end
    assert refused.retry_after_s == pytest.approx(90, abs=0.01)


def test_settle_corrects_the_window_it_was_counted_in(limiter, clock):
    limits = Limits(tpm=1000)
    d = limiter.check("k", limits, 100)
    assert d.remaining_tokens == 900
    limiter.settle("k", limits, 100, 10, d.window)  # frees 90
    assert limiter.check("k", limits, 0).remaining_tokens == 990
    d2 = limiter.check("k", limits, 100)
    limiter.settle("k", limits, 100, 500, d2.window)  # consumes 400 more
    assert limiter.check("k", limits, 0).remaining_tokens == 490
    limiter.settle("k", limits, 100_000, 0, d.window)  # never below zero
    assert limiter.check("k", limits, 0).remaining_tokens == 1000


def test_settle_after_the_window_rolled(limiter, clock):
    limits = Limits(tpm=1000)
    clock.t = T0 + 59
    d = limiter.check("k", limits, 800)
    clock.t = T0 + 60  # next window, the previous one still at full weight
    assert limiter.check("k", limits, 0).remaining_tokens == 200
    limiter.settle("k", limits, 800, 200, d.window)  # lands in the previous window
    assert limiter.check("k", limits, 0).remaining_tokens == 800
    clock.t = T0 + 150  # that window no longer counts: settling it changes nothing
    limiter.settle("k", limits, 0, 5000, d.window)
    assert limiter.check("k", limits, 0).remaining_tokens == 1000


def test_settle_without_window_uses_the_current_one(limiter):
    limits = Limits(tpm=1000)
    limiter.check("k", limits, 300)
    limiter.settle("k", limits, 300, 100)
    assert limiter.check("k", limits, 0).remaining_tokens == 900
    limiter.settle("never-seen", limits, 10, 20)  # nothing to correct: no error


def test_no_limits_touches_nothing(limiter):
    d = limiter.check("k", Limits(), 10**9)
    assert d.allowed and d.headers() == {} and d.window is None


# --- across processes and threads -------------------------------------------------

def _hammer(kind, address, prefix, t, limits, cost, calls, barrier, results):
    limiter = build(kind, address, prefix, Clock(t))
    limiter.check("warm-up", Limits(rpm=10**9), 0)  # open connections before the start line
    barrier.wait(60)
    allowed = sum(limiter.check("shared", limits, cost).allowed for _ in range(calls))
    limiter.close()
    results.put(allowed)


def _across_processes(backend, limits, cost, processes=4, calls=250):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(*backend, T0 + 30, limits, cost, calls,
                                               barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        counts = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    assert all(p.exitcode == 0 for p in procs)
    return counts


def test_rpm_exact_across_processes(backend):
    counts = _across_processes(backend, Limits(rpm=600), 0)
    assert sum(counts) == 600  # of 1000 tried


def test_tpm_exact_across_processes(backend):
    counts = _across_processes(backend, Limits(tpm=3000), 7)
    assert sum(counts) == 3000 // 7  # 428 of 1000 requests of 7 tokens


def test_exact_across_threads(backend, clock):
    limiter = build(*backend, clock)
    limits, allowed, lock = Limits(rpm=30), [], threading.Lock()

    def run():
        n = sum(limiter.check("shared", limits, 0).allowed for _ in range(20))
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limiter.close()
    assert sum(allowed) == 30


# --- SQLite specifics ---------------------------------------------------------------

def test_sqlite_file_beside_the_log_and_cleanup(tmp_path, clock):
    assert sqlite_path("gateway.db") == "gateway.ratelimit.db"
    assert sqlite_path("/var/lib/x/gateway.sqlite") == "/var/lib/x/gateway.sqlite.ratelimit.db"
    limiter = make_limiter(str(tmp_path / "gateway.db"), None)
    assert isinstance(limiter, SqliteRateLimiter)
    assert limiter.path == str(tmp_path / "gateway.ratelimit.db")
    limiter._now = clock
    assert limiter.check("old", Limits(rpm=1), 0).allowed
    conn = sqlite3.connect(limiter.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    clock.t = T0 + 30 + 120
    limiter._next_cleanup = 0  # due now
    limiter.check("new", Limits(rpm=1), 0)
    assert [r[0] for r in conn.execute("SELECT subject FROM ratelimit")] == ["new"]
    conn.close()
    limiter.close()
    assert not (tmp_path / "gateway.db").exists()  # never the log database


def test_sqlite_locked_raises_and_counts_nothing(tmp_path, clock):
    # what a failing store means for the request is the gate's setting
    # (tests/policy/test_limiter_bounds.py): the store only reports it
    path = str(tmp_path / "rl.db")
    limiter = SqliteRateLimiter(path, now=clock, busy_timeout_ms=20)
    assert limiter.check("k", Limits(rpm=2), 0).allowed
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            limiter.check("k", Limits(rpm=2), 0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert limiter.check("k", Limits(rpm=2), 0).allowed  # the failed check counted nothing
    assert not limiter.check("k", Limits(rpm=2), 0).allowed
    limiter.close()


def test_sqlite_rolls_back_a_value_it_cannot_store(tmp_path, clock):
    limiter = SqliteRateLimiter(str(tmp_path / "rl.db"), now=clock)
    with pytest.raises(OverflowError):  # the gate never sends such a number
        limiter.check("k", Limits(rpm=2), 2**63)
    d = limiter.check("k", Limits(rpm=2, tpm=100), 10)  # the connection is still usable
    assert d.allowed and d.remaining_requests == 1 and d.remaining_tokens == 90
    limiter.close()


# --- Redis specifics --------------------------------------------------------------

def test_redis_keys_expire(redis_url, clock):
    import redis
    prefix = f"test:{uuid.uuid4().hex}:"
    limiter = _redis_limiter(redis_url, prefix, clock)
    d = limiter.check("k", Limits(rpm=5, tpm=100), 10)
    client = redis.Redis.from_url(redis_url)
    ttl = client.pttl(prefix + "k")
    # until the end of the next window (T0+120) from T0+30, plus 5 s of margin
    assert 94_000 < ttl <= 95_000
    limiter.settle("k", Limits(tpm=100), 10, 5, d.window)
    assert client.pttl(prefix + "k") > 0  # settling keeps the expiry
    limiter.settle("gone", Limits(tpm=100), 10, 5, d.window)
    assert not client.exists(prefix + "gone")  # and never creates a key
    client.close()
    limiter.close()


def test_redis_server_clock(redis_url):
    from proxy.policy.ratelimit_redis import RedisRateLimiter
    limiter = RedisRateLimiter(redis_url, prefix=f"test:{uuid.uuid4().hex}:")  # Redis TIME
    d = limiter.check("k", Limits(rpm=1, tpm=100), 40)
    assert d.allowed and abs(d.window - time.time() / 60) < 2
    limiter.settle("k", Limits(rpm=1, tpm=100), 40, 10)
    limiter.settle("k", Limits(rpm=1, tpm=100), 40, 10, d.window)
    refused = limiter.check("k", Limits(rpm=1, tpm=100), 0)
    assert not refused.allowed and refused.remaining_tokens >= 80
    limiter.close()


def test_redis_factory_and_unreachable_raises(redis_url):
    import redis
    from proxy.policy.ratelimit_redis import RedisRateLimiter
    limiter = make_limiter("ignored.db", redis_url)
    assert isinstance(limiter, RedisRateLimiter)
    limiter.close()
    port = redis_server._free_port()  # nothing listens there
    dead = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        dead.check("k", Limits(rpm=1), 0)
    with pytest.raises(redis.ConnectionError):
        dead.settle("k", Limits(tpm=1), 0, 5)
    dead.close()


# --- headers and parsing -------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.0004, "0s"), (0.02, "20ms"), (0.999, "999ms"), (1, "1s"), (1.5, "1.5s"),
    (8.64, "8.64s"), (59.9999, "1m0s"), (90.25, "1m30.25s"), (360, "6m0s"), (3600, "1h0m0s"),
    (3725.5, "1h2m5.5s")])
def test_go_durations(seconds, text):
    assert go_duration(seconds) == text


def test_headers():
    allowed = Decision(True, 60, 59, 1.0, 150000, 149984, 0.0064, None, None, 123)
    assert allowed.headers() == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6ms"}
    refused = Decision(False, 60, 0, 360.0, None, None, None, 0.2, "requests")
    assert refused.headers() == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s", "retry-after": "1"}
    assert Decision(False, 1, 0, 5.0, None, None, None, 36.0, "requests").headers()["retry-after"] == "36"
    assert Decision(False, 1, 0, 5.0, None, None, None, 36.1, "requests").headers()["retry-after"] == "37"


@pytest.mark.parametrize("text, limits", [
    ("60", Limits(rpm=60)), ("60/min", Limits(rpm=60)), ("60rpm", Limits(rpm=60)),
    (" 60 RPM ", Limits(rpm=60)), ("60/m", Limits(rpm=60)), ("100000tpm", Limits(tpm=100000)),
    ("60rpm,100000tpm", Limits(rpm=60, tpm=100000)), ("100_000tpm, 60", Limits(rpm=60, tpm=100000)),
    ("60 req/min, 5000 tokens/min", Limits(rpm=60, tpm=5000)), ("", Limits()), ("  ", Limits())])
def test_parse_rate(text, limits):
    assert parse_rate(text) == limits


@pytest.mark.parametrize("text, message", [
    ("abc", "bad rate limit 'abc'"), ("60/hour", "bad rate limit '60/hour'"),
    ("60rps", "bad rate limit"), ("-5", "bad rate limit '-5'"), ("1.5rpm", "bad rate limit"),
    ("0", "positive integer"), ("60rpm,30rpm", "rpm given twice"), ("60,", "bad rate limit ''"),
    ("60 tpm rpm", "bad rate limit"), ("1__0", "bad rate limit"), ("10_", "bad rate limit")])
def test_parse_rate_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_rate(text)


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(rpm=-1)
    with pytest.raises(ValueError):
        Limits(tpm=1.5)
    assert Limits(rpm=0).rpm == 0 and Limits().unlimited and not Limits(tpm=1).unlimited
