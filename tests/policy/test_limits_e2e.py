"""Rate limits through the openai SDK: exact across two gunicorn workers (SQLite),
exact across two gateways sharing Redis, OpenAI's headers on every response."""
import threading

import openai
import pytest
import requests

from tests.gateway import Gateway
from tests.policy import redis_server

MASTER = "sk-master-limits-0123456789"
HI = [{"role": "user", "content": "hi there"}]


def burst(url: str, key: str, n: int) -> list:
    """n calls at once; each result is the raw response or the SDK's exception."""
    results = [None] * n

    def call(i):
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        try:
            results[i] = client.chat.completions.with_raw_response.create(model="echo", messages=HI)
        except openai.APIStatusError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_key_limit_of_n_per_minute_admits_exactly_n_across_two_workers(tmp_path):
    gw = Gateway({"GATEWAY_MASTER_KEY": MASTER}, workers=2).start(tmp_path)
    try:
        created = requests.post(gw.url + "/v1/keys", json={"name": "voice", "rpm_limit": 7},
                                headers={"Authorization": f"Bearer {MASTER}"}, timeout=10).json()
        results = burst(gw.url, created["key"], 20)
        admitted = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(admitted) == 7 and len(refused) == 13
        assert all(isinstance(r, openai.RateLimitError) for r in refused)
        error = refused[0]
        assert error.body["code"] == "rate_limit_exceeded" and error.body["type"] == "requests"
        assert int(error.response.headers["retry-after"]) >= 1
        assert error.response.headers["x-ratelimit-limit-requests"] == "7"
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
        assert remaining == list(range(7))
        assert all(r.headers["x-ratelimit-limit-requests"] == "7" for r in admitted)
        assert all(r.headers["x-ratelimit-reset-requests"] for r in admitted)
        # the master key has no limit of its own
        assert not any(isinstance(r, Exception) for r in burst(gw.url, MASTER, 10))
    finally:
        gw.stop()


def test_default_limit_and_token_limits(tmp_path):
    gw = Gateway({"RATE_LIMIT": "100rpm,300tpm"}).start(tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="echo", messages=HI)
        assert raw.headers["x-ratelimit-limit-requests"] == "100"
        assert raw.headers["x-ratelimit-limit-tokens"] == "300"
        with pytest.raises(openai.RateLimitError) as info:  # estimated from size + max_tokens
            client.chat.completions.create(model="echo", messages=HI, max_tokens=1000)
        assert info.value.body["type"] == "tokens"
        # settled with the real usage: small echo calls keep fitting
        for _ in range(5):
            client.chat.completions.create(model="echo", messages=HI, max_tokens=20)
    finally:
        gw.stop()


@pytest.mark.skipif(not redis_server.available(), reason="redis-server not installed")
def test_two_gateways_share_a_limit_through_redis(tmp_path):
    with redis_server.RedisServer() as redis:
        env = {"RATE_LIMIT": "9rpm", "REDIS_URL": redis.url}
        first = Gateway(env).start(tmp_path)
        second = Gateway(env).start(tmp_path)
        try:
            results = burst(first.url, "x", 8) + burst(second.url, "x", 8)
            assert sum(not isinstance(r, Exception) for r in results) == 9
            assert sum(isinstance(r, openai.RateLimitError) for r in results) == 7
        finally:
            first.stop()
            second.stop()
