"""Helpers for the sidecar-log tests: a gateway of their own, SQLite reads, polling."""
from __future__ import annotations

import sqlite3
import time

import openai
import requests

from tests.gateway import Gateway


def start_module_gateway(openai_fake, tmp_path_factory, name: str) -> Gateway:
    """Echo by default, the fake OpenAI upstream as `openai`, an empty log."""
    gw = Gateway({"OPENAI_API_KEY": "sk-test-gateway-key-0123456789",
                  "OPENAI_BASE_URL": openai_fake.url + "/v1", "UPSTREAM_TIMEOUT": "3"})
    return gw.start(tmp_path_factory.mktemp(name))


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0)


def rows(gw: Gateway, sql: str, params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(gw.db_path, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def execute(gw: Gateway, sql: str, params=()) -> None:
    conn = sqlite3.connect(gw.db_path, timeout=10)
    try:
        with conn:
            (conn.executemany if params and isinstance(params[0], tuple) else conn.execute)(sql, params)
    finally:
        conn.close()


def poll(fetch, until=bool, timeout: float = 3.0, step: float = 0.05):
    """Call `fetch` until `until(result)` holds (rows are written asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(step)


def poll_rows(gw: Gateway, sql: str, params: tuple = (), count: int = 1) -> list[dict]:
    """The query's rows once there are at least `count` of them (or after ~3 s)."""
    return poll(lambda: rows(gw, sql, params), until=lambda r: len(r) >= count)


def api(gw: Gateway, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, gw.url + path, timeout=10, **kwargs)
