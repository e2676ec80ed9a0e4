"""The background log writer: an in-process queue drained by a real OS thread
that writes batches, so a slow or locked database never delays a response.

Under gunicorn's gevent worker `threading` is monkey-patched into greenlets,
and a greenlet doing SQLite work would block the event loop; the writer
therefore starts on an unpatched OS thread and sleeps with the unpatched sleep.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque

from proxy.log import db
from proxy.log.entry import Entry
from proxy.log.rows import RowWriter

log = logging.getLogger("switchboard.log")


def _original(module: str, name: str):
    try:
        from gevent import monkey
        if monkey.is_module_patched(module):
            return monkey.get_original(module, name)
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
    return getattr(__import__(module), name)


class LogWriter:
    def __init__(self, path: str, rows: RowWriter, *, max_queue: int = 100_000, batch: int = 500,
                 interval: float = 0.05, maintenance=None, committed=None):
        self.path = path
        self.rows = rows
        self.max_queue = max_queue
        self.batch = batch
        self.interval = interval
        self.maintenance = maintenance
        self.committed = committed  # told of each batch once written or given up on
        self._queue: deque[Entry] = deque()
        self._pending: list[Entry] = []  # a batch that failed, kept for the next try
        self.dropped = 0
        self.written = 0
        self._stopping = False
        self._stopped = False
        self._busy = False
        self._sleep = _original("time", "sleep")

    # -- hot path side ----------------------------------------------------
    def put(self, entry: Entry) -> bool:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("log queue full: %d rows dropped so far", self.dropped)
            return False
        self._queue.append(entry)
        return True

    def depth(self) -> int:
        return len(self._queue) + len(self._pending)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> "LogWriter":
        _original("_thread", "start_new_thread")(self._run, ())
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is written. `time.sleep` is gevent's in a
        worker, so a view that flushes pauses only its own request."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._pending or self._busy) and time.monotonic() < deadline:
            if self._stopped:
                break
            time.sleep(0.01)
        return not (self._queue or self._pending or self._busy)

    def close(self, timeout: float = 10.0) -> bool:
        flushed = self.flush(timeout)
        self._stopping = True
        return flushed

    # -- writer thread --------------------------------------------------------
    def _run(self) -> None:
        conn = db.connect(self.path)
        last_maintenance = time.monotonic()
        try:
            while not (self._stopping and not self._queue and not self._pending):
                if not self._write_some(conn):
                    self._sleep(self.interval)
                if self.maintenance and time.monotonic() - last_maintenance > self.maintenance.every:
                    last_maintenance = time.monotonic()
                    self._guard(self.maintenance.run, conn)
        finally:
            self._stopped = True
            conn.close()

    def _write_some(self, conn: sqlite3.Connection) -> bool:
        self._busy = True  # before draining, so flush() never sees an empty queue mid-batch
        batch, self._pending = self._pending, []
        while self._queue and len(batch) < self.batch:
            batch.append(self._queue.popleft())
        if not batch:
            self._busy = False
            return False
        try:
            self.rows.write(conn, batch)
            self.written += len(batch)
            self._settle(batch)
        except sqlite3.OperationalError as exc:  # locked or busy: keep the rows, try again
            log.warning("log write failed, will retry: %s", exc)
            self._pending = batch
            self._sleep(self.interval * 4)
        except Exception:
            log.exception("log rows could not be written; retrying one by one")
            self._one_by_one(conn, batch)
        finally:
            self._busy = False
        return True

    def _one_by_one(self, conn, batch: list[Entry]) -> None:
        for entry in batch:
            try:
                self.rows.write(conn, [entry])
                self.written += 1
            except Exception:
                self.dropped += 1
                log.exception("log row dropped (request %s)", entry.request_id)
        self._settle(batch)  # a row that failed alone would fail again: its journal line may go

    def _settle(self, batch: list[Entry]) -> None:
        if self.committed is None:
            return
        try:
            self.committed(batch)
        except Exception:  # the journal keeps its files; the rows are written all the same
            log.exception("log journal could not be settled")

    @staticmethod
    def _guard(fn, conn) -> None:
        try:
            fn(conn)
        except Exception:
            log.exception("log maintenance failed")
