"""Creating, listing, changing and revoking virtual keys (master key only)."""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.errors import NotFound
from proxy.policy.keys import digest, hint, new_secret
from proxy.schema import validate_as

_JSON_FIELDS = ("models", "providers", "metadata")
_FIELDS = ("name", "models", "providers", "rpm_limit", "tpm_limit", "monthly_budget_usd",
           "expires_at", "system_prompt", "metadata")


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    models: list[str] | None = None
    providers: list[str] | None = None
    rpm_limit: int | None = Field(default=None, ge=1)
    tpm_limit: int | None = Field(default=None, ge=1)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    expires_at: datetime | float | None = None
    system_prompt: str | None = None
    metadata: dict | None = None

    @field_validator("expires_at")
    @classmethod
    def _timestamp(cls, value):
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
        return value


class KeyCreate(KeyUpdate):
    name: str = Field(min_length=1, max_length=200)


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts is not None else None


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


def create(conn, body: dict) -> dict:
    fields = validate_as(KeyCreate, body).model_dump()
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
    given = validate_as(KeyUpdate, body).model_dump(exclude_unset=True)
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
