"""What the gateway's added latency at a low rate is made of: experiments on one
gateway worker (core 0) against bench/fake_upstream.py (core 1), set up as run.py
does (bench/lab.py). bench/phases.py cuts a request into its phases.

    .venv/bin/python bench/low_rate.py cpu [--spin 0]  # CPU per request by rate, per thread
    .venv/bin/python bench/low_rate.py control         # the same for plain Python, no gateway
    .venv/bin/python bench/low_rate.py events          # system calls and IPIs per request
    .venv/bin/python bench/low_rate.py profile         # py-spy at 20/s and at concurrency 1
    .venv/bin/python bench/low_rate.py trace           # strace -f -tt -T of three requests
    .venv/bin/python bench/low_rate.py ab main no-writer main@0 relay [--scenario json_c1]

`ab` runs each target in turn, round after round (the order rotates), each against a
direct run under the same condition in the same round, and prints the median over
rounds of the added p50 / p99 (and each round's). A target is `NAME[@CORES]`: `main`
(the gateway at --rev), `relay` (bench/tcp_relay.py: any process in the middle), or a
copy of the gateway with one change (bench/lab.py PATCHES); `@0` / `@01` keeps those
cores busy with a SCHED_IDLE spinner, so their vCPUs never halt while waiting.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import signal
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path

import fake_upstream
import lab as workbench
import run
from lab import SERIAL, open_loop, spinners

LATENCY_SCENARIOS = {s.name: s for s in run.SCENARIOS if s.mode != "throughput"}
FIGURES = ("total_ms", "ttfb_ms", "ttft_ms", "gap_ms", "trip_ms")


# ---- CPU per request, by rate, per thread --------------------------------------------

def thread_cpu_ns(pid: int) -> dict[str, int]:
    """Run time (ns, /proc schedstat) of the serving thread and of the others together,
    and the process's minor page faults (x 1000: per request they read in units)."""
    out = {"serving": 0, "other threads": 0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            continue
        out["serving" if task.name == str(pid) else "other threads"] += ns
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["page faults"] = int(stat[7]) * 1000
    return out


def cpu_by_rate(lab: workbench.Lab, args) -> list[dict]:
    """Each thread's CPU per request at each rate, less what it spends idle (timers,
    the log writer's polls) over the same wall time, measured first."""
    rows = []
    with lab.target(args.variant) as (url, proc, worker):
        lab.load(url, proc, open_loop(200), 3)  # warm
        run.wait_quiet()
        before, t0 = thread_cpu_ns(worker), time.monotonic()
        time.sleep(args.seconds)
        idle = {k: (v - before[k]) / (time.monotonic() - t0)
                for k, v in thread_cpu_ns(worker).items()}
        rows.append({"load": "idle (per second)", "us": {k: round(v / 1e3) for k, v in idle.items()}})
        for scenario in [open_loop(r) for r in args.rates] + [SERIAL]:
            run.wait_quiet()
            with spinners(args.spin):
                before, t0 = thread_cpu_ns(worker), time.monotonic()
                result = lab.load(url, proc, scenario, args.seconds)
                wall = time.monotonic() - t0
            after, n = thread_cpu_ns(worker), result.get("ok") or 1
            rows.append({"load": scenario.name, "requests": n, "p50_ms": result["total_ms"]["p50"],
                         "us": {k: round((after[k] - before[k] - idle[k] * wall) / n / 1e3)
                                for k in after}})
            run.log(f"cpu: {rows[-1]}")
    return rows


def cpu_table(rows: list[dict]) -> str:
    out = ["| load | requests | serving thread µs/request | other threads (log writer) "
           "µs/request | page faults/request | latency p50 ms |", "|---|---|---|---|---|---|"]
    out += [f"| {r['load']} | {r.get('requests', '—')} | {r['us']['serving']} | "
            f"{r['us']['other threads']} | {r['us']['page faults']} | {r.get('p50_ms', '—')} |"
            for r in rows]
    return "\n".join(out)


# ---- the same for plain Python: a control ---------------------------------------------

CONTROL_HEAD = (b"Content-Type: application/json\r\nContent-Length: 1184\r\n"
                b"x-request-id: req_2a2a04977ace88fdd64cf570f80c0202\r\n\r\n")


def control_work(body: bytes) -> None:
    """Plain Python with a broad code footprint (JSON, an HTTP head, a URL, regexes) and
    nothing of the gateway: ~0.3 ms when warm."""
    for _ in range(6):
        json.dumps(json.loads(body)).encode()
        http.client.parse_headers(io.BytesIO(CONTROL_HEAD))
        urllib.parse.urlsplit("http://127.0.0.1:9100/v1/chat/completions?api-version=1")
        re.findall(rb'"(\w+)":', body)


def control(args) -> list[dict]:
    """CPU time (the thread's own clock) of control_work after idle gaps of 0, 5, 50 and
    200 ms (sleeping: the core idles), on core 0, gaps interleaved round by round."""
    run.bench_lock()
    os.sched_setaffinity(0, {int(run.GATEWAY_CPU)})
    gaps = [0, 0.005, 0.05, 0.2]
    times: dict[float, list[int]] = {g: [] for g in gaps}
    with spinners(args.spin):
        for round_ in range(args.rounds):
            for gap in gaps[round_ % 4:] + gaps[:round_ % 4]:
                for _ in range(min(200, int(4 / max(gap, 0.01)))):
                    time.sleep(gap)
                    start = time.thread_time_ns()
                    control_work(fake_upstream.JSON_BODY)
                    times[gap].append(time.thread_time_ns() - start)
    warm = statistics.median(times[0])
    return [{"gap_ms": g * 1000, "calls": len(t), "p50_us": round(statistics.median(t) / 1e3),
             "p90_us": round(statistics.quantiles(t, n=10)[-1] / 1e3),
             "vs_no_gap": round(statistics.median(t) / warm, 2)} for g, t in times.items()]


def control_table(rows: list[dict]) -> str:
    out = ["| idle gap before a call | calls | CPU µs p50 | CPU µs p90 | p50 / no gap's |",
           "|---|---|---|---|---|"]
    out += [f"| {r['gap_ms']:g} ms | {r['calls']} | {r['p50_us']} | {r['p90_us']} | "
            f"{r['vs_no_gap']} |" for r in rows]
    return "\n".join(out)


# ---- system calls and cross-core interrupts per request ---------------------------------

IPI = "irq_vectors:call_function_single_entry"  # how one core wakes another on this VM


def perf_stat(seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["perf", "stat", "-a", "-A", "-x", ",", "-e", IPI, "--", "sleep",
                             f"{seconds:g}"], stderr=subprocess.PIPE, text=True)


def parse_stat(text: str) -> dict[str, int]:
    return {f"IPIs received, {p[0]}": int(p[1]) for p in (line.split(",") for line in
                                                        text.splitlines()) if len(p) > 3 and p[1].isdigit()}


def parse_syscalls(text: str) -> dict[str, dict[str, int]]:
    """{thread id: {system call: calls}} from perf trace -s."""
    out, thread = {}, None
    for line in text.splitlines():
        if head := re.match(r"\s*\S+ \((\d+)\), \d+ events", line):
            thread = out.setdefault(head[1], {})
        elif (row := re.match(r"\s+([a-z_0-9]+)\s+(\d+)\s+(\d+)\s", line)) and thread is not None:
            thread[row[1]] = int(row[2])
    return out


def events(lab: workbench.Lab, args) -> dict:
    """At args.rate: IPIs per request on each core (perf stat, all CPUs, less an idle
    period as long), then in a run of its own the worker's system calls per request
    and thread (perf trace: it slows what it traces)."""
    found = {}
    for name in ("direct", "relay", "main"):
        with lab.target(name) as (url, proc, worker):
            lab.load(url, proc, open_loop(args.rate), 2)  # warm
            run.wait_quiet()
            idle = parse_stat(perf_stat(args.seconds + 1).communicate()[1])
            counter = perf_stat(args.seconds + 1)
            n = lab.load(url, proc, open_loop(args.rate), args.seconds).get("ok") or 1
            busy = parse_stat(counter.communicate()[1])
            found[name] = {k: round((v - idle.get(k, 0)) / n, 2) for k, v in busy.items()}
            if worker:
                tracer = subprocess.Popen(["perf", "trace", "-s", "-p", str(worker), "--", "sleep",
                                           f"{args.seconds + 1:g}"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
                n = lab.load(url, proc, open_loop(args.rate), args.seconds).get("ok") or 1
                for tid, calls in parse_syscalls(tracer.communicate()[1]).items():
                    thread = "serving thread" if tid == str(worker) else f"thread {tid}"
                    found[name][thread] = {c: round(k / n, 2) for c, k in sorted(calls.items())}
            run.log(f"events: {name}: {found[name]}")
    return found


def events_table(found: dict) -> str:
    return "\n".join(f"- {name}: " + "; ".join(
        f"{k}: " + (", ".join(f"{c} {n}" for c, n in v.items()) if isinstance(v, dict) else str(v))
        for k, v in figures.items()) for name, figures in found.items())


# ---- py-spy: where the serving thread's samples fall, cold and warm --------------------

def profile(lab: workbench.Lab, args) -> str:
    """py-spy (non-blocking, 1000 Hz, on core 1) of the worker at each rate and at
    concurrency 1: bench/hotspots.py's summary of the serving thread's samples."""
    import hotspots
    spy = Path(lab.py).with_name("py-spy")
    out = []
    with lab.target(args.variant) as (url, proc, worker):
        lab.load(url, proc, open_loop(200), 3)  # warm
        for scenario in [open_loop(r) for r in args.rates] + [SERIAL]:
            run.wait_quiet()
            raw = lab.run_dir / f"profile-{scenario.name.replace('/', '-')}.txt"
            sampler = subprocess.Popen(
                ["taskset", "-c", run.LOAD_CPU, str(spy), "record", "-p", str(worker), "-d",
                 f"{args.seconds:g}", "-r", "1000", "--nonblocking", "--nolineno", "--threads",
                 "--format", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            lab.load(url, proc, scenario, args.seconds)
            sampler.wait()
            out.append(f"### {scenario.name}\n\n" + hotspots.summarise(raw.read_text(), 25))
    return "\n\n".join(out)


# ---- one request, system call by system call --------------------------------------------

def trace(lab: workbench.Lab, args) -> str:
    """strace -f -tt -T of the worker while three requests are sent 50 ms apart."""
    out = lab.run_dir / "trace.txt"
    with lab.target(args.variant) as (url, proc, worker):
        lab.load(url, proc, open_loop(20, args.stream), 1)  # warm
        tracer = subprocess.Popen(["strace", "-f", "-tt", "-T", "-p", str(worker), "-o", str(out)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)
        lab.load(url, proc, open_loop(20, args.stream), 0.15)
        time.sleep(0.2)
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
    return out.read_text()


# ---- A/B of targets -------------------------------------------------------------------

def target_arg(text: str) -> tuple[str, str]:
    name, _, cores = text.partition("@")
    if name not in workbench.TARGETS or name == "direct" or set(cores) - {"0", "1"}:
        raise argparse.ArgumentTypeError(f"unknown target {text}")
    return name, cores


def figure_of(args) -> str:
    """The figure `ab` compares: as asked, else the one run.py's report rates."""
    s = LATENCY_SCENARIOS[args.scenario]
    return args.figure or ("ttft_ms" if s.pace else "ttfb_ms" if s.stream else "total_ms")


def ab(lab: workbench.Lab, args) -> dict:
    scenario, figure = LATENCY_SCENARIOS[args.scenario], figure_of(args)
    runs = [("direct", c) for c in sorted({c for _, c in args.targets})] + args.targets
    table = {f"{n}@{c}" if c else n: [] for n, c in runs}
    for round_ in range(args.rounds):
        shift = round_ % len(runs)
        for name, cores in runs[shift:] + runs[:shift]:
            key = f"{name}@{cores}" if cores else name
            with lab.target(name) as (url, proc, worker):
                lab.load(url, proc, scenario, 2)  # warm
                run.wait_quiet()
                with spinners(cores):
                    result = lab.load(url, proc, scenario, args.seconds)
            table[key].append({p: result[figure][p] for p in ("p50", "p99")})
            run.log(f"ab round {round_ + 1}: {key}: {table[key][-1]}")
    return table


def ab_table(table: dict, args) -> str:
    out = [f"{args.scenario}, {figure_of(args)}: added = the target's percentile minus "
           "direct's under the same condition in the same round; the median over rounds "
           "(each round's in brackets)", "",
           "| target | added p50 ms | added p99 ms | p50 / p99 ms |", "|---|---|---|---|"]
    for key, rows in table.items():
        cores = key.partition("@")[2]
        base = table["direct@" + cores if cores else "direct"]
        added = [[r[p] - b[p] for r, b in zip(rows, base)] for p in ("p50", "p99")]
        cells = [f"{statistics.median(v):+.3f} ({', '.join(f'{x:+.2f}' for x in v)})"
                 for v in added]
        mid = [statistics.median(r[p] for r in rows) for p in ("p50", "p99")]
        out.append(f"| {key} | {cells[0]} | {cells[1]} | {mid[0]:.3f} / {mid[1]:.3f} |")
    return "\n".join(out)


EXPERIMENTS = {  # name: (what it measures, how it prints)
    "cpu": (cpu_by_rate, cpu_table),
    "events": (events, events_table),
    "profile": (profile, str),
    "trace": (trace, str),
    "ab": (ab, None),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=(*EXPERIMENTS, "control"))
    ap.add_argument("targets", nargs="*", type=target_arg,
                    help="ab: main, relay or " + ", ".join(workbench.PATCHES) + "; @0, @01: "
                         "spinners on those cores")
    ap.add_argument("--scenario", choices=LATENCY_SCENARIOS, default="json_20",
                    help="ab: one of run.py's latency scenarios")
    ap.add_argument("--figure", choices=FIGURES, help="ab: what to compare")
    ap.add_argument("--rounds", type=int, default=4, help="ab, control")
    ap.add_argument("--seconds", type=float, default=20, help="per measured run")
    ap.add_argument("--rate", type=float, default=20, help="events: requests/s")
    ap.add_argument("--rates", default="5,20,50,200", help="cpu, profile: open-loop rates")
    ap.add_argument("--stream", action="store_true", help="trace: a stream")
    ap.add_argument("--spin", default="", metavar="CORES",
                    help="cpu, control: spinners on these cores (0, 01) while measuring")
    ap.add_argument("--variant", default="main", choices=("main", *workbench.PATCHES),
                    help="cpu, profile, trace: the gateway measured")
    ap.add_argument("--rev", default="HEAD", help="the gateway's commit (git archive)")
    args = ap.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    stamp = f"{args.what}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    if args.what == "control":
        text = control_table(control(args))
    else:
        measure, render = EXPERIMENTS[args.what]
        with workbench.lab_for(args, "low-rate") as lab:
            found = measure(lab, args)
            (lab.run_dir / f"{args.what}.json").write_text(json.dumps(found, indent=1))
        text = render(found) if render else ab_table(found, args)
    print(f"{stamp}, load average {os.getloadavg()[0]:.2f}\n\n{text}")


if __name__ == "__main__":
    main()
