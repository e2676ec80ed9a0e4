"""Creating, listing, changing and revoking virtual keys (master key only)."""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

import orjson

from proxy import params
from proxy.errors import InvalidRequest, NotFound
from proxy.policy.keys import digest, hint, new_secret

_JSON_FIELDS = ("models", "providers", "metadata")
# the fields a client may set, each with its check (see proxy/params.py); null
# clears a field, except `name`, which every key has
CHECKS = {
    "name": params.text(params.MAX_NAME, min_chars=1),
    "models": params.string_list(),
    "providers": params.string_list(),
    "rpm_limit": params.integer(1, params.MAX_LIMIT),
    "tpm_limit": params.integer(1, params.MAX_LIMIT),
    "monthly_budget_usd": params.number(0, params.MAX_USD),
    "expires_at": params.timestamp,
    "system_prompt": params.text(params.MAX_PROMPT),
    "metadata": params.json_object,
}
_FIELDS = tuple(CHECKS)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    # a row stored before the checks may hold any float: show it clamped, so the
    # key can still be listed and repaired
    clamped = min(max(ts, params.TIME_MIN), params.TIME_MAX)
    return datetime.fromtimestamp(clamped, timezone.utc).isoformat()


def view(row) -> dict:
    out = {"id": row["id"], "object": "api_key", "name": row["name"], "key_hint": row["key_hint"]}
    for name in _FIELDS[1:]:
        value = row[name]
        out[name] = orjson.loads(value) if name in _JSON_FIELDS and value else value
    out["expires_at"] = _iso(row["expires_at"])
    out["created_at"] = _iso(row["created_at"])
    out["revoked"] = row["revoked_at"] is not None
    return out


def _column(name: str, value):
    return orjson.dumps(value).decode() if name in _JSON_FIELDS and value is not None else value


def _checked(body: dict) -> dict:
    fields = params.checked(body, CHECKS)
    if "name" in fields and fields["name"] is None:
        raise InvalidRequest("`name` cannot be null.", param="name", code="invalid_value")
    return fields


def create(conn, body: dict) -> dict:
    if body.get("name") is None:
        raise InvalidRequest("Missing required parameter: 'name'.", param="name",
                             code="missing_required_parameter")
    fields = dict.fromkeys(_FIELDS) | _checked(body)
    key_id, secret = "key_" + secrets.token_hex(8), new_secret()
    conn.execute(
        f"INSERT INTO api_keys (id, key_hash, key_hint, created_at, {', '.join(_FIELDS)}) "
        f"VALUES (?, ?, ?, ?, {', '.join('?' * len(_FIELDS))})",
        (key_id, digest(secret), hint(secret), time.time(),
         *(_column(name, fields[name]) for name in _FIELDS)))
    return {**get(conn, key_id), "key": secret}


def get(conn, key_id: str) -> dict:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"No API key with id `{key_id}`.", param="id")
    return view(row)


def list_keys(conn) -> list[dict]:
    return [view(r) for r in conn.execute("SELECT * FROM api_keys ORDER BY created_at DESC")]


def update(conn, key_id: str, body: dict) -> dict:
    given = _checked(body)
    get(conn, key_id)
    if given:
        assignments = ", ".join(f"{name} = ?" for name in given)
        conn.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?",
                     (*(_column(n, v) for n, v in given.items()), key_id))
    return get(conn, key_id)


def revoke(conn, key_id: str) -> dict:
    get(conn, key_id)
    conn.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                 (time.time(), key_id))
    return {"id": key_id, "object": "api_key.deleted", "deleted": True}
