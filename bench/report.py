"""The Markdown table of a bench run (bench/run.py). Added latency = the target's
percentile minus direct-to-fake's same percentile, at the same rate (the
difference of two percentiles, not a per-request difference)."""
from __future__ import annotations

TITLES = {"direct": "direct to fake", "relay": "byte relay on core 0",
          "gw1": "gateway, 1 worker", "gw2": "gateway, 2 workers", "litellm": "LiteLLM proxy"}
PACED = "paced_stream_20"
MAX_RPS = (2500, 2000)  # issue 14's goals per core: JSON requests/s, streams/s (24 events)
# (where, what, scenario, load.py's figure, goal for the added p50 and p99 in ms or None):
# a row of the percentiles, then a row of what the target adds to direct's
LATENCY_ROWS = [
    ("JSON @20/s", "latency", "json_20", "total_ms", (0.5, 2)),
    ("JSON @200/s", "latency", "json_200", "total_ms", (0.5, 2)),
    ("JSON, concurrency 1", "latency", "json_c1", "total_ms", (None, 1)),
    ("stream @20/s", "TTFB", "stream_20", "ttfb_ms", (0.5, 2)),
    ("stream @200/s", "TTFB", "stream_200", "ttfb_ms", (0.5, 2)),
    ("stream @200/s", "whole stream", "stream_200", "total_ms", (None, None)),
    ("stream, concurrency 1", "TTFB", "stream_c1", "ttfb_ms", (None, 1)),
    ("paced stream @20/s", "TTFT", PACED, "ttft_ms", (0.5, 2)),
    ("paced stream @20/s", "gap between events", PACED, "gap_ms", (None, 1)),
    ("paced stream @20/s", "an event's trip from the fake", PACED, "trip_ms", (None, None)),
    ("400 KB JSON @50/s", "latency", "large_json_50", "total_ms", (1, None)),
    ("400 KB stream @50/s", "TTFB", "large_stream_50", "ttfb_ms", (1, None)),
]
LOW_RATE_CPU = ("json_20", "json_200", "json_c1")


def _get(res: dict, scenario: str, *path):
    value = res.get(scenario)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ms(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def _pair(a, b, sign="") -> str:
    if a is None and b is None:
        return "—"
    fmt = (lambda v: "—" if v is None else f"{v:+.2f}") if sign else _ms
    return f"{fmt(a)} / {fmt(b)}"


def _mark(value, limit, higher=False) -> str:
    if value is None or limit is None:
        return ""
    return " ✓" if (value >= limit if higher else value <= limit) else " ✗"


def _low_rate_note(dur: dict) -> str:
    samples = dur.get("samples")
    return f" (at 20/s: {samples / 20:g} s, {samples} requests)" if samples else ""


def goals(goal: tuple) -> str:
    """'≤ 0.5 / ≤ 2', '— / ≤ 1', or '' for a row without a goal."""
    if goal == (None, None):
        return ""
    return " / ".join("—" if g is None else f"≤ {g:g}" for g in goal)


def _added(results, target, scenario, kind, p):
    mine, base = _get(results.get(target, {}), scenario, kind, p), \
        _get(results.get("direct", {}), scenario, kind, p)
    return None if mine is None or base is None else mine - base


def markdown(ctx: dict, dur: dict, results: dict, notes: dict) -> str:
    cols = [t for t in TITLES if t in results or t in notes]
    rows: list[tuple[str, str, dict]] = []

    def row(label, target, cell):
        rows.append((label, target, {t: (cell(t) if t in results else "—") for t in cols}))

    def rate(scenario, limit):
        def cell(t):
            v = _get(results[t], scenario, "rps")
            err = _get(results[t], scenario, "errors")
            extra = f" ({err} errors)" if err else ""
            return "—" if v is None else f"{v:,.0f}{extra}" + (_mark(v, limit, True) if t != "direct" else "")
        return cell

    def overloaded(t, scenario) -> str:
        lag = _get(results[t], scenario, "send_lag_ms", "max")
        return " (overloaded: client fell behind)" if lag is not None and lag > 100 else ""

    def unpaced(t, scenario) -> bool:
        """A paced scenario whose events carried no send time: the target did not pass
        `bench_pace` on at the start of the body, so the fake did not pace it."""
        return scenario == PACED and scenario in results[t] and \
            _get(results[t], scenario, "trip_ms", "p50") is None

    def absolute(scenario, kind):
        return lambda t: "not paced (bench_pace not forwarded)" if unpaced(t, scenario) else \
            _pair(_get(results[t], scenario, kind, "p50"),
                  _get(results[t], scenario, kind, "p99")) + overloaded(t, scenario)

    def added(scenario, kind, lim50=None, lim99=None):
        def cell(t):
            if t == "direct":
                return "(baseline)"
            if unpaced(t, scenario):
                return "—"
            a, b = _added(results, t, scenario, kind, "p50"), _added(results, t, scenario, kind, "p99")
            return _pair(a, b, "+") + (_mark(a, lim50) + _mark(b, lim99) if a is not None else "")
        return cell

    def rss(t):
        procs = results[t].get("rss")
        if not procs:
            return "—"
        worst = max(p["rss_mb"] for p in procs)
        peak = max(p["hwm_mb"] for p in procs)
        return f"{worst:.0f} / {peak:.0f} ({len(procs)} proc)" + _mark(worst, 100)

    def errors(t):
        sent = sum((_get(results[t], s, "sent") or _get(results[t], s, "requests") or 0) +
                   (_get(results[t], s, "unsent") or 0) for s in results[t] if s != "rss")
        bad = sum(_get(results[t], s, "errors") or 0 for s in results[t] if s != "rss")
        failed = [s for s in results[t] if s != "rss" and "failed" in results[t][s]]
        return f"{bad} / {sent:,}" + (f"; failed: {', '.join(failed)}" if failed else "")

    def cpu(scenario):
        def cell(t):
            b = _get(results[t], scenario, "cpu_busy_pct") or {}
            return " / ".join(f"{b.get(k, '?')}" for k in ("cpu0", "cpu1")) if b else "—"
        return cell

    def cpu_per_request(t):
        vals = [_get(results[t], s, "cpu_us_per_request") for s in ("json_max", "stream_max")]
        return " / ".join("—" if v is None else f"{v:,}" + _mark(v, 1e6 / r)
                          for v, r in zip(vals, MAX_RPS))

    def other(t):
        vals = [_get(results[t], s, "other_cpu_pct") for s in results[t] if s != "rss"]
        vals = [v for v in vals if v is not None]
        return f"{max(vals)}" if vals else "—"

    def lag(t):
        lags = [_get(results[t], s, "send_lag_ms", "max") for s in results[t] if s != "rss"]
        lags = [v for v in lags if v is not None]
        return _ms(max(lags)) if lags else "—"

    def low_rate_cpu(t):
        vals = [_get(results[t], s, "cpu_us_per_request") for s in LOW_RATE_CPU]
        return " / ".join("—" if v is None else f"{v:,}" for v in vals)

    c = dur["conns"]
    row(f"JSON requests/s, closed loop, {c} conns", f"≥ {MAX_RPS[0]:,}", rate("json_max", MAX_RPS[0]))
    row(f"streams/s, closed loop, {c} conns", f"≥ {MAX_RPS[1]:,}", rate("stream_max", MAX_RPS[1]))
    for where, what, scenario, kind, goal in LATENCY_ROWS:
        row(f"{where}: {what} p50 / p99 ms", "", absolute(scenario, kind))
        added_what = f"**added {what}**" if goal != (None, None) else f"added {what}"
        row(f"{where}: {added_what} p50 / p99 ms", goals(goal), added(scenario, kind, *goal))
    row("RSS per worker MB after load (VmRSS / VmHWM)", "≤ 100", rss)
    row("errors / requests (unsent included), all scenarios", "0", errors)
    row("CPU µs per request of the measured process, JSON max / stream max",
        " / ".join(f"≤ {1e6 / r:,.0f}" for r in MAX_RPS), cpu_per_request)
    row("CPU µs per request, JSON @20/s / @200/s / concurrency 1 (idle work included)", "",
        low_rate_cpu)
    row("CPU busy % core 0 / core 1, JSON max", "", cpu("json_max"))
    row("CPU busy % core 0 / core 1, stream max", "", cpu("stream_max"))
    row("open-loop client: worst send lag ms", "", lag)
    row("CPU of other processes, worst scenario (% of a core)", "~0", other)

    out = ["# Bench results", "",
           f"- date: {ctx['date']}; commit: {ctx['commit']}; quick: {ctx['quick']}",
           f"- machine: {ctx['machine']}; Python {ctx['python']}; {ctx['versions']}",
           f"- measured process pinned to core 0 (`taskset -c 0`); fake upstream and load "
           f"generator on core 1; closed loop: wrk -t1 -c{c}, best of {dur.get('repeat', 1)} × "
           f"{dur['throughput']} s; "
           f"open loop: {ctx['load_loop']} client, {dur['latency']} s after {dur['warmup']} s "
           f"warm-up{_low_rate_note(dur)}; concurrency 1: one connection, the next request "
           "sent when an answer ends; paced stream: the fake sends the first token 200 ms "
           "after the request, then an event every 20 ms; gateway: gunicorn + gevent, "
           "PROVIDER_NAME=openai, default LOG_LEVEL (one access-log line per request)",
           *([f"- extra gateway environment: `{ctx['gateway_env']}`"] if ctx.get("gateway_env") else []),
           "- ✓/✗: the issue's target reached or not on this run (one noisy run: compare ratios)",
           "", "| metric | target | " + " | ".join(TITLES[t] for t in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for label, target, cells in rows:
        out.append(f"| {label} | {target} | " + " | ".join(cells[t] for t in cols) + " |")
    if notes:
        out += ["", "Notes:"] + [f"- {TITLES.get(t, t)}: {n}" for t, n in notes.items()]
    return "\n".join(out) + "\n"
