"""Prometheus metrics, correct across gunicorn workers (multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set, as gunicorn.conf.py does).

Names follow OpenTelemetry's GenAI semantic conventions where one exists
(gen_ai.client.operation.duration, gen_ai.client.token.usage,
gen_ai.server.time_to_first_token, attribute gen_ai.provider.name ...), with
Prometheus' underscores. Everything that the log also holds is counted from
the rows the log writer has written, so /metrics and the log agree.

Label values that come from outside (model names clients choose, error types
and statuses upstreams send) are folded into a set fixed at start-up
(`LabelValues`): the number of series is bounded whatever clients send.
"""
from __future__ import annotations

import os
from collections import defaultdict, deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Callable, Iterable, Mapping

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from prometheus_client import multiprocess

from proxy.shims.prometheus import observe_all

LABELS = ("gen_ai_provider_name", "gen_ai_request_model")
NONE = "none"    # no provider or model: a call refused before either was chosen
OTHER = "other"  # any label value from outside that nothing configured names
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
ATTEMPTS = Counter("switchboard_upstream_attempts",
                   "Calls to providers, retries and fallbacks included", (*LABELS, "status"))
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


#: error types and codes kept as labels: the gateway's own (proxy/errors.py, the codes
#: raised with it and the providers' mapped ones) and OpenAI's documented ones
#: ("requests"/"tokens": its 429 types; "error": a stream error event without a type)
ERROR_TYPES = frozenset((
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "rate_limit_error", "server_error", "api_error", "insufficient_quota", "requests", "tokens",
    "error", "context_length_exceeded", "string_above_max_length", "invalid_api_key",
    "expired_api_key", "missing_api_key", "permission_denied", "model_not_allowed",
    "provider_not_allowed", "provider_not_configured", "not_found", "model_not_found",
    "method_not_allowed", "invalid_json", "invalid_value", "invalid_type", "invalid_image_url",
    "missing_required_parameter", "unknown_parameter", "unsupported_parameter",
    "unsupported_value", "unsupported_media_type", "request_too_large", "request_timeout",
    "rate_limit_exceeded", "no_model_fits", "session_exists", "conflict", "overloaded",
    "service_unavailable", "upstream_error", "upstream_timeout", "upstream_auth_error",
    "upstream_truncated", "internal_error", "interrupted", "content_filter",
    "content_policy_violation"))
# statuses kept as labels (499: a request its process died serving; 529: overloaded);
# any other is labelled by its class, "4xx"
_STATUSES = {code: str(code) for code in (*map(int, HTTPStatus), 499, 529)}


class LabelValues:
    """Label values from outside, folded into a set fixed at start-up. A model the
    gateway knows keeps its name; one the price table knows is labelled as its
    entry there (`gpt-4o-2024-08-06` -> `gpt-4o`); any other is OTHER."""

    def __init__(self, providers: Iterable[str] = (), models: Iterable[str] = (),
                 priced_as: Callable[[str], str | None] = lambda model: None):
        self.providers = frozenset((*providers, NONE))
        self.models = frozenset((*models, NONE))
        self.priced_as = priced_as

    @classmethod
    def configured(cls, providers: Mapping, models: Mapping, catalog: Iterable[str],
                   pricing) -> "LabelValues":
        """From the providers (by name), the config's model table, the model
        catalog's names and the price table (`Pricing`)."""
        return cls(providers, known_models(providers, models, catalog), pricing.resolve)

    def provider(self, name: str) -> str:
        return name if name in self.providers else OTHER

    def model(self, name: str) -> str:
        return name if name in self.models else self.priced_as(name) or OTHER

    @staticmethod
    def error(kind: str) -> str:
        return kind if kind in ERROR_TYPES else OTHER

    @staticmethod
    def status(code: int) -> str:
        return _STATUSES.get(code) or (f"{code // 100}xx" if 100 <= code < 600 else OTHER)


def known_models(providers: Mapping, models: Mapping, catalog: Iterable[str]) -> set[str]:
    """Every model id the gateway may send upstream or list: the providers'
    models, aliases and default models; the model table's names, deployments and
    fallbacks (`provider/model` sends `model`); the catalog's names."""
    known = {*models, *catalog}
    for provider in providers.values():
        known.update(provider.known_models(), provider.spec.aliases.values(),
                     (provider.spec.default_model,))
    for entry in models.values():
        known.update(target.model for target in entry.targets)
        for fallback in entry.fallbacks:
            prefix, _, model = fallback.partition("/")
            known.add(model if prefix in providers and model else fallback)
    known.discard(None)
    return known


@dataclass(slots=True, frozen=True)
class Written:
    """What the log writer wrote for one request, or for one of its failed tries
    that a retry or fallback followed (`attempt`); fed from the writer thread."""
    provider: str
    model: str
    status: int
    error_type: str | None
    latency_s: float | None
    ttft_s: float | None
    tokens: tuple[tuple[str, int], ...]
    cost: float | None
    attempt: bool = False


class Feed:
    """Rows written by the writer's OS thread, applied to the metrics from the
    serving side: prometheus_client's locks are gevent locks inside a gevent
    worker and must not be taken from a foreign OS thread."""

    def __init__(self, labels: LabelValues | None = None):
        self._rows: deque[Written] = deque()
        self.push = self._rows.append
        self.labels = labels or LabelValues()

    def apply(self) -> None:
        """Add up what was written since the last tick, then update each series
        once: a multiprocess update takes a lock, checks the pid and writes the
        mmap, so per-row updates cost ~40 µs a request."""
        rows = self._rows
        if not rows:
            return
        batch = Batch(self.labels)
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

    def __init__(self, labels: LabelValues):
        self.labels = labels
        self.counts: dict[tuple, float] = defaultdict(float)
        self.observed: dict[tuple, list[float]] = defaultdict(list)

    def add(self, row: Written) -> None:
        fold = self.labels
        labels, status = (fold.provider(row.provider), fold.model(row.model)), fold.status(row.status)
        if row.provider != NONE:  # a provider was called: the row holds a try
            self.counts[(ATTEMPTS, *labels, status)] += 1
            if row.error_type:
                self.counts[(UPSTREAM_ERRORS, labels[0], fold.error(row.error_type))] += 1
        if not row.attempt:
            self._add_request(row, labels, status)

    def _add_request(self, row: Written, labels: tuple[str, str], status: str) -> None:
        """A call to the gateway (its failed tries are counted as attempts only)."""
        self.counts[(REQUESTS, *labels, status)] += 1
        if row.latency_s is not None:
            error = self.labels.error(row.error_type) if row.error_type else ""
            self.observed[(DURATION, *labels, error)].append(row.latency_s)
        if row.ttft_s is not None and row.status < 400:
            self.observed[(TTFT, *labels)].append(row.ttft_s)
        for kind, count in row.tokens:
            self.counts[(TOKENS, *labels, kind)] += count
            if kind in ("input", "output"):
                self.observed[(TOKEN_USAGE, *labels, kind)].append(count)
        if row.cost:
            self.counts[(COST, *labels)] += row.cost

    def publish(self) -> None:
        for series, amount in self.counts.items():
            _child(series).inc(amount)
        for series, values in self.observed.items():
            observe_all(_child(series), values)


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
