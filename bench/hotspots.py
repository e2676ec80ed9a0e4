"""Where a gateway worker spends its time under closed-loop load: py-spy samples one
gevent worker (WEB_CONCURRENCY=1, core 0) while wrk drives it, then prints the top
functions (inclusive and self) and the share of time per package.

    .venv/bin/python bench/hotspots.py [--stream] [--large] [--seconds 15] [--rev HEAD]
"""
from __future__ import annotations

import argparse
import collections
import re
import subprocess
import threading
import time
from pathlib import Path

import run

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")


def where(file: str) -> str:
    """A frame's file as a short package name: flask, gevent, proxy/app.py, stdlib:logging..."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for top in ("proxy/", "providers/", "wsgi.py"):
        if file.startswith(top) or f"/main/{top}" in file:
            return file[file.index(top):]
    if "/lib/python3" in file:
        return "stdlib:" + file.split("/lib/python3", 1)[1].split("/", 2)[-1].split("/")[0] \
            .removesuffix(".py")
    return file


def _parse(raw: str):
    """(thread, frames, count) per line of py-spy's raw output recorded with --threads."""
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        frames = [(m["func"], where(m["file"])) for p in parts[1:] if (m := FRAME.match(p))]
        if frames:
            yield parts[0], frames, int(count)


def summarise(raw: str, top: int) -> str:
    rows = list(_parse(raw))
    per_thread = collections.Counter()
    serving = collections.Counter()
    for thread, frames, n in rows:
        per_thread[thread] += n
        if any(w.startswith("gevent/baseserver") for _, w in frames):
            serving[thread] += n
    main = serving.most_common(1)[0][0] if serving else None
    inclusive, self_time, packages = collections.Counter(), collections.Counter(), \
        collections.Counter()
    others = collections.Counter()
    for thread, frames, n in rows:
        if thread != main:
            others[f"{frames[0][1]}:{frames[0][0]} ... {frames[-1][0]}"] += n
            continue
        for f in set(frames):
            inclusive[f] += n
        self_time[frames[-1]] += n
        packages[frames[-1][1]] += n
    total = per_thread[main] or 1
    pct = lambda n: f"{100 * n / total:5.1f}%"
    out = [f"{total} samples of the serving (gevent) thread; % below are of those", "",
           "## inclusive (function and all it calls)"]
    out += [f"{pct(n)}  {w}:{func}" for (func, w), n in inclusive.most_common(top)]
    out += ["", "## self (leaf frame)"]
    out += [f"{pct(n)}  {w}:{func}" for (func, w), n in self_time.most_common(top)]
    out += ["", "## self time by package / project file"]
    out += [f"{pct(n)}  {name}" for name, n in packages.most_common(top)]
    out += ["", "## other threads (samples, mostly waiting: py-spy cannot always tell idle)"]
    out += [f"{n:6d}  {name}" for name, n in others.most_common(8)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--large", action="store_true", help="400 KB prompt")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--rev", help="profile this commit instead of the work tree")
    args = ap.parse_args()
    run.bench_lock()
    run_dir = run.RESULTS / ("hotspots-" + time.strftime("%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True)
    py = run.bench_python()
    spy = Path(py).with_name("py-spy")
    fake_port, port = run.free_port(), run.free_port()
    upstream = f"http://127.0.0.1:{fake_port}/v1"
    fake = run.start([py, str(run.BENCH / "fake_upstream.py"), "--port", str(fake_port)],
                     run.LOAD_CPU, run_dir / "fake.log")
    gw = None
    try:
        run.wait_ready(upstream + "/chat/completions", fake, 10)
        cmd, env = run.gateway_cmd(1, port, upstream, run_dir)
        gw = run.start(cmd, run.GATEWAY_CPU, run_dir / "gw1.log", cwd=run.source_tree(args.rev),
                       env=env)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        run.wait_ready(url, gw, 60)
        worker = run.tree_rss(gw.pid)[0]["pid"]
        dur = {"conns": 64, "throughput": args.seconds + 4}
        load = threading.Thread(target=run.run_load, args=(py, url, "throughput", args.stream,
                                                           args.large, None, dur))
        load.start()
        kind = ("large-" if args.large else "") + ("stream" if args.stream else "json")
        out = run_dir / f"{kind}.txt"
        # blocking sampling (the default) pauses the worker briefly per sample: the
        # proportions hold, the throughput during profiling does not
        subprocess.run(["taskset", "-c", run.LOAD_CPU, str(spy), "record", "-p", str(worker),
                        "-d", str(args.seconds), "-r", "200", "--nolineno", "--threads", "--format", "raw",
                        "-o", str(out)], check=True, capture_output=True)
        load.join()
        text = summarise(out.read_text(), args.top)
        print(text)
        out.with_suffix(".summary.txt").write_text(text + "\n")
        run.log(f"raw stacks in {out}, summary in {out.with_suffix('.summary.txt')}")
    finally:
        run.stop(gw)
        run.stop(fake)
        run.remove_logs(run_dir)


if __name__ == "__main__":
    main()
