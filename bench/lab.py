"""The bench's workbench for experiments (bench/low_rate.py, bench/phases.py): the fake
upstream on core 1 and, one at a time, the thing measured on core 0, as run.py sets
them up; copies of the gateway with one change each (PATCHES), made under
bench/results/ and never in the work tree; spinners that keep a core from idling.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import run


def _writer_starts(call: str) -> list[tuple[str, str, str]]:
    """A patch: the log writer's thread makes `call` (os, threading imported) first."""
    return [("proxy/log/writer.py", "    def _run(self) -> None:\n",
             "    def _run(self) -> None:\n        import os, threading\n"
             f"        {call}  # this thread only (Linux)\n")]


_GC_LOG = '''
import gc as _gc, sys as _sys, time as _time
_gc_start = [0.0]


def _gc_timer(phase, info):
    if phase == "start":
        _gc_start[0] = _time.perf_counter()
    else:
        _sys.stderr.write("gc-pause gen%d %.0f us\\n" % (
            info["generation"], (_time.perf_counter() - _gc_start[0]) * 1e6))


_gc.callbacks.append(_gc_timer)
'''
_APP = "app = create_app()\n"

# name -> (what it changes, [(file, text, replacement)]): each text must occur once
PATCHES = {
    "no-writer": ("the log writer thread never starts and rows are dropped", [
        ("proxy/log/writer.py", '        _original("_thread", "start_new_thread")(self._run, ())\n',
         ""),
        ("proxy/log/writer.py", "        self._queue.append(entry)\n        return True\n",
         "        return True\n")]),
    "writer-1s": ("the log writer polls its queue every second, not every 50 ms", [
        ("proxy/log/writer.py", "interval: float = 0.05", "interval: float = 1.0")]),
    "writer-idle": ("the log writer thread at SCHED_IDLE: it runs only when the core is free",
                    _writer_starts("os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))")),
    "writer-batch": ("the log writer thread at SCHED_BATCH: its fair share, never preempting",
                     _writer_starts("os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))")),
    "writer-nice5": ("the log writer thread at nice 5",
                     _writer_starts("os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)")),
    "writer-nice19": ("the log writer thread at nice 19",
                      _writer_starts("os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)")),
    "writer-yield": ("the log writer yields the core (sched_yield) after each row it writes", [
        ("proxy/log/rows.py", "            for entry in entries:\n"
                              "                self._write_one(conn, entry)\n",
         "            for entry in entries:\n                self._write_one(conn, entry)\n"
         "                __import__('os').sched_yield()\n")]),
    "writer-yield-short": ("the log writer yields after each row while its queue is short "
                           "(< 1,000 rows): it defers to requests only while it can catch up", [
        ("proxy/log/writer.py", "            self.rows.write(conn, batch)\n",
         "            self.rows.yielding = len(self._queue) < 1000\n"
         "            self.rows.write(conn, batch)\n"),
        ("proxy/log/rows.py", "            for entry in entries:\n"
                              "                self._write_one(conn, entry)\n",
         "            for entry in entries:\n                self._write_one(conn, entry)\n"
         "                if getattr(self, 'yielding', False):\n"
         "                    __import__('os').sched_yield()\n")]),
    "writer-nap": ("the log writer sleeps 0.1 ms after each row: it keeps its fair share "
                   "but gives the core up after each row's work", [
        ("proxy/log/rows.py", "            for entry in entries:\n"
                              "                self._write_one(conn, entry)\n",
         "            for entry in entries:\n                self._write_one(conn, entry)\n"
         "                _nap(0.0001)\n"),
        ("proxy/log/rows.py", "class RowWriter:\n",
         "from gevent.monkey import get_original as _original\n"
         "_nap = _original('time', 'sleep')\n\n\nclass RowWriter:\n")]),
    "switch-5ms": ("Python's default switch interval (5 ms) instead of 0.5 ms", [
        ("proxy/server.py", "SWITCH_INTERVAL_S = 0.0005", "SWITCH_INTERVAL_S = 0.005")]),
    "upstream-nodelay": ("TCP_NODELAY on upstream connections (the client side has it)", [
        ("proxy/sockets.py", '    """A gevent socket whose `sendall` is `send_all`."""\n',
         '    """A gevent socket whose `sendall` is `send_all`."""\n\n'
         "    def __init__(self, *args, **kwargs):\n"
         "        super().__init__(*args, **kwargs)\n"
         "        import socket\n"
         "        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n")]),
    "gc-log": ("each garbage collection's generation and pause on stderr (the worker's log)",
               [("wsgi.py", _APP, _APP + _GC_LOG)]),
    "gc-freeze": ("gc.freeze() once the app is built: start-up objects are never scanned again",
                  [("wsgi.py", _APP, _APP + "import gc\ngc.freeze()\n")]),
}
PATCHES["gc-freeze-log"] = ("gc-freeze and gc-log", PATCHES["gc-log"][1] + PATCHES["gc-freeze"][1])
TARGETS = ("direct", "relay", "main", *PATCHES)


def open_loop(rate: float, stream: bool = False, large: bool = False) -> run.Scenario:
    return run.Scenario(f"{rate:g}/s", "latency", stream=stream, large=large, rate=rate)


SERIAL = run.Scenario("concurrency 1", "serial")


def patched_tree(base: Path, name: str, run_dir: Path) -> Path:
    """A copy of `base` with PATCHES[name] applied."""
    dest = run_dir / f"tree-{name}"
    if dest.exists():
        return dest
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("*.db*", ".venv", "bench"))
    for file, text, replacement in PATCHES[name][1]:
        path = dest / file
        source = path.read_text()
        if source.count(text) != 1:
            raise SystemExit(f"patch {name} does not apply to {file} of {base}")
        path.write_text(source.replace(text, replacement))
    return dest


class Lab:
    """The fake upstream on core 1 and, one at a time, the target measured on core 0."""

    def __init__(self, py: str, base: Path, run_dir: Path):
        self.py, self.base, self.run_dir = py, base, run_dir
        self.fake_port = run.free_port()
        self.upstream = f"http://127.0.0.1:{self.fake_port}/v1"
        self.fake = run.start([py, str(run.BENCH / "fake_upstream.py"), "--port",
                               str(self.fake_port)], run.LOAD_CPU, run_dir / "fake.log")
        run.wait_ready(self.upstream + "/chat/completions", self.fake, 10)

    def close(self) -> None:
        run.stop(self.fake)

    @contextmanager
    def target(self, name: str):
        """(url, process or None, the serving pid or None) of `direct`, `relay`, `main`
        (the gateway as exported) or a patched gateway, one worker."""
        if name == "direct":
            yield self.upstream + "/chat/completions", None, None
            return
        port = run.free_port()
        if name == "relay":
            proc = run.start(run.relay_cmd(self.py, port, self.fake_port), run.GATEWAY_CPU,
                             self.run_dir / "relay.log")
        else:
            tree = self.base if name == "main" else patched_tree(self.base, name, self.run_dir)
            cmd, env = run.gateway_cmd(1, port, self.upstream, self.run_dir)
            proc = run.start(cmd, run.GATEWAY_CPU, self.run_dir / f"{name}.log", cwd=tree, env=env)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            run.wait_ready(url, proc, 60)
            kids = run.tree_pids(proc.pid)[1:]
            yield url, proc, kids[0] if kids else proc.pid
        finally:
            run.stop(proc)
            run.remove_logs(self.run_dir)

    def load(self, url: str, proc, scenario: run.Scenario, seconds: float) -> dict:
        """One load.py run of `scenario` against `url`, served by `proc` (None: the fake)."""
        dur = {"latency": seconds, "warmup": 0}
        ours = [self.fake.pid] + ([proc.pid] if proc else [])
        return run.run_load(self.py, url, scenario.mode, scenario.stream, scenario.large,
                            scenario.rate, dur, ours, scenario.pace)


@contextmanager
def spinners(cores: str):
    """A SCHED_IDLE busy loop on each of `cores` ("", "0", "01"): the core never idles
    (its vCPU never halts), and anything else that wakes up there runs at once."""
    procs = [subprocess.Popen(["chrt", "-i", "0", "taskset", "-c", core, sys.executable, "-c",
                               "while True: pass"], start_new_session=True) for core in cores]
    try:
        time.sleep(0.3 if procs else 0)
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def lab_for(args, prefix: str):
    """A Lab for the gateway of args.rev, its files in bench/results/<prefix>-<stamp>/."""
    run.bench_lock()
    run_dir = run.RESULTS / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True)
    lab = Lab(run.bench_python(), run.source_tree(args.rev), run_dir)
    try:
        yield lab
    finally:
        lab.close()
