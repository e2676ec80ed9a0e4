"""Admin and analytics input never breaks the gateway (issue 12, item 6).

Out-of-range numbers, times, ids and metadata on /v1/keys, /v1/sessions,
/v1/feedback and /v1/usage are a 400 in OpenAI's shape naming the field; a
refused call writes nothing, and GET /v1/keys still answers afterwards."""
import sqlite3

import pytest
import requests

from tests.gateway import Gateway
from tests.log import rows

MASTER = "sk-master-admin-input-0123456789"
U64_MAX = 18446744073709551615
DEEP = {"a": "[" * 1000 + "]" * 1000}  # spliced in as raw JSON: 1,000 levels


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER}).start(tmp_path_factory.mktemp("admin-input"))
    yield gateway
    gateway.stop()


def call(gw, method, path, body=None, raw=None, **kw):
    data = raw.encode() if raw is not None else None
    return requests.request(method, gw.url + path, json=body, data=data, timeout=10,
                            headers={"Authorization": f"Bearer {MASTER}",
                                     "Content-Type": "application/json"}, **kw)


def deep_metadata(levels: int) -> str:
    return '{"metadata": {"a": ' + "[" * levels + "]" * levels + "}}"


def stored(gw) -> dict:
    """Everything a refused call must leave alone."""
    return {table: rows(gw, f"SELECT * FROM {table} ORDER BY rowid")
            for table in ("api_keys", "sessions", "feedback")}


def assert_refused(gw, response, param: str, before: dict) -> None:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert stored(gw) == before
    assert call(gw, "GET", "/v1/keys").status_code == 200


@pytest.fixture(scope="module")
def key_id(gw):
    created = call(gw, "POST", "/v1/keys", {"name": "target", "rpm_limit": 5})
    assert created.status_code == 201, created.text
    return created.json()["id"]


@pytest.fixture(scope="module")
def session_id(gw):
    created = call(gw, "POST", "/v1/sessions", {"title": "target", "metadata": {"a": 1}})
    assert created.status_code == 201, created.text
    return created.json()["id"]


KEY_FIELDS = [
    ({"expires_at": 1e308}, "expires_at"),
    ({"expires_at": -1e308}, "expires_at"),
    ({"expires_at": 1e20}, "expires_at"),
    ({"expires_at": -1}, "expires_at"),
    ({"expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
    ({"expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at"),
    ({"expires_at": True}, "expires_at"),
    ({"rpm_limit": U64_MAX}, "rpm_limit"),
    ({"rpm_limit": 2**63 - 1}, "rpm_limit"),
    ({"rpm_limit": True}, "rpm_limit"),
    ({"rpm_limit": 5.0}, "rpm_limit"),
    ({"tpm_limit": U64_MAX}, "tpm_limit"),
    ({"tpm_limit": "100"}, "tpm_limit"),
    ({"monthly_budget_usd": 1e308}, "monthly_budget_usd"),
    ({"monthly_budget_usd": U64_MAX}, "monthly_budget_usd"),
    ({"monthly_budget_usd": True}, "monthly_budget_usd"),
    ({"models": ["m" * 257]}, "models[0]"),
    ({"providers": ["p"] * 257}, "providers"),
    ({"system_prompt": "s" * 200_001}, "system_prompt"),
    ({"metadata": {"big": "x" * 17_000}}, "metadata"),
]


@pytest.mark.parametrize("field, param", KEY_FIELDS)
def test_create_key_refuses_out_of_range_fields(gw, field, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "POST", "/v1/keys", {"name": "bad", **field}), param, before)


def test_create_key_refuses_deep_metadata(gw):
    before = stored(gw)
    raw = deep_metadata(1000).replace("{", '{"name": "deep", ', 1)
    assert_refused(gw, call(gw, "POST", "/v1/keys", raw=raw), "metadata", before)


@pytest.mark.parametrize("field, param", KEY_FIELDS + [({"name": None}, "name")])
def test_patch_key_refuses_out_of_range_fields_and_changes_nothing(gw, key_id, field, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "PATCH", f"/v1/keys/{key_id}", field), param, before)
    assert call(gw, "GET", f"/v1/keys/{key_id}").json()["rpm_limit"] == 5


def test_bounds_are_inclusive(gw):
    """The largest accepted values are stored and served back; one past is refused."""
    edge = {"name": "edge", "rpm_limit": 10**12, "tpm_limit": 10**12,
            "monthly_budget_usd": 10**12, "expires_at": "9999-12-31T23:59:59Z",
            "metadata": {"a": [[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]}}  # 16 levels with the object
    created = call(gw, "POST", "/v1/keys", edge)
    assert created.status_code == 201, created.text
    shown = call(gw, "GET", f"/v1/keys/{created.json()['id']}").json()
    assert shown["expires_at"] == "9999-12-31T23:59:59+00:00" and shown["rpm_limit"] == 10**12
    assert shown["metadata"] == edge["metadata"]
    for field in ({"rpm_limit": 10**12 + 1}, {"monthly_budget_usd": 10**12 + 0.5},
                  {"metadata": {"a": [edge["metadata"]["a"]]}}):
        before = stored(gw)
        response = call(gw, "POST", "/v1/keys", {**edge, **field})
        assert_refused(gw, response, next(iter(field)), before)


def test_a_stored_out_of_range_expiry_does_not_break_the_key_list(gw):
    """A row written before these checks (expires_at 1e308) is shown clamped to
    year 9999, so listing and repairing it still work."""
    created = call(gw, "POST", "/v1/keys", {"name": "legacy"}).json()
    conn = sqlite3.connect(gw.db_path, timeout=10)
    with conn:
        conn.execute("UPDATE api_keys SET expires_at = 1e308 WHERE id = ?", (created["id"],))
    conn.close()
    listed = call(gw, "GET", "/v1/keys")
    assert listed.status_code == 200, listed.text
    shown = next(k for k in listed.json()["data"] if k["id"] == created["id"])
    assert shown["expires_at"] == "9999-12-31T23:59:59+00:00"
    repaired = call(gw, "PATCH", f"/v1/keys/{created['id']}", {"expires_at": None})
    assert repaired.status_code == 200 and repaired.json()["expires_at"] is None
    answer = requests.get(gw.url + "/v1/models", timeout=10,
                          headers={"Authorization": f"Bearer {created['key']}"})
    assert answer.status_code == 200, answer.text


SESSION_FIELDS = [
    ({"title": "t" * 201}, "title"),
    ({"model": "m" * 257}, "model"),
    ({"model": "echo\r\nx-injected: 1"}, "model"),
    ({"system_prompt": "s" * 200_001}, "system_prompt"),
    ({"metadata": {"big": "x" * 17_000}}, "metadata"),
]


@pytest.mark.parametrize("field, param", SESSION_FIELDS)
def test_create_session_refuses_out_of_range_fields(gw, field, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "POST", "/v1/sessions", field), param, before)


def test_sessions_refuse_deep_metadata(gw, session_id):
    before = stored(gw)
    for method, path, levels in [("POST", "/v1/sessions", 1000),
                                 ("PATCH", f"/v1/sessions/{session_id}", 1000),
                                 ("POST", "/v1/sessions", 16)]:  # 17 with the object itself
        assert_refused(gw, call(gw, method, path, raw=deep_metadata(levels)), "metadata", before)


@pytest.mark.parametrize("field, param", SESSION_FIELDS)
def test_patch_session_refuses_out_of_range_fields(gw, session_id, field, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "PATCH", f"/v1/sessions/{session_id}", field), param, before)
    assert call(gw, "GET", f"/v1/sessions/{session_id}").json()["metadata"] == {"a": 1}


def test_list_sessions_refuses_a_cursor_with_a_boolean_time(gw):
    before = stored(gw)
    forged = {"cursor": "W3RydWUsInMiXQ=="}  # [true,"s"]
    assert_refused(gw, call(gw, "GET", "/v1/sessions", params=forged), "cursor", before)


@pytest.mark.parametrize("body, param", [
    ({"message_id": U64_MAX, "rating": 1}, "message_id"),
    ({"message_id": 2**63, "rating": 1}, "message_id"),
    ({"message_id": "²", "rating": 1}, "message_id"),
    ({"message_id": "١٢", "rating": 1}, "message_id"),  # Arabic-Indic digits: not an id
    ({"message_id": "9" * 5000, "rating": 1}, "message_id"),
    ({"completion_id": "c" * 257, "rating": 1}, "completion_id"),
])
def test_feedback_refuses_out_of_range_ids(gw, body, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "POST", "/v1/feedback", body), param, before)


@pytest.mark.parametrize("params, param", [
    ({"to": "1e20"}, "to"), ({"from": "-1e20"}, "from"), ({"to": "9999-12-31"}, "to"),
    ({"from": "0001-01-01"}, "from"), ({"from": "-1"}, "from"),
    ({"to": "9999-12-31T23:59:59-14:00"}, "to"), ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
])
def test_usage_refuses_times_out_of_range(gw, params, param):
    before = stored(gw)
    assert_refused(gw, call(gw, "GET", "/v1/usage", params=params), param, before)
