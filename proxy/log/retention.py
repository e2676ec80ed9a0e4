"""Background pruning: rows older than LOG_RETENTION_DAYS, and the oldest rows
past LOG_MAX_ROWS; message bodies no row refers to any more go with them."""
from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.log.db import write_transaction

_ORPHANS = """
DELETE FROM contents WHERE hash NOT IN (
    SELECT value FROM completions, json_each(completions.prompt_refs)
    UNION SELECT answer_ref FROM completions WHERE answer_ref IS NOT NULL
    UNION SELECT content_hash FROM session_messages)
"""


@dataclass(frozen=True)
class Retention:
    days: float | None = None
    max_rows: int | None = None
    every: float = 300.0  # seconds between runs

    def run(self, conn) -> int:
        removed = 0
        with write_transaction(conn):
            if self.days:
                removed += conn.execute("DELETE FROM completions WHERE created_at < ? AND session_id IS NULL",
                                        (time.time() - self.days * 86400,)).rowcount
                removed += conn.execute("DELETE FROM sessions WHERE updated_at < ?",
                                        (time.time() - self.days * 86400,)).rowcount
            if self.max_rows:
                removed += conn.execute(
                    "DELETE FROM completions WHERE id <= (SELECT id FROM completions ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?)", (self.max_rows,)).rowcount
            if removed:
                conn.execute(_ORPHANS)
        return removed
