"""Nothing answered is lost, even on kill -9: each worker journals a request when
it reaches the upstream and again when it is answered (proxy/log/journal.py),
and the next worker to start writes what a dead one had not.

The sidecar database is held locked during the burst, so every answered row is
still in a worker's memory when the worker is killed: without the journal they
would all be lost, whatever the timing."""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import orjson
import requests

from proxy.access_log import RequestLog
from proxy.log.entry import Entry
from proxy.log.journal import SPARE_FILES, Journal, replay
from tests.gateway import ROOT, Gateway
from tests.log import poll, rows

FAST, SLOW, CONCURRENT = 192, 8, 8  # 200 requests, 16 at a time at most
KILL_WORKER_AFTER = 60  # answers: the first worker dies mid-burst


def env(openai_fake, **extra) -> dict:
    return {"OPENAI_API_KEY": "sk-kill9-tests-0123456789", "OPENAI_BASE_URL": openai_fake.url + "/v1",
            "GRACEFUL_TIMEOUT": "2", **extra}


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (gunicorn's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_all(gw: Gateway) -> None:
    """kill -9 the master and every worker; the master is stopped first, so it
    cannot fork a replacement between the listing and the kill."""
    gw.proc.send_signal(signal.SIGSTOP)
    for pid in children(gw.proc.pid):
        kill(pid)
    kill(gw.proc.pid)
    gw.proc.wait(10)


class Burst:
    """Requests with client ids (X-Request-Id) `<tag>-<n>` and the same id in the
    prompt, so the fake upstream's log tells which of them reached it."""

    def __init__(self, gw: Gateway, tag: str):
        self.gw, self.tag = gw, tag
        self.answered: set[str] = set()
        self.streaming: set[str] = set()  # slow streams whose first chunk arrived

    def body(self, rid: str, model: str, stream: bool) -> dict:
        return {"model": model, "stream": stream,
                "messages": [{"role": "user", "content": f"kill9 {rid} " + "tell me a story " * 20}]}

    def fast(self, n: int) -> None:
        rid, stream = f"{self.tag}-{n}", n % 2 == 1
        try:
            r = requests.post(self.gw.url + "/v1/chat/completions", timeout=20,
                              headers={"X-Request-Id": rid},
                              json=self.body(rid, "openai/gpt-4o-mini", stream))
        except requests.RequestException:
            return  # the worker was killed under it: not answered
        if r.status_code == 200 and complete(r.content, stream):
            self.answered.add(rid)

    def slow(self, n: int, started: threading.Event) -> None:
        rid = f"{self.tag}-slow-{n}"
        try:
            with requests.post(self.gw.url + "/v1/chat/completions", timeout=30, stream=True,
                               headers={"X-Request-Id": rid},
                               json=self.body(rid, "openai/slow-stream", True)) as r:
                lines = r.iter_lines()
                next(lines)
                self.streaming.add(rid)
                started.set()
                for _ in lines:  # until the gateway is killed under it
                    pass
        except (requests.RequestException, StopIteration):
            started.set()

    def start_slow(self) -> list[threading.Thread]:
        threads = []
        for n in range(SLOW):
            started = threading.Event()
            threads.append(threading.Thread(target=self.slow, args=(n, started), daemon=True))
            threads[-1].start()
            started.wait(10)
        return threads


def complete(body: bytes, stream: bool) -> bool:
    if stream:
        return body.rstrip().endswith(b"data: [DONE]")
    try:
        return bool(orjson.loads(body)["choices"])
    except (orjson.JSONDecodeError, KeyError):
        return False


def reached_upstream(openai_fake, tag: str) -> set[str]:
    pattern = re.compile(rf"kill9 ({re.escape(tag)}-[\w-]+) ")
    found = set()
    for req in list(openai_fake.requests):
        match = pattern.search(req.body.decode("utf-8", "replace"))
        if match:
            found.add(match.group(1))
    return found


def restart_on(gw: Gateway, openai_fake, start_gateway) -> None:
    """A new gateway on the dead one's database: its workers replay the journals."""
    start_gateway(env(openai_fake, DATABASE_URL=f"sqlite:///{gw.db_path}"), workers=2)


def logged(gw: Gateway, tag: str, expected: set[str]) -> dict[str, dict]:
    """The rows of the burst's requests, by the client's id for each."""
    def fetch():
        return {r["client_request_id"]: r for r in rows(
            gw, "SELECT * FROM completions WHERE client_request_id LIKE ?", (f"{tag}-%",))}
    return poll(fetch, until=lambda found: expected <= set(found), timeout=20)


def assert_interrupted(row: dict) -> None:
    assert row["status"] == 499 and row["error_type"] == "interrupted", row
    assert row["tokens_estimated"] == 1 and row["prompt_tokens"] > 0, row
    assert row["streamed"] == 1 and row["provider"] == "openai", row


def test_kill9_of_a_worker_then_of_the_master_loses_no_answered_row(openai_fake, start_gateway):
    gw = start_gateway(env(openai_fake), workers=2)
    burst = Burst(gw, "k9a")
    lock = sqlite3.connect(gw.db_path, timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # rows wait in the workers' memory
    try:
        slow = burst.start_slow()
        with ThreadPoolExecutor(CONCURRENT) as pool:
            fast = [pool.submit(burst.fast, n) for n in range(FAST)]
            poll(lambda: len(burst.answered), until=lambda n: n >= KILL_WORKER_AFTER, timeout=30)
            kill(children(gw.proc.pid)[0])
            for f in fast:
                f.result(60)
        kill_all(gw)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    for t in slow:
        t.join(30)
    reached = reached_upstream(openai_fake, "k9a")
    in_flight = reached - burst.answered
    assert len(burst.answered) > KILL_WORKER_AFTER and len(burst.streaming) == SLOW
    assert burst.answered <= reached

    restart_on(gw, openai_fake, start_gateway)
    found = logged(gw, "k9a", burst.answered | reached)
    lost = burst.answered - set(found)
    assert not lost, f"answered, not logged: {len(lost)} of {len(burst.answered)}"
    lost = reached - set(found)
    assert not lost, f"reached the upstream, not logged: {len(lost)} of {len(reached)}"
    for rid in in_flight:
        assert found[rid]["error_type"] == "interrupted" or found[rid]["status"] == 200
    for rid in burst.streaming:
        assert_interrupted(found[rid])


def test_kill9_of_the_master_alone_leaves_a_row_for_each_stream_in_flight(openai_fake, start_gateway):
    gw = start_gateway(env(openai_fake), workers=2)
    burst = Burst(gw, "k9b")
    slow = burst.start_slow()
    for n in range(8):
        burst.fast(n)
    workers = children(gw.proc.pid)
    kill(gw.proc.pid)  # the workers notice their parent is gone and exit by themselves
    gw.proc.wait(10)
    try:
        left = poll(lambda: [p for p in workers if alive(p)], until=lambda left: not left, timeout=15)
        assert left == []
    finally:
        for pid in workers:
            kill(pid)
    for t in slow:
        t.join(30)
    assert len(burst.streaming) == SLOW and len(burst.answered) == 8

    restart_on(gw, openai_fake, start_gateway)
    found = logged(gw, "k9b", burst.answered | burst.streaming)
    assert burst.answered <= set(found) and all(found[r]["status"] == 200 for r in burst.answered)
    for rid in burst.streaming:
        assert_interrupted(found[rid])


# -- the journal alone, in a process of its own -------------------------------------

ROUTE = SimpleNamespace(provider=SimpleNamespace(name="openai"), model="gpt-4o-mini")
WRITER = """
import sys, time
from types import SimpleNamespace
from proxy.access_log import RequestLog
from proxy.log.entry import Entry
from proxy.log.journal import SPARE_FILES, Journal, replay
route = SimpleNamespace(provider=SimpleNamespace(name="openai"), model="gpt-4o-mini")
journal = Journal(__import__("pathlib").Path(sys.argv[1]), rotate_bytes=int(sys.argv[2]))
for rid in ("answered", "in-flight"):
    record = RequestLog(rid, "/v1/chat/completions")
    record.model_requested, record.stream, record.api_key_id = "gpt-4o-mini", True, "key_1"
    record.messages = [{"role": "user", "content": "héllo " * 40}]
    journal.started(record, route)
journal.finished(Entry(request_id="answered", created_at=1.5, provider="openai", streamed=True,
                       model_requested="gpt-4o-mini", messages=[{"role": "user", "content": "héllo"}],
                       pieces=[b"data: {}\\n\\n", bytes(range(256))], latency_ms=3.25))
journal.finished(Entry(request_id="answered.1", created_at=1.0, status=503, error_type="server_error"))
print("ready", flush=True)
time.sleep(60)
"""


def killed_writer(directory: Path, rotate_bytes: int = 1 << 20) -> subprocess.Popen:
    """A process that journals two requests (one answered, one in flight) and a
    failed attempt, then waits to be killed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(rotate_bytes)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_the_journal_of_a_killed_process_gives_back_its_entries(tmp_path):
    proc = killed_writer(tmp_path)
    try:
        alive = Journal(tmp_path)
        assert alive.recover() == []  # its writer lives: its files are not claimed
        alive.close()
    finally:
        proc.kill()
        proc.wait()
    path = next(tmp_path.glob("*.jnl"))
    with open(path, "r+b") as f:
        f.seek(len(path.read_bytes().rstrip(b"\0")))
        f.write(b'["finished",["cut short')  # a last record half written
    entries = {e.request_id: e for e in Journal(tmp_path).recover()}
    assert set(entries) == {"answered", "answered.1", "in-flight"}
    assert entries["answered"] == Entry(
        request_id="answered", created_at=1.5, provider="openai", streamed=True,
        model_requested="gpt-4o-mini", messages=[{"role": "user", "content": "héllo"}],
        pieces=[b"data: {}\n\n" + bytes(range(256))], latency_ms=3.25)
    assert entries["answered.1"].status == 503 and entries["answered.1"].error_type == "server_error"
    cut = entries["in-flight"]
    assert (cut.status, cut.error_type, cut.provider, cut.model_upstream, cut.api_key_id) == \
        (499, "interrupted", "openai", "gpt-4o-mini", "key_1")
    assert cut.streamed and cut.prompt_estimate > 40 and cut.messages is None


def test_a_claimed_journal_is_claimed_once_and_deleted_once_written(tmp_path):
    proc = killed_writer(tmp_path, rotate_bytes=1)  # a file per record
    proc.kill()
    proc.wait()
    first, second = Journal(tmp_path), Journal(tmp_path)
    entries = first.recover()
    assert len(entries) == 3 and second.recover() == []
    files = sorted(tmp_path.glob("*.jnl"))
    first.settle(entries[:2])
    assert sorted(tmp_path.glob("*.jnl")) == files  # a row still to write: all kept
    first.settle(entries[2:])
    first.close()
    second.close()
    assert list(tmp_path.glob("*.jnl")) == []


def test_a_file_goes_once_all_its_rows_are_committed(tmp_path):
    journal = Journal(tmp_path, rotate_bytes=1)  # a new file after every record
    record = RequestLog("req_1", "/v1/chat/completions")
    record.messages = [{"role": "user", "content": "hi"}]
    journal.started(record, ROUTE)  # file 1; file 2 is current
    entry = Entry(request_id="req_1", created_at=1.0)
    journal.finished(entry)  # file 2; file 3 is current
    assert len(list(tmp_path.glob("*.jnl"))) == 3
    journal.settle([entry])
    assert len(list(tmp_path.glob("*.jnl"))) == 1  # the current one, empty
    journal.close()
    assert list(tmp_path.glob("*.jnl")) == []


def test_a_settled_file_is_zeroed_and_written_again(tmp_path):
    journal = Journal(tmp_path, rotate_bytes=4096)
    for n in range(300):  # ~100 KB of records: a file fills every dozen requests
        record = RequestLog(f"req_{n}", "/v1/chat/completions")
        record.messages = [{"role": "user", "content": "hello " * 20}]
        journal.started(record, ROUTE)
        entry = Entry(request_id=f"req_{n}", created_at=1.0, pieces=[b"data: {}\n\n" * 10])
        journal.finished(entry)
        journal.settle([entry])
    files = sorted(tmp_path.glob("*.jnl"))
    assert len(files) <= 1 + SPARE_FILES  # the current one and the spares, whatever the traffic
    assert journal._count <= 1 + SPARE_FILES
    current = journal._current.paths[0]
    assert all(replay([path]) == [] for path in files if path != current)  # zeroed
    journal.close()
    assert list(tmp_path.glob("*.jnl")) == []
