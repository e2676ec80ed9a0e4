"""Turn queued entries into rows, one transaction per batch (writer thread only)."""
from __future__ import annotations

import sqlite3

import orjson

from proxy import tokens
from proxy.log import content, extract
from proxy.log.costs import usage_tokens
from proxy.log.db import write_transaction
from proxy.log.entry import Entry
from proxy.metrics import NONE, Written

_COLUMNS = ("request_id", "completion_id", "created_at", "session_id", "api_key_id", "provider",
            "model_requested", "model_answered", "status", "error_type", "finish_reason",
            "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
            "tokens_estimated", "cost_usd", "latency_ms", "ttft_ms", "streamed",
            "client_disconnected", "prompt_refs", "answer_ref", "attempt", "client_request_id",
            "trace_id")
_INSERT = (f"INSERT OR IGNORE INTO completions ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_COLUMNS))})")


class RowWriter:
    def __init__(self, pricing, content_mode: str = "full", feed=None):
        self.pricing = pricing
        self.content_mode = content_mode
        self.feed = feed  # called with a metrics.Written per row written

    def write(self, conn: sqlite3.Connection, entries: list[Entry]) -> None:
        with write_transaction(conn):
            for entry in entries:
                self._write_one(conn, entry)

    def _store(self, conn, message: dict) -> str | None:
        body = content.prepare(message, self.content_mode)
        if body is None:
            return None
        digest = content.content_hash(body)
        conn.execute("INSERT OR IGNORE INTO contents (hash, body) VALUES (?, ?)", (digest, body))
        return digest

    def _write_one(self, conn, entry: Entry) -> None:
        summary = extract.summarise(entry.pieces, entry.streamed)
        usage, estimated = self._usage(entry, summary)
        model = summary.model or entry.model_upstream
        cost = self.pricing.cost(model, *usage) if usage[0] is not None and model else None
        messages = entry.messages or []
        refs = [self._store(conn, m) for m in messages]
        answer = summary.answer_message()
        answer_ref = self._store(conn, answer) if answer else None
        session_id = entry.session_id
        if session_id:
            self._ensure_session(conn, entry)
            if not self._same_owner(conn, entry):
                session_id = None  # another key's session: the row stays the caller's alone
        row = (entry.request_id, summary.completion_id, entry.created_at, session_id,
               entry.api_key_id, entry.provider, entry.model_requested, model, entry.status,
               entry.error_type or summary.error_type, summary.finish_reason, *usage,
               int(estimated), cost, entry.latency_ms, entry.ttft_ms, int(entry.streamed),
               int(entry.client_disconnected),
               orjson.dumps(refs).decode() if self.content_mode != "none" else None, answer_ref,
               entry.attempt, entry.client_request_id, entry.trace_id)
        cursor = conn.execute(_INSERT, row)
        if session_id and cursor.rowcount:
            self._append_turn(conn, entry, cursor.lastrowid, messages, refs, answer, answer_ref)
        if self.feed is not None and cursor.rowcount:
            self.feed(Written(entry.provider or NONE,
                              entry.model_upstream or entry.model_requested or NONE,
                              entry.status, entry.error_type or summary.error_type,
                              _seconds(entry.latency_ms), _seconds(entry.ttft_ms),
                              _token_kinds(usage), cost, bool(entry.attempt)))

    def _usage(self, entry: Entry, summary: extract.Summary):
        if summary.usage:
            return usage_tokens(summary.usage), False
        if entry.prompt_estimate is not None:  # interrupted: the prompt was sent, the answer is lost
            return (entry.prompt_estimate, 0, 0, 0), True
        if entry.status >= 400 or not entry.messages:
            return (None, None, None, None), False
        # no usage from upstream (cut-off stream, provider without usage): estimate it
        return (tokens.estimate_messages(entry.messages), tokens.estimate_text(summary.text or ""),
                0, 0), True

    @staticmethod
    def _ensure_session(conn, entry: Entry) -> None:
        conn.execute("INSERT OR IGNORE INTO sessions (id, created_at, updated_at, model, api_key_id) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (entry.session_id, entry.created_at, entry.created_at, entry.model_requested,
                      entry.api_key_id))

    @staticmethod
    def _same_owner(conn, entry: Entry) -> bool:
        """A key writes only into its own sessions (the master key, or an open
        gateway, into any), as the session API lets it see only its own."""
        owner = conn.execute("SELECT api_key_id FROM sessions WHERE id = ?",
                             (entry.session_id,)).fetchone()
        return entry.api_key_id is None or owner is None or owner[0] == entry.api_key_id

    def _append_turn(self, conn, entry, row_id, messages, refs, answer, answer_ref) -> None:
        """Append to the session what it has not stored yet: the request's messages
        past the common prefix with the stored history (for a turn the gateway built
        from that history, just its last message), then the answer."""
        stored = [r["content_hash"] for r in conn.execute(
            "SELECT content_hash FROM session_messages WHERE session_id = ? ORDER BY position",
            (entry.session_id,))]
        common = len(refs) - 1 if entry.session_turn else 0
        while common < min(len(stored), len(refs)) and stored[common] == refs[common]:
            common += 1
        new = [(m["role"], ref) for m, ref in zip(messages[common:], refs[common:]) if ref]
        if answer_ref:
            new.append(("assistant", answer_ref))
        position = len(stored)
        for role, ref in new:
            conn.execute("INSERT INTO session_messages (session_id, position, role, content_hash, "
                         "completion_row, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (entry.session_id, position, role, ref, row_id, entry.created_at))
            position += 1
        conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?",
                     (entry.created_at, entry.session_id))


def _seconds(ms: float | None) -> float | None:
    return ms / 1000 if ms is not None else None


def _token_kinds(usage) -> tuple[tuple[str, int], ...]:
    return tuple((kind, count) for kind, count in zip(("input", "output", "cached", "reasoning"), usage)
                 if count)
