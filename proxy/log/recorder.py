"""The log as the rest of the gateway sees it: `started(record, route)`,
`record(entry)`, reads, close. Both writes are journaled before anything else
(proxy/log/journal.py), so a killed process loses no row."""
from __future__ import annotations

import atexit
import logging
import sqlite3

from proxy.log import db
from proxy.log.entry import Entry
from proxy.log.journal import Journal, directory_for
from proxy.log.pricing import Pricing
from proxy.log.retention import Retention
from proxy.log.rows import RowWriter
from proxy.log.writer import LogWriter

log = logging.getLogger("switchboard.log")


class Recorder:
    def __init__(self, database_url: str, pricing: Pricing, *, content_mode: str = "full",
                 max_queue: int = 100_000, retention: Retention | None = None, feed=None):
        self.path = db.path_from_url(database_url)
        self.pricing = pricing
        conn = db.connect(self.path)
        try:
            applied = db.migrate(conn)
        finally:
            conn.close()
        if applied:
            log.info("log database %s: applied %s", self.path, ", ".join(applied))
        self.journal = Journal(directory_for(self.path))
        recovered = self.journal.recover()
        self.writer = LogWriter(self.path, RowWriter(pricing, content_mode, feed), max_queue=max_queue,
                                maintenance=retention, committed=self.journal.settle).start()
        for entry in recovered:
            self._queue(entry)
        atexit.register(self.close)

    def started(self, record, route) -> None:
        """`record` (a RequestLog) is going upstream: if this process dies before it
        is answered, the next start still writes its row (interrupted)."""
        self.journal.started(record, route)

    def record(self, entry: Entry) -> None:
        self.journal.finished(entry)
        self._queue(entry)

    def _queue(self, entry: Entry) -> None:
        if not self.writer.put(entry):
            self.journal.forget(entry)

    def connection(self) -> sqlite3.Connection:
        """A connection for reads and admin writes (sessions, feedback), per request."""
        return db.connect(self.path)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        flushed = self.writer.close(timeout)
        self.journal.close()
        return flushed
