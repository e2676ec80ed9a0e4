"""Prometheus metrics, correct across gunicorn workers (multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set, as gunicorn.conf.py does).

Names follow OpenTelemetry's GenAI semantic conventions where one exists
(gen_ai.client.operation.duration, gen_ai.client.token.usage,
gen_ai.server.time_to_first_token, attribute gen_ai.provider.name ...), with
Prometheus' underscores. Everything that the log also holds is counted from
the rows the log writer has written, so /metrics and the log agree.
"""
from __future__ import annotations

import os
from bisect import bisect_left
from collections import defaultdict, deque
from dataclasses import dataclass

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from prometheus_client import multiprocess

LABELS = ("gen_ai_provider_name", "gen_ai_request_model")
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

REQUESTS = Counter("switchboard_requests", "Chat completion requests", (*LABELS, "status"))
DURATION = Histogram("gen_ai_client_operation_duration_seconds",
                     "Chat completion duration, as the client saw it",
                     (*LABELS, "error_type"), buckets=_SECONDS)
TTFT = Histogram("gen_ai_server_time_to_first_token_seconds", "Time to the first byte of the answer",
                 LABELS, buckets=_SECONDS)
TOKEN_USAGE = Histogram("gen_ai_client_token_usage", "Tokens per request, by type",
                        (*LABELS, "gen_ai_token_type"), buckets=_TOKENS)
TOKENS = Counter("switchboard_tokens", "Tokens, by type (input, output, cached, reasoning)",
                 (*LABELS, "gen_ai_token_type"))
COST = Counter("switchboard_cost_usd", "Cost in USD of answered requests with a known price", LABELS)
UPSTREAM_ERRORS = Counter("switchboard_upstream_errors", "Failed provider calls, by error type",
                          ("gen_ai_provider_name", "error_type"))
IN_FLIGHT = Gauge("switchboard_requests_in_flight", "Chat completions being served",
                  multiprocess_mode="livesum")
QUEUE_DEPTH = Gauge("switchboard_log_queue_depth", "Rows waiting for the log writer",
                    multiprocess_mode="livesum")
DROPPED = Counter("switchboard_log_rows_dropped", "Log rows dropped (queue full or unwritable)")


class InFlight:
    """This worker's count of chat calls being served: a plain integer on the
    request path (a multiprocess gauge update costs a locked mmap write), published
    to IN_FLIGHT by the Pump."""
    count = 0

    @classmethod
    def inc(cls) -> None:
        cls.count += 1

    @classmethod
    def dec(cls) -> None:
        cls.count -= 1


@dataclass(slots=True, frozen=True)
class Written:
    """What the log writer wrote for one request (fed from the writer thread)."""
    provider: str
    model: str
    status: int
    error_type: str | None
    latency_s: float | None
    ttft_s: float | None
    tokens: tuple[tuple[str, int], ...]
    cost: float | None


class Feed:
    """Rows written by the writer's OS thread, applied to the metrics from the
    serving side: prometheus_client's locks are gevent locks inside a gevent
    worker and must not be taken from a foreign OS thread."""

    def __init__(self):
        self._rows: deque[Written] = deque()
        self.push = self._rows.append

    def apply(self) -> None:
        """Add up what was written since the last tick, then update each series
        once: a multiprocess update takes a lock, checks the pid and writes the
        mmap, so per-row updates cost ~40 µs a request."""
        rows = self._rows
        if not rows:
            return
        batch = Batch()
        while rows:
            batch.add(rows.popleft())
        batch.publish()


_children: dict[tuple, object] = {}


def _child(series: tuple):
    """The child of `(metric, *labels)`, cached: label lookups cost more than the update."""
    child = _children.get(series)
    if child is None:
        child = _children[series] = series[0].labels(*series[1:])
    return child


class Batch:
    """Counter increments and histogram observations, summed per series."""

    def __init__(self):
        self.counts: dict[tuple, float] = defaultdict(float)
        self.observed: dict[tuple, list[float]] = defaultdict(list)

    def add(self, row: Written) -> None:
        labels = (row.provider, row.model)
        self.counts[(REQUESTS, *labels, str(row.status))] += 1
        if row.latency_s is not None:
            self.observed[(DURATION, *labels, row.error_type or "")].append(row.latency_s)
        if row.ttft_s is not None and row.status < 400:
            self.observed[(TTFT, *labels)].append(row.ttft_s)
        for kind, count in row.tokens:
            self.counts[(TOKENS, *labels, kind)] += count
            if kind in ("input", "output"):
                self.observed[(TOKEN_USAGE, *labels, kind)].append(count)
        if row.cost:
            self.counts[(COST, *labels)] += row.cost
        if row.error_type and row.provider != "none":
            self.counts[(UPSTREAM_ERRORS, row.provider, row.error_type)] += 1

    def publish(self) -> None:
        for series, amount in self.counts.items():
            _child(series).inc(amount)
        for series, values in self.observed.items():
            _observe_all(_child(series), values)


def _observe_all(histogram, values: list[float]) -> None:
    """`observe` each value, with one update per bucket touched. prometheus_client
    (pinned) has no batch observe; a child keeps its bucket counters in `_buckets`
    against `_upper_bounds` (each bucket counts values up to its bound; the scrape
    makes them cumulative) and the total in `_sum`."""
    bounds, per_bucket = histogram._upper_bounds, defaultdict(int)
    for value in values:
        per_bucket[bisect_left(bounds, value)] += 1
    histogram._sum.inc(sum(values))
    for index, count in per_bucket.items():
        histogram._buckets[index].inc(count)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class Pump:
    """Every `interval` seconds, on the serving side: apply written rows, publish
    the log queue depth and dropped-row count."""

    def __init__(self, feed: Feed, writer, interval: float = 0.25):
        self.feed = feed
        self.writer = writer
        self.interval = interval
        self._dropped = 0

    def tick(self) -> None:
        self.feed.apply()
        IN_FLIGHT.set(InFlight.count)
        QUEUE_DEPTH.set(self.writer.depth())
        dropped = self.writer.dropped
        if dropped > self._dropped:
            DROPPED.inc(dropped - self._dropped)
            self._dropped = dropped

    def start(self) -> None:
        def loop(sleep):
            while True:
                sleep(self.interval)
                try:
                    self.tick()
                except Exception:  # pragma: no cover - never let metrics kill the worker
                    import logging
                    logging.getLogger("switchboard.metrics").exception("metrics pump failed")

        try:
            from gevent import monkey
            if monkey.is_module_patched("threading"):
                import gevent
                gevent.spawn(loop, gevent.sleep)
                return
        except ImportError:  # pragma: no cover
            pass
        import threading
        import time
        threading.Thread(target=loop, args=(time.sleep,), daemon=True).start()
