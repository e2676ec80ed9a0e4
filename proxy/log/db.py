"""The sidecar SQLite database: connections and append-only named migrations."""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from proxy.log.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000


def path_from_url(url: str) -> str:
    """`sqlite:///./gateway.db` -> `./gateway.db`; `sqlite:////abs/path.db` -> `/abs/path.db`."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"DATABASE_URL must be sqlite:///<path>, got {url.split(':', 1)[0]}:…")
    return url.removeprefix("sqlite:///") or "gateway.db"


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL. The switch needs the file to itself and SQLite
    does not wait for it (busy_timeout does not apply): workers that start together
    on a new database find it locked while the first one migrates, so retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE (take the write lock now, not at the first write), COMMIT,
    or ROLLBACK on any exception (connections here are in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; safe to
    run from several workers at once (the first to take the write lock applies)."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    applied = []
    for name, sql in MIGRATIONS:
        with write_transaction(conn):
            done = conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone()
            if not done:
                for statement in filter(str.strip, sql.split(";\n")):
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
    return applied
