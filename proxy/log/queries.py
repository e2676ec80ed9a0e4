"""Reads and admin writes on the sidecar log: sessions, feedback, usage.

Every value is a bound parameter; the only SQL built from a request is a
`group_by` expression picked from the fixed `GROUPS` table by key."""
from __future__ import annotations

import math
import sqlite3
import time

import orjson

from proxy.log.db import write_transaction

# group_by key -> SQL expression over `completions c` (never request text)
GROUPS = {
    "day": "strftime('%Y-%m-%d', c.created_at, 'unixepoch')",
    "hour": "strftime('%Y-%m-%dT%H:00:00Z', c.created_at, 'unixepoch')",
    "minute": "strftime('%Y-%m-%dT%H:%M:00Z', c.created_at, 'unixepoch')",
    "model": "coalesce(c.model_answered, c.model_requested)",
    "model_requested": "c.model_requested",
    "provider": "c.provider",
    "key": "c.api_key_id",
    "session": "c.session_id",
}
TIME_GROUPS = ("day", "hour", "minute")  # groups that name a UTC time bucket, shown in order
FEEDBACK_TYPES = ("thumbs_up", "thumbs_down", "flag")
EDITABLE = ("title", "model", "system_prompt", "metadata")  # session columns a client may set

_SESSION_TOTALS = """
SELECT s.*,
  (SELECT count(*) FROM session_messages m WHERE m.session_id = s.id) AS message_count,
  (SELECT coalesce(sum(coalesce(c.prompt_tokens, 0) + coalesce(c.completion_tokens, 0)), 0)
     FROM completions c WHERE c.session_id = s.id) AS total_tokens,
  (SELECT coalesce(sum(c.cost_usd), 0) FROM completions c WHERE c.session_id = s.id)
     AS total_cost_usd
FROM sessions s"""

_MESSAGES = """
SELECT m.id, m.position, m.role, m.created_at, m.completion_row, b.body, c.request_id,
       c.completion_id, c.model_answered, c.model_requested, c.provider, c.status,
       c.finish_reason, c.prompt_tokens, c.completion_tokens, c.cached_tokens,
       c.reasoning_tokens, c.tokens_estimated, c.cost_usd, c.latency_ms, c.ttft_ms
FROM session_messages m JOIN contents b ON b.hash = m.content_hash
LEFT JOIN completions c ON c.id = m.completion_row
WHERE m.session_id = ? ORDER BY m.position"""

_FEEDBACK = """
SELECT f.*, c.completion_id, c.request_id, coalesce(c.session_id, m.session_id) AS session_id
FROM feedback f LEFT JOIN completions c ON c.id = f.completion_row
LEFT JOIN session_messages m ON m.id = f.message_id"""
_SESSION_FEEDBACK = _FEEDBACK + """
WHERE f.message_id IN (SELECT id FROM session_messages WHERE session_id = ?)
   OR f.completion_row IN (SELECT id FROM completions WHERE session_id = ?) ORDER BY f.id"""

# `requests` and `errors` count calls to the gateway (a request's failed tries that a
# retry or fallback followed are rows of their own, `attempt` > 0); `attempts` counts
# calls to providers: every row that names one holds a try
_USAGE = """
SELECT {expr} AS grp, coalesce(sum(c.attempt = 0), 0) AS requests,
  coalesce(sum(c.attempt = 0 AND c.status >= 400), 0) AS errors,
  coalesce(sum(c.provider IS NOT NULL), 0) AS attempts,
  coalesce(sum(c.prompt_tokens), 0) AS prompt_tokens,
  coalesce(sum(c.completion_tokens), 0) AS completion_tokens,
  coalesce(sum(c.cached_tokens), 0) AS cached_tokens,
  coalesce(sum(c.reasoning_tokens), 0) AS reasoning_tokens,
  coalesce(sum(c.cost_usd), 0) AS cost_usd,
  coalesce(sum(c.cost_usd IS NULL AND c.status < 400 AND c.attempt = 0), 0) AS cost_unknown_requests
FROM completions c WHERE c.created_at >= ? AND c.created_at < ?{owner} GROUP BY grp"""
_TIMINGS = ("SELECT {expr} AS grp, c.latency_ms, c.ttft_ms FROM completions c "
            "WHERE c.created_at >= ? AND c.created_at < ?{owner} AND c.status < 400")
_TIMED = ("latency_ms", "ttft_ms")  # the _TIMINGS columns, in order
_USAGE_FEEDBACK = ("SELECT {expr} AS grp, f.feedback_type, f.rating FROM feedback f "
                   "JOIN completions c ON c.id = f.completion_row "
                   "WHERE c.created_at >= ? AND c.created_at < ?{owner}")
_SUMMED = ("requests", "errors", "attempts", "prompt_tokens", "completion_tokens", "cached_tokens",
           "reasoning_tokens", "cost_usd", "cost_unknown_requests")


# a session search: a substring of its id, title or model (instr, not LIKE: nothing
# in the text is a wildcard)
_SEARCH = ("(instr(lower(s.id), lower(?)) > 0 "
           "OR instr(lower(coalesce(s.title, '')), lower(?)) > 0 "
           "OR instr(lower(coalesce(s.model, '')), lower(?)) > 0)")
# a feedback row's owner: the session's key for feedback on a message, else the
# completion's (as POST /v1/feedback decides who may give it)
_FEEDBACK_OWNER = "CASE WHEN f.message_id IS NOT NULL THEN s.api_key_id ELSE c.api_key_id END"


# -- sessions -------------------------------------------------------------------
def session_row(conn: sqlite3.Connection, session_id: str) -> sqlite3.Row | None:
    return conn.execute(_SESSION_TOTALS + " WHERE s.id = ?", (session_id,)).fetchone()


def create_session(conn, session_id: str, fields: dict, owner: str | None = None) -> bool:
    """False when the id is taken. `owner`: the virtual key it belongs to."""
    now = time.time()
    cursor = conn.execute(
        "INSERT OR IGNORE INTO sessions (id, created_at, updated_at, title, model, system_prompt, "
        "metadata, api_key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, now, now, fields.get("title"), fields.get("model"),
         fields.get("system_prompt"), _json(fields.get("metadata")), owner))
    return cursor.rowcount == 1


def update_session(conn, session_id: str, fields: dict) -> bool:
    """Set the given columns, of `EDITABLE` only."""
    values = {k: _json(v) if k == "metadata" else v for k, v in fields.items() if k in EDITABLE}
    values["updated_at"] = time.time()
    assignments = ", ".join(f"{column} = ?" for column in values)
    cursor = conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?",
                          (*values.values(), session_id))
    return cursor.rowcount == 1


def delete_session(conn, session_id: str) -> bool:
    """The session's conversation: its messages, feedback and the bodies nothing
    else refers to any more. Its completions stay, detached and without content:
    they are the accounting that budgets, limits and usage read, which deleting a
    conversation must never erase."""
    with write_transaction(conn):
        hashes = _session_hashes(conn, session_id)
        conn.execute("DELETE FROM feedback WHERE completion_row IN "
                     "(SELECT id FROM completions WHERE session_id = ?)", (session_id,))
        conn.execute("UPDATE completions SET session_id = NULL, prompt_refs = NULL, "
                     "answer_ref = NULL WHERE session_id = ?", (session_id,))
        deleted = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
        if deleted and hashes:
            _delete_orphans(conn, hashes)
    return deleted == 1


def _session_hashes(conn, session_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT content_hash FROM session_messages WHERE session_id = ? "
        "UNION SELECT answer_ref FROM completions WHERE session_id = ? AND answer_ref IS NOT NULL "
        "UNION SELECT j.value FROM completions c, json_each(c.prompt_refs) j WHERE c.session_id = ?",
        (session_id, session_id, session_id))
    return [r[0] for r in rows if r[0]]


def _delete_orphans(conn, hashes: list[str]) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (hash TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.doomed")
    conn.executemany("INSERT OR IGNORE INTO temp.doomed VALUES (?)", [(h,) for h in hashes])
    conn.execute("""
DELETE FROM contents WHERE hash IN (SELECT hash FROM temp.doomed)
  AND hash NOT IN (SELECT content_hash FROM session_messages)
  AND hash NOT IN (SELECT answer_ref FROM completions WHERE answer_ref IS NOT NULL)
  AND hash NOT IN (SELECT j.value FROM completions c, json_each(c.prompt_refs) j
                   WHERE j.value IN (SELECT hash FROM temp.doomed))""")
    conn.execute("DELETE FROM temp.doomed")


def list_sessions(conn, limit: int, before: tuple[float, str] | None = None,
                  owner: str | None = None, search: str | None = None) -> list[sqlite3.Row]:
    """Newest first by updated_at (id breaks ties); `before` is the last (updated_at,
    id) of the previous page. One row more than `limit` tells there is more.
    `owner`: only that virtual key's sessions. `search`: only sessions whose id,
    title or model holds it (ignoring ASCII case; a plain substring, no wildcards)."""
    clauses, params = [], []
    if before is not None:
        clauses.append("(s.updated_at, s.id) < (?, ?)")
        params.extend(before)
    if owner is not None:
        clauses.append("s.api_key_id = ?")
        params.append(owner)
    if search:
        clauses.append(_SEARCH)
        params.extend([search] * _SEARCH.count("?"))
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return conn.execute(_SESSION_TOTALS + where + " ORDER BY s.updated_at DESC, s.id DESC LIMIT ?",
                        (*params, limit + 1)).fetchall()


def get_session(conn, session_id: str) -> tuple[sqlite3.Row, list[sqlite3.Row], list[sqlite3.Row]] | None:
    """(session with totals, its messages with their completions, its feedback)."""
    session = session_row(conn, session_id)
    if session is None:
        return None
    messages = conn.execute(_MESSAGES, (session_id,)).fetchall()
    feedback = conn.execute(_SESSION_FEEDBACK, (session_id, session_id)).fetchall()
    return session, messages, feedback


def session_history(conn, session_id: str) -> list[dict]:
    """The stored messages of a session, in order, as message objects."""
    rows = conn.execute("SELECT b.body FROM session_messages m JOIN contents b "
                        "ON b.hash = m.content_hash WHERE m.session_id = ? ORDER BY m.position",
                        (session_id,))
    return [orjson.loads(r["body"]) for r in rows]


# -- feedback ---------------------------------------------------------------------
def find_completion(conn, completion_id: str) -> sqlite3.Row | None:
    """The newest completion the client received this id for (ids from an
    upstream are not guaranteed unique)."""
    return conn.execute("SELECT id, completion_id, request_id, session_id, api_key_id FROM completions "
                        "WHERE completion_id = ? ORDER BY id DESC LIMIT 1",
                        (completion_id,)).fetchone()


def find_message(conn, message_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT m.id, m.session_id, m.role, m.completion_row, s.api_key_id "
                        "FROM session_messages m JOIN sessions s ON s.id = m.session_id "
                        "WHERE m.id = ?", (message_id,)).fetchone()


def add_feedback(conn, *, completion_row: int | None, message_id: int | None,
                 feedback_type: str | None, rating: int | None, comment: str | None) -> sqlite3.Row:
    cursor = conn.execute(
        "INSERT INTO feedback (completion_row, message_id, feedback_type, rating, comment, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (completion_row, message_id, feedback_type, rating, comment, time.time()))
    return conn.execute(_FEEDBACK + " WHERE f.id = ?", (cursor.lastrowid,)).fetchone()


def list_feedback(conn, limit: int, before: int | None = None, owner: str | None = None,
                  feedback_type: str | None = None) -> list[sqlite3.Row]:
    """Newest first (by id); `before` is the last id of the previous page. One row
    more than `limit` tells there is more. `owner`: only that virtual key's."""
    clauses, params = [], []
    for clause, value in (("f.id < ?", before), (f"{_FEEDBACK_OWNER} = ?", owner),
                          ("f.feedback_type = ?", feedback_type)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return conn.execute(_FEEDBACK + " LEFT JOIN sessions s ON s.id = m.session_id" + where
                        + " ORDER BY f.id DESC LIMIT ?", (*params, limit + 1)).fetchall()


# -- usage -------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def usage_report(conn, group_by: str, start: float, end: float,
                 owner: str | None = None) -> tuple[list[dict], dict]:
    """Per group and in total over completions created in [start, end) (of one
    key's calls when `owner` is its id)."""
    sql = {"expr": GROUPS[group_by], "owner": " AND c.api_key_id = ?" if owner else ""}
    params = (start, end, owner) if owner else (start, end)
    groups = {r["grp"]: {k: r[k] for k in _SUMMED}
              for r in conn.execute(_USAGE.format(**sql), params)}
    timings: dict = {}
    for r in conn.execute(_TIMINGS.format(**sql), params):
        timings.setdefault(r["grp"], []).append((r["latency_ms"], r["ttft_ms"]))
    feedback: dict = {}
    for r in conn.execute(_USAGE_FEEDBACK.format(**sql), params):
        feedback.setdefault(r["grp"], []).append((r["feedback_type"], r["rating"]))
    data = [{"group": key, **_finish(sums, timings.get(key, []), feedback.get(key, []))}
            for key, sums in groups.items()]
    totals = {k: sum(g[k] for g in groups.values()) for k in _SUMMED}
    totals = _finish(totals, [t for ts in timings.values() for t in ts],
                     [f for fs in feedback.values() for f in fs])
    return data, totals


def _finish(sums: dict, timings: list[tuple], feedback: list[tuple]) -> dict:
    out = dict(sums)
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["cost_usd"] = round(out["cost_usd"], 10)
    for i, name in enumerate(_TIMED):
        out[name] = _percentiles([t[i] for t in timings if t[i] is not None])
    out["feedback"] = _feedback_counts(feedback)
    return out


def _percentiles(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "count": len(values)}


def _feedback_counts(feedback: list[tuple]) -> dict:
    counts = {kind: sum(1 for t, _ in feedback if t == kind) for kind in FEEDBACK_TYPES}
    ratings = [r for _, r in feedback if r is not None]
    counts["ratings"] = len(ratings)
    counts["rating_avg"] = round(sum(ratings) / len(ratings), 4) if ratings else None
    return counts


def _json(value) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
