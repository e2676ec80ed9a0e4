"""The log as the rest of the gateway sees it: `record(entry)`, reads, close."""
from __future__ import annotations

import atexit
import logging
import sqlite3

from proxy.log import db
from proxy.log.entry import Entry
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
        self.writer = LogWriter(self.path, RowWriter(pricing, content_mode, feed), max_queue=max_queue,
                                maintenance=retention).start()
        atexit.register(self.close)

    def record(self, entry: Entry) -> None:
        self.writer.put(entry)

    def connection(self) -> sqlite3.Connection:
        """A connection for reads and admin writes (sessions, feedback), per request."""
        return db.connect(self.path)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        return self.writer.close(timeout)
