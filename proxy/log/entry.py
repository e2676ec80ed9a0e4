"""What the hot path hands to the log: references and timings, nothing parsed."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Entry:
    request_id: str
    created_at: float
    #: the client's own id for the request (X-Client-Request-Id / X-Request-Id)
    client_request_id: str | None = None
    status: int = 200
    provider: str | None = None
    model_requested: str | None = None
    model_upstream: str | None = None
    session_id: str | None = None
    api_key_id: str | None = None
    error_type: str | None = None
    streamed: bool = False
    client_disconnected: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    messages: list | None = None
    #: the bytes the client received (or, for usage the gateway asked for, would
    #: have): the JSON body, or the SSE chunks; parsed by the writer, off the hot path
    pieces: list[bytes] = field(default_factory=list)
    #: set only when a session turn is written by the gateway itself
    session_turn: bool = False
    #: prompt tokens estimated on the request path, for a row rebuilt from the
    #: journal without its messages (a request the process died serving)
    prompt_estimate: int | None = None
    #: n for the row of a request's n-th failed try that a retry or fallback followed;
    #: 0 for the request's own row (usage and metrics count requests, not tries)
    attempt: int = 0
    #: the OpenTelemetry trace the request was part of (when tracing is on)
    trace_id: str | None = None
