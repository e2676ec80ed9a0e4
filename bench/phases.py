"""Where a JSON request's time goes inside one gateway worker, phase by phase, at each
rate: perf records the serving thread's socket system calls (kernel tracepoints, a
few µs a request) while load.py drives it, and each request is cut into

    request read -> sent upstream -> the upstream's answer read -> the answer sent

(the first and last phases are the worker's own work, the middle one the fake's
answer plus the wake-ups on both cores). Requests another one overlapped are left
out. The client's own figure for the same run is shown beside.

    .venv/bin/python bench/phases.py [--rates 5,20,200] [--variant writer-idle] [--large]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

import lab as workbench
import load
import run

EVENTS = "syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_sendto"
LINE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+syscalls:sys_(enter_recvfrom|exit_recvfrom|"
                  r"enter_sendto): (?:fd: (0x[0-9a-f]+)|(0x[0-9a-f]+))")
NAMES = ("request read → sent upstream", "sent → answer read", "answer read → sent to the client")


def upstream_fds(pid: int, port: int) -> set[int]:
    """The worker's descriptors of connections to the fake (its pool: still open)."""
    inodes = {cols[9] for cols in map(str.split, Path(f"/proc/{pid}/net/tcp").read_text()
                                      .splitlines()[1:]) if int(cols[2].split(":")[1], 16) == port}
    fds = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.add(int(fd.name))
    return fds


def socket_events(script: str, serving: int):
    """(time, "read" or "sent", fd) of the serving thread: reads that got data, sends."""
    reading = None
    for m in map(LINE.match, script.splitlines()):
        if not m or int(m[1]) != serving:
            continue
        if m[3] == "enter_recvfrom":
            reading = int(m[4], 16)
        elif m[3] == "exit_recvfrom":
            if 0 < int(m[5], 16) < 2**63:  # data, not EOF or -errno
                yield float(m[2]), "read", reading
        else:
            yield float(m[2]), "sent", int(m[4], 16)


def request_phases(script: str, serving: int, upstream: set[int]) -> list[tuple[float, ...]]:
    """The three phases (seconds) of each JSON request that no other one overlapped."""
    phases, marks = [], []  # marks: the current request's times so far
    for t, what, fd in socket_events(script, serving):
        step = (what, fd in upstream)
        if step == ("read", False) and len(marks) != 1:  # a request begins (or overlaps)
            marks = [t]
        elif (len(marks), step) in ((1, ("sent", True)), (2, ("read", True))):
            marks.append(t)
        elif len(marks) == 3 and step == ("sent", False):
            phases.append((marks[1] - marks[0], marks[2] - marks[1], t - marks[2]))
            marks = []
        elif step == ("sent", True) or (step == ("read", True) and len(marks) < 2):
            marks = []  # upstream traffic of another request: they overlap
    return phases


def recorded(lab: workbench.Lab, url, proc, worker: int, scenario, seconds: float):
    """(perf script's text, load.py's result) of one run."""
    data = lab.run_dir / "phases.data"
    recorder = subprocess.Popen(["perf", "record", "-q", "-e", EVENTS, "-p", str(worker), "-o",
                                 str(data), "--", "sleep", f"{seconds + 1:g}"],
                                stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    result = lab.load(url, proc, scenario, seconds)
    recorder.wait()
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,event,trace"],
                            capture_output=True, text=True).stdout
    return script, result


def measure(lab: workbench.Lab, args) -> list[dict]:
    rows = []
    with lab.target(args.variant) as (url, proc, worker):
        lab.load(url, proc, workbench.open_loop(200), 3)  # warm
        loads = [workbench.open_loop(r, large=args.large) for r in args.rates]
        for scenario in loads + [workbench.SERIAL._replace(large=args.large)]:
            run.wait_quiet()
            script, result = recorded(lab, url, proc, worker, scenario, args.seconds)
            phases = request_phases(script, worker, upstream_fds(worker, lab.fake_port))
            row = {"load": scenario.name, "requests": len(phases),
                   "client saw": {p: result["total_ms"][p] for p in ("p50", "p99")}}
            row.update({name: load.summary([p[i] for p in phases]) for i, name in enumerate(NAMES)})
            rows.append(row)
            run.log(f"phases: {row}")
    return rows


def table(rows: list[dict]) -> str:
    cols = (*NAMES, "client saw")
    out = ["| load | requests | " + " | ".join(f"{c} p50 / p99 ms" for c in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    pair = lambda d: f"{d['p50']:.3f} / {d['p99']:.3f}"
    out += [f"| {r['load']} | {r['requests']} | " + " | ".join(pair(r[c]) for c in cols) + " |"
            for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="5,20,200", help="open-loop rates (concurrency 1 follows)")
    ap.add_argument("--seconds", type=float, default=15, help="per rate")
    ap.add_argument("--variant", default="main", choices=("main", *workbench.PATCHES))
    ap.add_argument("--large", action="store_true", help="a 400 KB prompt")
    ap.add_argument("--rev", default="HEAD", help="the gateway's commit (git archive)")
    args = ap.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    with workbench.lab_for(args, "phases") as lab:
        rows = measure(lab, args)
        (lab.run_dir / "phases.json").write_text(json.dumps(rows, indent=1))
    print(f"{args.variant}, load average {os.getloadavg()[0]:.2f}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
