"""Master and virtual keys, budgets and system prompts, through the openai SDK
against the gateway under gunicorn with two workers."""
import os
import sqlite3
import subprocess
import sys
import time

import openai
import pytest
import requests

from tests.gateway import ROOT, Gateway

MASTER = "sk-master-test-0123456789abcdef"
HI = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_API_KEY": "sk-upstream-0123456789",
                       "OPENAI_BASE_URL": openai_fake.url + "/v1",
                       "DEFAULT_SYSTEM_PROMPT": "You are the gateway's default."}, workers=2)
    gateway.start(tmp_path_factory.mktemp("keys"))
    yield gateway
    gateway.stop()


def sdk(gw, key, **headers):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, default_headers=headers)


def admin(gw, method, path, **kw):
    return requests.request(method, gw.url + "/v1" + path, timeout=10,
                            headers={"Authorization": f"Bearer {MASTER}"}, **kw)


def new_key(gw, **fields):
    r = admin(gw, "POST", "/keys", json={"name": "test", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_calls_need_a_key(gw):
    r = requests.post(gw.url + "/v1/chat/completions", json={"model": "echo", "messages": HI}, timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(gw, "sk-wrong-key-000000").chat.completions.create(model="echo", messages=HI)
    assert info.value.body["code"] == "invalid_api_key" and "sk-wrong" not in str(info.value.body)
    r = requests.get(gw.url + "/v1/models", timeout=5)
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert requests.get(gw.url + "/health", timeout=5).status_code == 200  # probes stay open


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {MASTER}"}, {"Authorization": f"bearer {MASTER}"},
    {"Authorization": f"BEARER {MASTER}"}, {"api-key": MASTER}, {"x-api-key": MASTER}])
def test_key_headers(gw, headers):
    r = requests.post(gw.url + "/v1/chat/completions", headers=headers, timeout=10,
                      json={"model": "echo", "messages": HI})
    assert r.status_code == 200, r.text


def test_virtual_key_lifecycle(gw):
    created = new_key(gw, models=["echo", "gpt-4o-mini"], metadata={"team": "voice"})
    secret = created["key"]
    assert secret.startswith("sk-sb-") and created["id"].startswith("key_")
    assert sdk(gw, secret).chat.completions.create(model="echo", messages=HI).choices[0].message.content
    shown = admin(gw, "GET", f"/keys/{created['id']}").json()
    assert "key" not in shown and shown["metadata"] == {"team": "voice"}
    assert shown["spend_this_month_usd"] == 0
    assert all("key" not in k for k in admin(gw, "GET", "/keys").json()["data"])
    patched = admin(gw, "PATCH", f"/keys/{created['id']}", json={"name": "renamed", "rpm_limit": 5}).json()
    assert patched["name"] == "renamed" and patched["rpm_limit"] == 5
    # no secret in clear anywhere in the database
    conn = sqlite3.connect(gw.db_path)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert secret not in dump and MASTER not in dump
    # revoked: fails at once, whichever worker answers
    assert admin(gw, "DELETE", f"/keys/{created['id']}").json()["deleted"] is True
    for _ in range(6):
        with pytest.raises(openai.AuthenticationError):
            sdk(gw, secret).chat.completions.create(model="echo", messages=HI)
    assert secret not in gw.logs() and MASTER not in gw.logs()


def test_allowed_models_and_providers(gw):
    secret = new_key(gw, models=["echo"], providers=["echo"])["key"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gw, secret).chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
    assert info.value.body["code"] == "model_not_allowed"
    only_openai = new_key(gw, providers=["openai"])["key"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gw, only_openai).chat.completions.create(model="echo", messages=HI)
    assert info.value.body["code"] == "provider_not_allowed"
    assert sdk(gw, only_openai).chat.completions.create(model="openai/gpt-4o-mini", messages=HI).id


def test_a_key_cannot_manage_keys(gw):
    secret = new_key(gw)["key"]
    r = requests.post(gw.url + "/v1/keys", json={"name": "x"}, timeout=5,
                      headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403
    r = requests.get(gw.url + "/v1/keys", timeout=5, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403


def test_bad_key_fields_are_400(gw):
    for body, param in [({}, "name"), ({"name": "x", "rpm_limit": 0}, "rpm_limit"),
                        ({"name": "x", "models": "echo"}, "models"),
                        ({"name": "x", "expires_at": "someday"}, "expires_at")]:
        r = admin(gw, "POST", "/keys", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    assert admin(gw, "GET", "/keys/key_nope").status_code == 404


def test_expired_key(gw):
    secret = new_key(gw, expires_at=time.time() - 1)["key"]
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(gw, secret).chat.completions.create(model="echo", messages=HI)
    assert info.value.body["code"] == "expired_api_key"


def test_monthly_budget_stops_before_any_upstream_call(gw, openai_fake):
    created = new_key(gw, monthly_budget_usd=0.00001)
    client = sdk(gw, created["key"])
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)  # costs ~$0.000025
    deadline = time.time() + 5
    while admin(gw, "GET", f"/keys/{created['id']}").json()["spend_this_month_usd"] == 0:
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.1)  # past the per-worker spend cache
    calls = len(openai_fake.requests)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        assert info.value.body["code"] == "insufficient_quota"
    assert len(openai_fake.requests) == calls


def test_system_prompts(gw, openai_fake):
    sdk(gw, MASTER).chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
    assert openai_fake.last.json()["messages"][0] == {"role": "system",
                                                      "content": "You are the gateway's default."}
    keyed = new_key(gw, system_prompt="You speak for the voice team.")["key"]
    sdk(gw, keyed).chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
    assert openai_fake.last.json()["messages"][0]["content"] == "You speak for the voice team."
    own = [{"role": "system", "content": "Mine."}, *HI]
    sdk(gw, keyed).chat.completions.create(model="openai/gpt-4o-mini", messages=own)
    assert openai_fake.last.json()["messages"] == own


def test_global_monthly_limit(openai_fake, tmp_path):
    gw = Gateway({"OPENAI_API_KEY": "sk-upstream-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1",
                  "MONTHLY_COST_LIMIT": "0.00001"}).start(tmp_path)
    try:
        client = sdk(gw, "x")
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        time.sleep(1.2)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        assert info.value.body["type"] == "insufficient_quota"
    finally:
        gw.stop()


def _conf(env):
    return subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('gunicorn.conf.py')"],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)


def test_refuses_to_start_open_on_a_public_bind():
    clean = {"GATEWAY_MASTER_KEY": "", "GATEWAY_ALLOW_OPEN": ""}
    refused = _conf({**clean, "HOST": "0.0.0.0"})
    assert refused.returncode != 0 and "GATEWAY_MASTER_KEY" in refused.stderr
    assert _conf({**clean, "HOST": "0.0.0.0", "GATEWAY_ALLOW_OPEN": "1"}).returncode == 0
    assert _conf({**clean, "HOST": "0.0.0.0", "GATEWAY_MASTER_KEY": "k"}).returncode == 0
    assert _conf({**clean, "HOST": "127.0.0.1"}).returncode == 0


def test_open_mode_says_so(gateway):
    assert "GATEWAY_MASTER_KEY is not set" in gateway.logs()
