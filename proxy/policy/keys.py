"""API keys: the master key (GATEWAY_MASTER_KEY) and virtual keys it creates.

Secrets are stored as SHA-256 digests (they are 256-bit random tokens, so an
unsalted digest is safe) and compared in constant time; the secret is shown
once, when the key is created. Every request looks its key up in SQLite (a
read on an open connection, no cache), so a revoked key fails at once on every
worker.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Mapping

import orjson

from proxy.errors import AuthenticationError

KEY_PREFIX = "sk-sb-"


@dataclass(frozen=True)
class Principal:
    """Who is calling."""
    key_id: str | None = None
    name: str | None = None
    is_master: bool = False
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    monthly_budget_usd: float | None = None
    system_prompt: str | None = None
    metadata: Mapping = field(default_factory=dict)


OPEN = Principal(name="open")  # no master key configured: the gateway runs open
MASTER = Principal(name="master", is_master=True)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>` (any case of the scheme: voice agents send
    `bearer`), or an `api-key` / `x-api-key` header."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("api-key") or headers.get("x-api-key") or None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hint(secret: str) -> str:
    return f"{secret[:len(KEY_PREFIX) + 2]}…{secret[-4:]}"


_INVALID = AuthenticationError(
    "Incorrect API key provided. Send a valid key as `Authorization: Bearer <key>`.")
_MISSING = AuthenticationError(
    "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.", code="missing_api_key")


def _principal(row) -> Principal:
    loads = lambda v: orjson.loads(v) if v else None  # noqa: E731
    return Principal(key_id=row["id"], name=row["name"], models=tuple(loads(row["models"]) or ()),
                     providers=tuple(loads(row["providers"]) or ()), rpm_limit=row["rpm_limit"],
                     tpm_limit=row["tpm_limit"], monthly_budget_usd=row["monthly_budget_usd"],
                     system_prompt=row["system_prompt"], metadata=loads(row["metadata"]) or {})


class KeyStore:
    def __init__(self, connect, master_key: str | None):
        self._connect = connect
        self._master = digest(master_key) if master_key else None
        self._conn = None
        self._pid = None

    @property
    def enabled(self) -> bool:
        return self._master is not None

    def connection(self):
        """One read connection per worker process (created after the fork)."""
        if self._pid != os.getpid():
            self._conn, self._pid = self._connect(), os.getpid()
        return self._conn

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if self._master is None:
            return OPEN
        secret = presented_key(headers)
        if not secret:
            raise _MISSING
        presented = digest(secret)
        if hmac.compare_digest(presented, self._master):
            return MASTER
        row = self.connection().execute("SELECT * FROM api_keys WHERE key_hash = ?",
                                        (presented,)).fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], presented) or row["revoked_at"]:
            raise _INVALID
        if row["expires_at"] is not None and row["expires_at"] <= time.time():
            raise AuthenticationError("This API key has expired.", code="expired_api_key")
        return _principal(row)
