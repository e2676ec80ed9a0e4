"""The log's journal: what is not yet a row in SQLite survives a killed process.

Each process appends to its own files next to the database
(`<db>.journal/<pid>-<start ns>-<n>.jnl`) two records per request: `started`
when it reaches the upstream (ids, route, estimated prompt size), `finished`
with the whole Entry the writer thread will get. A record is one JSON line,
`[kind, [values]]`, the values named once by each file's first line (a dict of
field names would cost twice as much to build); a finished record is
`[kind, [values], n]` followed by the n bytes the client received, raw (as a
JSON string they would cost more to escape than everything else together).

A file is made at its full size (its disk space reserved, so a full disk fails
there and not in a write) and mapped into memory: a record is copied into the
shared mapping, no system call, no fsync. The mapping's pages are the kernel's
page cache, which outlives a process killed by SIGKILL or the OOM killer, not a
machine crash or a power cut. A record's first byte is copied last, and the
unwritten rest of a file is zeros: a record cut by the kill is never seen.

Once the writer thread has committed a row, its records are settled. A file
whose records are all settled is zeroed and kept for reuse (a few per process):
first touches of a new mapping's pages (page faults) cost more than everything
else the journal does. Replaying a file zeroed halfway gives rows already
committed, which INSERT OR IGNORE keeps as they were.

A file rotated out beyond those kept is deleted when all its records are
settled. A process holds an flock on
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
import mmap
import operator
import os
import time
from pathlib import Path

import orjson

from proxy import tokens
from proxy.log.entry import Entry

log = logging.getLogger("switchboard.log")

SUFFIX = ".jnl"
ROTATE_BYTES = 1 << 20
SPARE_FILES = 4  # settled files kept for reuse, beyond which they are deleted
INTERRUPTED_STATUS = 499
INTERRUPTED = "interrupted"
_NEWLINE = orjson.OPT_APPEND_NEWLINE
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
    __slots__ = ("paths", "fds", "mapped", "size", "written", "settled")

    def __init__(self, paths: list[Path], fds: list[int], mapped: mmap.mmap | None = None,
                 size: int = 0):
        self.paths, self.fds, self.mapped = paths, fds, mapped
        self.size = size  # bytes in use, of the mapping's len()
        self.written = 0  # records that need a committed row (request path, or at claim)
        self.settled = 0  # of those, committed (writer thread)

    def done(self) -> bool:
        return self.settled >= self.written

    def clear(self, start: int) -> None:
        """Zeros from `start` (the first record's first byte before the rest: cut
        here, the file reads as empty), for the segment to be written again."""
        if self.size > start:
            self.mapped[start] = 0
            self.mapped[start:self.size] = bytes(self.size - start)
        self.size, self.written, self.settled = start, 0, 0

    def delete(self) -> None:
        """Unlink before unlocking: no one can claim a file on its way out."""
        for path in self.paths:
            path.unlink(missing_ok=True)
        if self.mapped is not None:
            self.mapped.close()
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
        self._spare: list[Segment] = []  # settled and zeroed: written again before a new one
        self._current: Segment | None = self._new_segment(0)

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
            head, raw = build(*args)
        except Exception as exc:  # a value JSON cannot hold: never fail the request
            self._failed(exc)
            return None
        size = len(head) + len(raw)
        if segment.size + size > len(segment.mapped):
            segment = self._rotate(size)
            if segment is None:
                return None
        # copied at once, never batched: a record still in memory when the process
        # is killed would be lost (batching a loop turn's records measured no gain)
        _put(segment.mapped, segment.size, head, raw)
        segment.size += size
        segment.written += 1
        return segment

    def _rotate(self, room: int) -> Segment | None:
        try:
            fresh = self._reused(room) or self._new_segment(room)
        except OSError as exc:  # a full disk: no record until a file can be made
            self._failed(exc)
            return None
        self._retired.append(self._current)
        self._current = fresh
        return fresh

    def _reused(self, room: int) -> Segment | None:
        if len(_LAYOUT) + room > self.rotate_bytes:
            return None
        try:
            return self._spare.pop()  # atomic: the writer thread appends
        except IndexError:
            return None

    def _new_segment(self, room: int) -> Segment:
        """A new file with `room` bytes free at least, locked before it gets its name:
        a file a claimant can see is either held by its writer or dead."""
        self._count += 1
        path = self.directory / f"{self.prefix}-{self._count}{SUFFIX}"
        making = path.with_suffix(".new")
        size = max(self.rotate_bytes, len(_LAYOUT) + room)
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _reserve(fd, size)
            mapped = mmap.mmap(fd, size)
            mapped[:len(_LAYOUT)] = _LAYOUT
            os.rename(making, path)
        except OSError:
            os.close(fd)
            making.unlink(missing_ok=True)
            raise
        return Segment([path], [fd], mapped, len(_LAYOUT))

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
            if self._current is not None and len(self._spare) < SPARE_FILES and \
                    segment.mapped is not None and len(segment.mapped) == self.rotate_bytes:
                segment.clear(len(_LAYOUT))
                self._spare.append(segment)
            else:
                segment.delete()

    def close(self) -> None:
        """After the writer's last flush: the files all settled go, the others stay
        (unlocked once this process exits) for the next start."""
        if self._current is not None:
            self._retired.append(self._current)
            self._current = None
        while self._spare:
            self._spare.pop().delete()
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


def _reserve(fd: int, size: int) -> None:
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:  # macOS: a sparse file, its space taken as records land
        os.ftruncate(fd, size)


def _put(mapped: mmap.mmap, at: int, head: bytes, raw: bytes) -> None:
    """The record's first byte last: until it is in, replay sees the zeros of the end."""
    middle = at + len(head)
    mapped[middle:middle + len(raw)] = raw
    mapped[at + 1:middle] = memoryview(head)[1:]
    mapped[at] = head[0]


def _started(record, route) -> tuple[bytes, bytes]:
    values = (*_started_values(record), route.provider.name, route.model,
              tokens.estimate_messages(record.messages or []))
    return orjson.dumps(("started", values), option=_NEWLINE), b""


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
    as its `pieces`; stops at the zeros after the last record, or at a record cut
    short."""
    data = path.read_bytes()
    at = data.find(b"\n") + 1
    layout = _json(data[:at])
    while at < len(data) and data[at] and isinstance(layout, dict):
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
    if at < len(data) and data[at]:
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
