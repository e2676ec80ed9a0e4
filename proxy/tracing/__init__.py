"""OpenTelemetry traces of the gateway's requests, off unless configured.

Off (no OTLP endpoint, or OTEL_SDK_DISABLED=true), the SDK is never imported:
`start` returns None, a request's `trace` stays None, and each hook on the
request path costs one attribute check. On, the spans are made in
proxy/tracing/spans.py and exported in batches by the SDK (proxy/tracing/export.py).

Configured only by the standard `OTEL_*` variables; the SDK reads the rest itself
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG],
OTEL_EXPORTER_OTLP_[TRACES_]HEADERS/TIMEOUT/COMPRESSION, OTEL_BSP_*)."""
from __future__ import annotations

from typing import Mapping

# what this gateway ships: the OTLP/HTTP protobuf exporter, nothing else
_EXPORTERS = ("", "otlp", "none")
_PROTOCOLS = ("", "http/protobuf")


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def wanted(env: Mapping[str, str]) -> bool:
    """Whether to trace: an OTLP endpoint is set, or OTEL_TRACES_EXPORTER=otlp (the
    SDK's default endpoint, localhost:4318); OTEL_SDK_DISABLED=true and
    OTEL_TRACES_EXPORTER=none win. A value this gateway cannot honour stops it at
    start, rather than silently exporting nothing."""
    if _flag(env, "OTEL_SDK_DISABLED"):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter not in _EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: this gateway "
                         "exports traces with OTLP over HTTP ('otlp') or not at all ('none').")
    on = exporter == "otlp" or (exporter != "none" and bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")))
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        if on and env.get(name, "").strip().lower() not in _PROTOCOLS:
            raise ValueError(f"{name}={env[name]!r} is not supported: this gateway exports "
                             "OTLP as 'http/protobuf'.")
    return on


def capture_wanted(env: Mapping[str, str]) -> bool:
    """Message content in spans only when asked, as the GenAI conventions say."""
    return _flag(env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")


def start(config):
    """The worker's tracer (proxy.tracing.spans.Tracer), or None when tracing is off.
    Called by create_app, hence in each gunicorn worker after the fork and after
    gevent patched it (post_fork runs before the patching)."""
    if not config.tracing:
        return None
    from proxy.tracing.spans import Tracer
    return Tracer.start(capture=config.trace_content)


def follow(record, parent) -> None:
    """`record` (one call of a compare or chain) as a child span of `parent`'s
    request (both RequestLogs), when that request is traced."""
    if parent is not None and parent.trace is not None:
        parent.trace.child(record)
