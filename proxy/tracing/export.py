"""The SDK's side: a TracerProvider per worker, its spans exported in batches to
OTLP/HTTP, off the request path.

Under gunicorn's gevent worker `threading` is monkey-patched, so the batch
processor's "thread" is a greenlet and the exporter's sockets are gevent's: an
export waits on its socket without holding the loop, and a collector that refuses
connections, or accepts them and never answers, only ever delays that greenlet
(bounded by OTEL_EXPORTER_OTLP_TIMEOUT, 10 s). A request only appends its ended
span to the processor's queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048; past it spans are
dropped, never waited for). A real OS thread would gain nothing (encoding holds the
GIL) and would need a second gevent hub for its sockets."""
from __future__ import annotations

import logging
import time

import gevent
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from proxy import __version__, access_log

DEFAULT_SERVICE_NAME = "switchboard"
SHUTDOWN_SECONDS = 5  # at worker exit: time for the last batch, within gunicorn's graceful timeout
QUIET_SECONDS = 60  # one line per kind of exporter complaint per minute


def resource() -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES as the SDK reads them; without a
    service name of the operator's the service is `switchboard`."""
    found = Resource.create({SERVICE_VERSION: __version__})
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return found


def provider() -> TracerProvider:
    """A provider whose spans go to the OTLP endpoint (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT,
    headers, timeout, compression) through a batch processor (OTEL_BSP_*), sampled by
    OTEL_TRACES_SAMPLER. Shut down by the gateway (bounded), not at interpreter exit."""
    made = TracerProvider(resource=resource(), shutdown_on_exit=False)
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _quiet_sdk_logs()
    return made


def shutdown(made: TracerProvider) -> None:
    """Export what is queued, for at most SHUTDOWN_SECONDS (a hanging collector cannot
    hold a worker's exit: the SDK itself would wait 30 s), then stop. The wait is
    gevent's: in a worker, the processor's greenlet exports meanwhile."""
    with gevent.Timeout(SHUTDOWN_SECONDS, False):
        made.shutdown()


class Quiet(logging.Filter):
    """At most one record per logger and message per QUIET_SECONDS: a dead collector
    makes the exporter complain at every batch and retry."""

    def __init__(self):
        super().__init__()
        self.last: dict[tuple, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.msg), time.monotonic()
        if now - self.last.get(key, -QUIET_SECONDS) < QUIET_SECONDS:
            return False
        self.last[key] = now
        return True


def _quiet_sdk_logs() -> None:
    """The SDK's warnings (export failures) in the gateway's log format, rate-limited."""
    sdk = logging.getLogger("opentelemetry")
    if sdk.handlers:
        return
    # records are made by the SDK's child loggers: a filter on the handler sees them all
    handler = access_log.new_handler()
    handler.addFilter(Quiet())
    sdk.addHandler(handler)
    sdk.setLevel(logging.WARNING)
    sdk.propagate = False
