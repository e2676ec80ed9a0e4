"""No number a client sends breaks the rate limiter (issue 12, item 5).

A request's token estimate is bounded by its model's context window before it
reaches the limiter's arithmetic or its store, and a failing store, whatever the
exception, follows RATE_LIMIT_ON_STORE_FAILURE (allow, or refuse with 503):
never a 500. End to end against the real gateway under gunicorn, and unit tests
of the gate with a store that fails on demand."""
from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
import redis
import requests

from providers.base import Call
from proxy.errors import GatewayError
from proxy.policy.gate import UNKNOWN_CONTEXT, RateGate
from proxy.policy.keys import Principal
from proxy.policy.ratelimit import Decision, Limits
from tests.gateway import free_port
from tests.policy import redis_server

HUGE = 9223372036854775777  # 30 below SQLite's largest integer: the request
HI = [{"role": "user", "content": "hi there"}]
ECHO_CONTEXT = 1_000_000  # proxy/model_catalog.toml


def chat(gw, **fields) -> requests.Response:
    return requests.post(gw.url + "/v1/chat/completions", timeout=10,
                         json={"model": "echo", "messages": HI, **fields})


def assert_normal_requests_served(gw, n: int) -> None:
    for _ in range(n):
        answer = chat(gw)
        assert answer.status_code == 200, answer.text


# --- end to end: the requests ------------------------------------------------

def test_a_huge_max_tokens_leaves_an_rpm_limit_working(start_gateway):
    gw = start_gateway({"RATE_LIMIT": "5rpm"})
    for field in ("max_tokens", "max_completion_tokens"):
        answer = chat(gw, **{field: HUGE})
        assert answer.status_code in (200, 400), answer.text  # served, or refused by the schema
    assert_normal_requests_served(gw, 3)  # the 500s of the issue came here


def test_a_huge_max_tokens_is_estimated_at_most_the_context_window(start_gateway):
    # echo's context window fits in the limit, so the request fits too: it can never
    # use more tokens than its model holds
    gw = start_gateway({"RATE_LIMIT": f"5rpm,{ECHO_CONTEXT + 500_000}tpm"})
    answer = chat(gw, max_tokens=HUGE)
    assert answer.status_code in (200, 400), answer.text
    assert_normal_requests_served(gw, 3)


@pytest.mark.skipif(not redis_server.available(), reason="redis-server not installed")
def test_a_huge_max_tokens_is_bounded_with_redis_too(start_gateway):
    with redis_server.RedisServer() as server:
        gw = start_gateway({"RATE_LIMIT": f"5rpm,{ECHO_CONTEXT + 500_000}tpm",
                            "REDIS_URL": server.url})
        answer = chat(gw, max_tokens=HUGE)
        assert answer.status_code in (200, 400), answer.text
        assert_normal_requests_served(gw, 3)


# --- end to end: a broken store --------------------------------------------------------

def broken_sqlite_store(tmp_path, name: str) -> dict:
    """A gateway whose limit store cannot be opened: a directory where its file goes."""
    (tmp_path / f"{name}.ratelimit.db").mkdir()
    return {"DATABASE_URL": f"sqlite:///{tmp_path / name}.db", "RATE_LIMIT": "5rpm"}


def assert_refused_as_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "rate_limit_store_unavailable"
    assert "RATE_LIMIT_ON_STORE_FAILURE" in error["message"]


def test_a_broken_sqlite_store_follows_the_setting(start_gateway, tmp_path):
    allowing = start_gateway(broken_sqlite_store(tmp_path, "allow"))  # the default
    answer = chat(allowing)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "5"
    refusing = start_gateway({**broken_sqlite_store(tmp_path, "refuse"),
                              "RATE_LIMIT_ON_STORE_FAILURE": "refuse"})
    assert_refused_as_unavailable(chat(refusing))


def test_an_unreachable_redis_follows_the_setting(start_gateway):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    refusing = start_gateway({"RATE_LIMIT": "5rpm", "REDIS_URL": closed,
                              "RATE_LIMIT_ON_STORE_FAILURE": "refuse"})
    assert_refused_as_unavailable(chat(refusing))
    allowing = start_gateway({"RATE_LIMIT": "5rpm", "REDIS_URL": closed})
    assert chat(allowing).status_code == 200


def test_an_unknown_store_failure_setting_stops_the_start(start_gateway):
    with pytest.raises(RuntimeError, match="RATE_LIMIT_ON_STORE_FAILURE"):
        start_gateway({"RATE_LIMIT": "5rpm", "RATE_LIMIT_ON_STORE_FAILURE": "maybe"})


# --- the gate, with stores that record or fail -----------------------------------------

class Recording:
    """A store that admits everything and remembers what it was given."""

    def __init__(self):
        self.checked, self.settled = [], []

    def check(self, subject, limits, tokens):
        self.checked.append(tokens)
        return Decision(True, limits.rpm, 1, 1.0, limits.tpm, 1, 1.0, None, None, window=7)

    def settle(self, subject, limits, estimated, actual, window=None):
        self.settled.append(actual)


class Failing:
    """A store whose every call raises `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def check(self, *args):
        raise self.error

    settle = check


SIZE = 100  # tokens: the estimate of every body here, 400 bytes long


def admit(gate, model="echo", **fields) -> tuple[dict, SimpleNamespace]:
    call = Call(body={"model": model, "messages": HI, **fields}, raw=b" " * (4 * SIZE),
                model=model, stream=False, include_usage=False, request_id="r")
    record = SimpleNamespace(on_finish=[], pieces=[], stream=False)
    return gate.admit(Principal(name="open"), call, record), record


FACTS = {"echo": {"context_length": ECHO_CONTEXT}, "gpt-4o": {"context_length": 128_000}}


@pytest.mark.parametrize("model, window", [
    ("gpt-4o", 128_000), ("openai/gpt-4o", 128_000), ("echo", ECHO_CONTEXT),
    ("house-model-nobody-knows", UNKNOWN_CONTEXT)])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_an_estimate_is_at_most_the_context_window(model, window, field):
    store = Recording()
    gate = RateGate(store, Limits(rpm=5, tpm=10**12), model_facts=FACTS)
    for value in (HUGE, 10**400, float("inf")):
        admit(gate, model, **{field: value})
    assert store.checked == [window] * 3


@pytest.mark.parametrize("value", [True, "12", None, float("nan"), -5, [3], {"n": 1}])
def test_numbers_the_schema_should_refuse_add_nothing(value):
    store = Recording()
    gate = RateGate(store, Limits(rpm=5), model_facts=FACTS)
    admit(gate, max_tokens=value)
    assert store.checked == [SIZE]  # only the request's own size


def test_a_sane_max_tokens_is_counted_as_given():
    store = Recording()
    gate = RateGate(store, Limits(tpm=10**6), model_facts=FACTS)
    admit(gate, max_tokens=1000)
    admit(gate, max_completion_tokens=1000.0, max_tokens=5)  # a float the schema let through
    assert store.checked == [SIZE + 1000, SIZE + 1000]


@pytest.mark.parametrize("error", [
    OverflowError("Python int too large to convert to SQLite INTEGER"),
    ValueError("invalid literal for int() with base 10: '9.2233720368548e+18'"),
    sqlite3.OperationalError("database is locked"), redis.ConnectionError("refused"),
    TypeError("unsupported operand")])
def test_any_store_failure_follows_the_setting(error):
    allowing = RateGate(Failing(error), Limits(rpm=5, tpm=100))
    headers, _ = admit(allowing)
    assert headers == {"x-ratelimit-limit-requests": "5", "x-ratelimit-limit-tokens": "100"}
    assert allowing.store_failures.count == 1
    refusing = RateGate(Failing(error), Limits(rpm=5), on_store_failure="refuse")
    with pytest.raises(GatewayError) as refused:
        admit(refusing)
    assert refused.value.status == 503 and refused.value.code == "rate_limit_store_unavailable"


def test_a_failing_settle_is_counted_not_raised():
    gate = RateGate(Failing(OverflowError("too large")), Limits(tpm=100))
    gate.limiter = Recording()  # admitted by a working store, which then fails
    _, record = admit(gate)
    gate.limiter = Failing(OverflowError("too large"))
    record.pieces = [b'{"usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}']
    record.on_finish[0](record)
    assert gate.store_failures.count == 1


@pytest.mark.parametrize("total, settled", [(HUGE, [UNKNOWN_CONTEXT]), (12, [12]),
                                            ("12", []), (None, []), (-3, [0])])
def test_usage_from_an_upstream_is_bounded_too(total, settled):
    import orjson
    store = Recording()
    gate = RateGate(store, Limits(tpm=10**6), model_facts=FACTS)
    _, record = admit(gate)
    record.pieces = [orjson.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                             "total_tokens": total}})]
    record.on_finish[0](record)
    assert store.settled == settled
