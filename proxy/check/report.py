"""The checker's report: the rules' rows and the timings' percentiles, as a table
for a person or as JSON for a machine. Everything that came from the server is made
safe to print here, once: the key scrubbed out, control characters escaped."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from proxy.redact import scrub

TIMINGS = {
    "ttfb": "time to first byte",
    "first_chunk": "time to first chunk",
    "first_token": "time to first token (content, tool call or reasoning)",
    "chunk_gap": "gap between consecutive events",
}
DETAIL_LIMIT = 160


@dataclass(frozen=True)
class Row:
    name: str
    checks: str
    passed: bool
    detail: str


def percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value that `share` of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def summarize(samples: list[dict[str, list[float]]]) -> dict[str, dict]:
    """Per timing, over every run: count, p50, p95 and max, in milliseconds."""
    summary = {}
    for name in TIMINGS:
        values = [v * 1000 for sample in samples for v in sample[name]]
        summary[name] = {"count": len(values),
                         **{label: _ms(percentile(values, share))
                            for label, share in (("p50", 0.5), ("p95", 0.95), ("max", 1.0))}}
    return summary


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def printable(text: str, key: str | None) -> str:
    """A server's words, safe for a terminal: no key, no control characters, bounded."""
    text = scrub(text, (key,) if key else ())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT - 3] + "..."


def _safe_head(head: dict, key: str | None) -> dict:
    return {k: printable(v, key) if isinstance(v, str) else v for k, v in head.items()}


def as_json(head: dict, rows: list[Row], timings: dict, key: str | None) -> str:
    head = _safe_head(head, key)
    checks = [{"name": r.name, "checks": r.checks, "passed": r.passed,
               "detail": printable(r.detail, key)} for r in rows]
    report = {**head, "ok": all(r.passed for r in rows), "checks": checks, "timings_ms": timings}
    return json.dumps(report, indent=2, ensure_ascii=False)


def as_table(head: dict, rows: list[Row], timings: dict, key: str | None) -> str:
    lines = ["  ".join(f"{k}: {v}" for k, v in _safe_head(head, key).items()), ""]
    lines += _table(("check", "result", "detail", "what it checks"),
                    [(r.name, "pass" if r.passed else "FAIL", printable(r.detail, key), r.checks)
                     for r in rows])
    lines += [""] + _table(("timing (ms)", "p50", "p95", "max", "n", "what"),
                           [(name, *(_cell(t[label]) for label in ("p50", "p95", "max")),
                             str(t["count"]), TIMINGS[name]) for name, t in timings.items()])
    failed = [r.name for r in rows if not r.passed]
    lines += ["", f"FAILED: {', '.join(failed)}" if failed else "all checks pass"]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(header: tuple, rows: list[tuple]) -> list[str]:
    """A Markdown table, its columns aligned for reading in a terminal."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]
