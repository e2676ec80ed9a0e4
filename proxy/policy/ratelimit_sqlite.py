"""The SQLite rate limiter: one row per subject in its own small database file
(never the log database, so the log writer's batches never hold our lock).

Each check is one `BEGIN IMMEDIATE` transaction (read the row, decide, write
it back), which serializes checks across every worker process on the machine.
WAL mode keeps a check to tens of microseconds. `synchronous = OFF`, because
with NORMAL every WAL checkpoint fsyncs inside some request's check (stalls of
~10 ms measured): the counts are disposable, a crashed process loses nothing it
committed, and only an OS crash or power loss could damage the file (delete it;
it is recreated). The busy timeout is short because under gevent a waiting check
blocks the worker's loop (SQLite's busy handler sleeps in steps of 1 ms and up). Rows of windows that no longer count are deleted about once a minute
per process, inside a check's transaction.
"""
from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path

from proxy.log.db import write_transaction
from proxy.policy.ratelimit import (WINDOW_S, Clock, Counts, Decision, Limits, decide, refusal,
                                    roll, unlimited_decision)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ratelimit (
    subject TEXT PRIMARY KEY,
    window INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    prev_requests INTEGER NOT NULL,
    prev_tokens INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ratelimit_window ON ratelimit (window)
"""

_UPSERT = ("INSERT INTO ratelimit VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
           "window = excluded.window, requests = excluded.requests, tokens = excluded.tokens, "
           "prev_requests = excluded.prev_requests, prev_tokens = excluded.prev_tokens")

_SETTLE = ("UPDATE ratelimit SET "
           "tokens = CASE WHEN window = :w THEN max(0, tokens + :d) ELSE tokens END, "
           "prev_tokens = CASE WHEN window = :w + 1 THEN max(0, prev_tokens + :d) "
           "ELSE prev_tokens END "
           "WHERE subject = :s AND window IN (:w, :w + 1)")


class SqliteRateLimiter:
    def __init__(self, path: str, *, now: Clock = time.time, window_s: int = WINDOW_S,
                 busy_timeout_ms: int = 500, open_timeout_s: float = 10.0,
                 cleanup_interval_s: float = 60.0):
        self.path = path
        self._now = now
        self.window_s = int(window_s)
        self.busy_timeout_ms = busy_timeout_ms
        self.open_timeout_s = open_timeout_s
        self.cleanup_interval_s = cleanup_interval_s
        self._next_cleanup = 0.0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    def _conn(self) -> sqlite3.Connection:
        """This process's connection (a connection inherited over fork is never used)."""
        if self._db is None or self._pid != os.getpid():
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # generous while opening (many workers create the file at once), short after
            db = sqlite3.connect(self.path, timeout=self.open_timeout_s, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = OFF")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._db, self._pid = db, os.getpid()
        return self._db

    def check(self, subject: str, limits: Limits, tokens: int) -> Decision:
        if limits.unlimited:
            return unlimited_decision()
        cost = max(0, int(tokens))
        now = self._now()
        with self._lock:
            with write_transaction(self._conn()) as db:
                row = db.execute("SELECT window, requests, tokens, prev_requests, prev_tokens "
                                 "FROM ratelimit WHERE subject = ?", (subject,)).fetchone()
                counts, weight = roll(Counts(*row) if row else None, now, self.window_s)
                reason = refusal(counts, weight, limits, cost)
                if reason is None:
                    counts = Counts(counts.window, counts.requests + 1, counts.tokens + cost,
                                    counts.prev_requests, counts.prev_tokens)
                    db.execute(_UPSERT, (subject, counts.window, counts.requests,
                                         counts.tokens, counts.prev_requests,
                                         counts.prev_tokens))
                if now >= self._next_cleanup:
                    self._next_cleanup = now + self.cleanup_interval_s
                    db.execute("DELETE FROM ratelimit WHERE window < ?", (counts.window - 1,))
        return decide(counts, weight, now, limits, cost, reason, self.window_s)

    def settle(self, subject: str, limits: Limits, estimated: int, actual: int,
               window: int | None = None) -> None:
        delta = int(actual) - int(estimated)
        if limits.tpm is None or delta == 0:
            return
        if window is None:
            window = math.floor(self._now() / self.window_s)
        with self._lock:
            # one statement: atomic on its own
            self._conn().execute(_SETTLE, {"w": window, "d": delta, "s": subject})

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None
