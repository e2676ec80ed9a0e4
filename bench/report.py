"""The Markdown table of a bench run (bench/run.py). Added latency = the target's
percentile minus direct-to-fake's same percentile, at the same rate (the
difference of two percentiles, not a per-request difference)."""
from __future__ import annotations

TITLES = {"direct": "direct to fake", "gw1": "gateway, 1 worker", "gw2": "gateway, 2 workers",
          "litellm": "LiteLLM proxy"}


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


def _added(results, target, scenario, kind, p):
    mine, base = _get(results.get(target, {}), scenario, kind, p), \
        _get(results.get("direct", {}), scenario, kind, p)
    return None if mine is None or base is None else mine - base


def markdown(ctx: dict, dur: dict, results: dict, notes: dict) -> str:
    cols = [t for t in ("direct", "gw1", "gw2", "litellm") if t in results or t in notes]
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

    def absolute(scenario, kind):
        return lambda t: _pair(_get(results[t], scenario, kind, "p50"),
                               _get(results[t], scenario, kind, "p99")) + overloaded(t, scenario)

    def added(scenario, kind, lim50=None, lim99=None):
        def cell(t):
            if t == "direct":
                return "(baseline)"
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
        return " / ".join("—" if v is None else f"{v:,}" for v in vals)

    def other(t):
        vals = [_get(results[t], s, "other_cpu_pct") for s in results[t] if s != "rss"]
        vals = [v for v in vals if v is not None]
        return f"{max(vals)}" if vals else "—"

    def lag(t):
        lags = [_get(results[t], s, "send_lag_ms", "max") for s in results[t] if s != "rss"]
        lags = [v for v in lags if v is not None]
        return _ms(max(lags)) if lags else "—"

    c = dur["conns"]
    row(f"JSON requests/s, closed loop, {c} conns", "≥ 1500", rate("json_max", 1500))
    row(f"streams/s, closed loop, {c} conns", "≥ 1000", rate("stream_max", 1000))
    row("JSON @200/s: latency p50 / p99 ms", "", absolute("json_200", "total_ms"))
    row("JSON @200/s: **added** p50 / p99 ms", "≤ 1 / ≤ 3", added("json_200", "total_ms", 1, 3))
    row("stream @200/s: TTFB p50 / p99 ms", "", absolute("stream_200", "ttfb_ms"))
    row("stream @200/s: **added TTFB** p50 / p99 ms", "≤ 1", added("stream_200", "ttfb_ms", 1))
    row("stream @200/s: whole stream p50 / p99 ms", "", absolute("stream_200", "total_ms"))
    row("stream @200/s: added whole stream p50 / p99", "", added("stream_200", "total_ms"))
    row("400 KB JSON @50/s: latency p50 / p99 ms", "", absolute("large_json_50", "total_ms"))
    row("400 KB JSON @50/s: **added** p50 / p99 ms", "", added("large_json_50", "total_ms"))
    row("400 KB stream @50/s: TTFB p50 / p99 ms", "", absolute("large_stream_50", "ttfb_ms"))
    row("400 KB stream @50/s: **added TTFB** p50 / p99", "", added("large_stream_50", "ttfb_ms"))
    row("RSS per worker MB after load (VmRSS / VmHWM)", "≤ 100", rss)
    row("errors / requests (unsent included), all scenarios", "0", errors)
    row("CPU µs per request of the measured process, JSON max / stream max", "",
        cpu_per_request)
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
           "warm-up; gateway: gunicorn + gevent, PROVIDER_NAME=openai, default LOG_LEVEL "
           "(one access-log line per request)",
           *([f"- extra gateway environment: `{ctx['gateway_env']}`"] if ctx.get("gateway_env") else []),
           "- ✓/✗: the issue's target reached or not on this run (one noisy run: compare ratios)",
           "", "| metric | target | " + " | ".join(TITLES[t] for t in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for label, target, cells in rows:
        out.append(f"| {label} | {target} | " + " | ".join(cells[t] for t in cols) + " |")
    if notes:
        out += ["", "Notes:"] + [f"- {TITLES.get(t, t)}: {n}" for t, n in notes.items()]
    return "\n".join(out) + "\n"
