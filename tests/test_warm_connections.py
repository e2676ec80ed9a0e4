"""Warm upstream connections (proxy/warm.py): the real gateway under gunicorn, a
TLS upstream on 127.0.0.1 with a self-signed certificate (tests/fakes/tls_upstream.py)
that counts accepts and handshakes, and the `openai` SDK as the client.

"A request paid no handshake" is shown by the connection it came on: one whose
handshake the upstream had finished before the request was sent."""
from __future__ import annotations

import time

import gevent
import openai
import pytest
from geventhttpclient.connectionpool import SSLConnectionPool

from proxy import warm
from proxy.upstream import HttpPool
from tests.fakes.tls_upstream import Sink, TlsUpstream, self_signed

KEY = "sk-warm-test-key-0123456789abcdef"
DEADLINE_S = 20


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_fake(certificate):
    with TlsUpstream(*certificate) as fake:
        yield fake


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.05)


def provider_table(name: str, url: str, **options) -> str:
    lines = [f"[providers.{name}]", 'type = "openai"', f'base_url = "{url}/v1"',
             'api_key_env = "WARM_TEST_KEY"']
    lines += [f"{key} = {value}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def start(start_gateway, tmp_path, certificate, tables: str):
    config = tmp_path / "gateway.toml"
    config.write_text('default_provider = "tls"\n' + tables)
    return start_gateway({"GATEWAY_CONFIG": str(config), "WARM_TEST_KEY": KEY,
                          "SSL_CERT_FILE": str(certificate[0])})


def ask(gw, fake: TlsUpstream):
    """One chat completion through the gateway; the upstream connection it came on."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    sent_at = time.monotonic()
    answer = client.chat.completions.create(model="gpt-4o-mini",
                                            messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    connection = fake.served_on[-1]
    assert connection.handshake_done < sent_at, "the request waited for a new connection"
    return connection


def test_connections_are_warm_at_start_and_reopened_after_the_upstream_closes_them(
        start_gateway, tmp_path, certificate, tls_fake):
    gw = start(start_gateway, tmp_path, certificate,
               provider_table("tls", tls_fake.url, warm_connections=2, warm_idle_s=300))
    wait_for(lambda: len(tls_fake.connections) == 2, "two warm connections at worker start")
    assert tls_fake.accepts == 2 and not tls_fake.requests  # before any request

    ask(gw, tls_fake)
    assert tls_fake.accepts == len(tls_fake.connections) == 2  # the request added none

    tls_fake.close_connections()  # as an upstream closes idle keep-alive connections
    wait_for(lambda: len(tls_fake.connections) == 4 and len(tls_fake.open_connections()) == 2,
             "two new warm connections for the two the upstream closed")
    connection = ask(gw, tls_fake)
    assert connection.number > 2
    assert tls_fake.accepts == len(tls_fake.connections) == 4  # again none added


def test_a_connection_idle_past_the_limit_is_replaced_before_a_request_needs_it(
        start_gateway, tmp_path, certificate, tls_fake):
    gw = start(start_gateway, tmp_path, certificate,
               provider_table("tls", tls_fake.url, warm_connections=1, warm_idle_s=0.5))
    wait_for(lambda: len(tls_fake.connections) >= 3 and tls_fake.connections[0].closed
             and tls_fake.connections[1].closed,
             "the gateway closes its idle connections and opens new ones")
    assert not tls_fake.requests  # no request involved: replaced for being idle
    assert ask(gw, tls_fake).number >= 3


def test_an_upstream_that_is_down_delays_neither_start_nor_other_providers(
        start_gateway, tmp_path, certificate, tls_fake):
    silent, refusing = Sink(hold=True), Sink(hold=False)
    try:
        gw = start(start_gateway, tmp_path, certificate,
                   provider_table("tls", tls_fake.url, warm_connections=1)
                   + provider_table("silent", silent.url, warm_connections=1, connect_timeout=600)
                   + provider_table("refusing", refusing.url, warm_connections=1))
        wait_for(lambda: silent.accepts == 1 and tls_fake.connections,
                 "the silent upstream's handshake hangs while tls is warmed")
        ask(gw, tls_fake)
        assert gw.proc.poll() is None

        wait_for(lambda: refusing.accepts >= 3, "the refusing upstream is tried again")
        logs = gw.logs()
        assert logs.count("could not open a warm connection to refusing") == 1  # once a minute
        assert "could not open a warm connection to silent" not in logs  # still waiting
        assert KEY not in logs
    finally:
        silent.close()
        refusing.close()


# --- the pool in-process: what the warmer opens, keeps and closes -----------------

def test_the_warmer_opens_only_what_is_missing_besides_connections_in_use(
        certificate, tls_fake, monkeypatch):
    monkeypatch.setitem(SSLConnectionPool.default_options, "ca_certs", str(certificate[0]))
    pool = HttpPool()
    url = tls_fake.url + "/v1/chat/completions"
    target = warm.Target(["tls"], pool.client_for(url, pool.timeouts), count=2, idle_s=300)
    try:
        warm.refresh(target)
        warm.refresh(target)
        assert tls_fake.accepts == 2  # topped up once, then nothing missing

        body = b'{"model": "slow-stream", "stream": true, "messages": []}'
        held = pool.request("POST", url, headers={}, body=body)  # a stream not read: in use
        warm.refresh(target)
        assert tls_fake.accepts == 3  # two idle again, beside the one the request holds
        held.close()  # unfinished: closed, not pooled
        gevent.sleep(0)
        warm.refresh(target)
        assert tls_fake.accepts == 3
    finally:
        pool.close()


def test_a_loopback_upstream_is_not_warmed_unless_configured():
    class Provider:
        warm_connections = None
    assert warm.wanted(Provider(), "http://127.0.0.1:11434/v1") == 0
    assert warm.wanted(Provider(), "http://localhost:8001/v1") == 0
    assert warm.wanted(Provider(), "https://api.openai.com/v1") == 1
    Provider.warm_connections = 3
    assert warm.wanted(Provider(), "http://127.0.0.1:11434/v1") == 3
