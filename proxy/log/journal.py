"""The log's journal: what is not yet a row in SQLite survives a killed process.

Each process appends to its own files next to the database
(`<db>.journal/<pid>-<start ns>-<n>.jnl`) two records per request: `started`
when it reaches the upstream (ids, route, estimated prompt size), `finished`
with the whole Entry the writer thread will get. A record is one JSON line,
`[kind, [values]]`, the values named once by each file's first line (a dict of
field names would cost twice as much to build); a finished record is
`[kind, [values], n]` followed by the n bytes the client received, raw (as a
JSON string they would cost more to escape than everything else together). One
write per record, no fsync: the kernel's page cache outlives a process killed
by SIGKILL or the OOM killer, not a machine crash or a power cut.

Once the writer thread has committed a row, its records are settled; a file
rotated out is deleted when all its records are. A process holds an flock on
each of its files while it lives, so a file nobody holds belongs to a dead
process: the next process to start claims all of that process's files (the
same flock keeps two claimants apart), queues their entries for its writer, and
deletes the files once those rows are committed. Rows are INSERT OR IGNORE by
request id, so rows already committed stay as they were; a request that started
and never finished becomes a row with status 499 and error_type `interrupted`,
its prompt tokens estimated and priced like any estimated row (tokens_estimated
= 1), its completion tokens 0 (what was streamed died with the process).

Threads: `started`, `finished` and `forget` run on the request path only,
`settle` on the writer thread only. Each counter has one writing thread, and the
shared dicts and list change by single (atomic) operations.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import operator
import os
import time
from pathlib import Path

import orjson

from proxy import tokens
from proxy.log.entry import Entry

log = logging.getLogger("switchboard.log")

SUFFIX = ".jnl"
ROTATE_BYTES = 4 << 20  # small files are deleted sooner, most before the kernel writes them back
INTERRUPTED_STATUS = 499
INTERRUPTED = "interrupted"
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_MAX_PARTS = 512  # writev takes at most IOV_MAX (1024 on Linux) pieces
_FIELDS = frozenset(f.name for f in dataclasses.fields(Entry))
_FINISHED = tuple(sorted(_FIELDS - {"pieces"}))
_finished_values = operator.attrgetter(*_FINISHED)
_STARTED = ("request_id", "client_request_id", "created_at", "model_requested", "session_id",
            "api_key_id", "streamed", "provider", "model_upstream", "prompt_estimate")
_started_values = operator.attrgetter(  # a RequestLog's names for the first seven
    "request_id", "client_request_id", "created_at", "model_requested", "session_id", "api_key_id",
    "stream")
_LAYOUT = orjson.dumps({"started": _STARTED, "finished": _FINISHED}, option=_NEWLINE)


def directory_for(db_path: str) -> Path:
    return Path(f"{db_path}.journal")


class Segment:
    """Journal files settled as one: a live process's current file, or all the
    files of a dead process once claimed. Deleted when every record is settled."""
    __slots__ = ("paths", "fds", "size", "written", "settled")

    def __init__(self, paths: list[Path], fds: list[int]):
        self.paths, self.fds = paths, fds
        self.size = 0
        self.written = 0  # records that need a committed row (request path, or at claim)
        self.settled = 0  # of those, committed (writer thread)

    def done(self) -> bool:
        return self.settled >= self.written

    def delete(self) -> None:
        """Unlink before unlocking: no one can claim a file on its way out."""
        for path in self.paths:
            path.unlink(missing_ok=True)
        for fd in self.fds:
            os.close(fd)


class Journal:
    def __init__(self, directory: Path, rotate_bytes: int = ROTATE_BYTES):
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds prompts and answers
        self.prefix = f"{os.getpid()}-{time.time_ns()}"
        self.failures = 0
        self._count = 0
        self._open: dict[str, Segment] = {}  # request id -> where its `started` record is
        self._held: dict[int, tuple] = {}  # id(entry) -> the segments its row settles
        self._retired: list[Segment] = []  # no longer written; deleted once settled
        self._current: Segment | None = self._new_segment()

    # -- request path -------------------------------------------------------------
    def started(self, record, route) -> None:
        """`record` (a RequestLog) is about to be sent to `route`."""
        segment = self._append(_started, record, route)
        if segment is not None:
            self._open[record.request_id] = segment

    def finished(self, entry: Entry) -> None:
        segment = self._append(_finished, entry)
        self._held[id(entry)] = (segment, self._open.pop(entry.request_id, None))

    def forget(self, entry: Entry) -> None:
        """`entry` will not be written by this process (its queue was full): its
        records stay unsettled, so the next start writes its row."""
        self._held.pop(id(entry), None)

    def _append(self, build, *args) -> Segment | None:
        segment = self._current
        if segment is None:  # closed
            return None
        try:
            parts = build(*args)
        except Exception as exc:  # a value JSON cannot hold: never fail the request
            self._failed(exc)
            return None
        segment.written += 1
        # written at once, never batched: a record still in memory when the process
        # is killed would be lost (batching a loop turn's records measured no gain)
        self._write(segment, parts)
        return segment

    def _write(self, segment: Segment, parts) -> None:
        try:
            segment.size += _write(segment.fds[0], parts)
        except OSError as exc:  # a full disk: part of a record may be in, so on to a new file
            self._failed(exc)
            self._rotate()
            return
        if segment.size >= self.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        try:
            fresh = self._new_segment()
        except OSError as exc:
            self._failed(exc)
            return
        self._retired.append(self._current)
        self._current = fresh

    def _new_segment(self) -> Segment:
        """A new file, locked before it gets its name: a file a claimant can see is
        either held by its writer or dead."""
        self._count += 1
        path = self.directory / f"{self.prefix}-{self._count}{SUFFIX}"
        making = path.with_suffix(".new")
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, _LAYOUT)
            os.rename(making, path)
        except OSError:
            os.close(fd)
            making.unlink(missing_ok=True)
            raise
        return Segment([path], [fd])

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.error("log journal write failed (%d so far): %s", self.failures, exc)

    # -- writer thread --------------------------------------------------------------
    def settle(self, entries: list[Entry]) -> None:
        """These entries' rows are committed (or given up on): their records may go."""
        for entry in entries:
            for segment in self._held.pop(id(entry), ()):
                if segment is not None:
                    segment.settled += 1
        self._delete_settled()

    def _delete_settled(self) -> None:
        for segment in [s for s in self._retired if s.done()]:
            try:
                self._retired.remove(segment)  # atomic: close() may race the writer thread here
            except ValueError:
                continue
            segment.delete()

    def close(self) -> None:
        """After the writer's last flush: the files all settled go, the others stay
        (unlocked once this process exits) for the next start."""
        if self._current is not None:
            self._retired.append(self._current)
            self._current = None
        self._delete_settled()

    # -- start-up -------------------------------------------------------------------
    def recover(self) -> list[Entry]:
        """The entries of every dead process's journal, claimed until the writer has
        committed them (call before the writer starts, then queue them)."""
        entries = []
        for paths in _by_dead_process(self.directory, self.prefix):
            segment = _claim(paths)
            if segment is None:
                continue  # alive, or claimed by another process starting now
            found = replay(segment.paths)
            segment.written = len(found)
            for entry in found:
                self._held[id(entry)] = (segment,)
            self._retired.append(segment)
            entries += found
        if entries:
            log.info("log journal: %d rows recovered from processes that died", len(entries))
        self._delete_settled()  # claimed files with nothing in them
        return entries


def _write(fd: int, parts) -> int:
    """All of `parts` in one system call (a second only after a short write:
    a signal, or the disk filling up)."""
    if len(parts) > _MAX_PARTS:
        parts = (b"".join(parts),)
    done, size = os.writev(fd, parts), sum(map(len, parts))
    if done < size:
        rest = memoryview(b"".join(parts))
        while done < size:
            done += os.write(fd, rest[done:])
    return size


def _started(record, route) -> tuple[bytes]:
    values = (*_started_values(record), route.provider.name, route.model,
              tokens.estimate_messages(record.messages or []))
    return (orjson.dumps(("started", values), option=_NEWLINE),)


def _finished(entry: Entry) -> tuple[bytes, bytes]:
    raw = b"".join(entry.pieces)
    return orjson.dumps(("finished", _finished_values(entry), len(raw)), option=_NEWLINE), raw


def _by_dead_process(directory: Path, own_prefix: str) -> list[list[Path]]:
    """Journal files by the process that wrote them (its prefix), oldest first,
    without this process's own."""
    by_process: dict[str, list[Path]] = {}
    for path in directory.glob(f"*{SUFFIX}"):
        prefix, _, number = path.stem.rpartition("-")
        if prefix != own_prefix and number.isdigit():
            by_process.setdefault(prefix, []).append(path)
    return [sorted(paths, key=lambda p: int(p.stem.rpartition("-")[2]))
            for _, paths in sorted(by_process.items())]


def _claim(paths: list[Path]) -> Segment | None:
    """All of one process's files, locked, or None when any is held: its writer
    lives, or another process claimed it first (both try the files in the same
    order, so they never split a process between them)."""
    held, fds = [], []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # deleted meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            for other in (fd, *fds):
                os.close(other)
            return None
        if os.fstat(fd).st_nlink == 0:  # deleted by the claimant before us
            os.close(fd)
            continue
        held.append(path)
        fds.append(fd)
    return Segment(held, fds)


def replay(paths: list[Path]) -> list[Entry]:
    """One dead process's entries: the finished ones, then an interrupted row for
    each request that started and did not finish."""
    finished: list[Entry] = []
    started: dict[str, Entry] = {}
    for path in paths:
        for kind, fields in _records(path):
            try:
                if kind == "finished":
                    finished.append(_entry(fields))
                elif kind == "started":
                    entry = interrupted(fields)
                    started[entry.request_id] = entry
            except TypeError as exc:  # fields an Entry does not take: a worker still boots
                log.warning("log journal %s: a record skipped: %s", path.name, exc)
    answered = {entry.request_id for entry in finished}
    return finished + [entry for request_id, entry in started.items() if request_id not in answered]


def _records(path: Path):
    """(kind, fields) of each whole record in a file, a finished record's raw bytes
    as its `pieces`; stops at a record cut short by the kill."""
    data = path.read_bytes()
    at = data.find(b"\n") + 1
    layout = _json(data[:at])
    while at < len(data) and isinstance(layout, dict):
        end = data.find(b"\n", at)
        try:
            kind, values, *raw = _json(data[at:end]) if end >= 0 else ()
            fields = dict(zip(layout[kind], values))
            stop = end + 1 + (raw[0] if raw else 0)
        except (ValueError, TypeError, KeyError):  # unpacking what is not a record
            break
        if not end < stop <= len(data):
            break
        if raw:
            fields["pieces"] = [data[end + 1:stop]]
        yield kind, fields
        at = stop
    if at < len(data):
        log.warning("log journal %s: a record cut short skipped", path.name)


def _json(line: bytes):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _entry(fields: dict) -> Entry:
    return Entry(**{name: value for name, value in fields.items() if name in _FIELDS})


def interrupted(started: dict) -> Entry:
    """The row of a request the process died serving: its prompt was sent upstream
    (and is billed), what came back is unknown."""
    known = {name: value for name, value in started.items() if name in _FIELDS}
    return Entry(**known, status=INTERRUPTED_STATUS, error_type=INTERRUPTED)
