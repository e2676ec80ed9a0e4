"""The spans of one request (imported only when tracing is on).

    chat gpt-4o-mini             SERVER    one per gateway request (POST /v1/chat/completions,
    |                                      a session message...): GenAI attributes
    +- chat gpt-4o-mini          CLIENT    one per upstream attempt (retries, fallbacks);
    +- chat gpt-4o               CLIENT    the last one lasts until the answer is sent

    POST /v1/compare             SERVER    (compare, chain: HTTP attributes)
    +- chat gpt-4o-mini          INTERNAL  one per model call, GenAI attributes
       +- chat gpt-4o-mini       CLIENT    its attempts

A `Trace` hangs on the request's RequestLog (`record.trace`); the request path
calls it only through that attribute. Nothing here is attached to the ambient
OpenTelemetry context: parents are passed explicitly, so greenlets (compare's
model calls) need no context copied. The client's `traceparent`/`tracestate`
are the server span's parent; each attempt's context goes upstream as
`traceparent` (and `tracestate`)."""
from __future__ import annotations

import logging

from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy import __version__
from proxy.tracing import attributes as attrs
from proxy.tracing import export

log = logging.getLogger("switchboard.tracing")
_W3C = TraceContextTextMapPropagator()  # traceparent and tracestate only: no baggage upstream
CHAT = "chat"


class Tracer:
    def __init__(self, provider, capture: bool):
        self.provider, self.capture = provider, capture
        self.tracer = provider.get_tracer("switchboard", __version__)

    @classmethod
    def start(cls, capture: bool) -> "Tracer":
        return cls(export.provider(), capture)

    def request(self, record, headers, method: str | None, route: str | None = None) -> None:
        """A server span for `record`, continuing the client's trace when it sent a
        valid `traceparent`. `route`: the URL rule (low cardinality), else the path."""
        method, path, route = attrs.http_method(method), attrs.bounded(record.path), attrs.bounded(route)
        found = {"http.request.method": method, "url.path": path, **_ids(record)}
        if route:
            found["http.route"] = route
        span = self.tracer.start_span(f"{method} {route or path}", context=_W3C.extract(headers),
                                      kind=SpanKind.SERVER, attributes=found)
        Trace(self, span).hang_on(record)

    def call(self, record, parent: "Trace") -> None:
        span = self.tracer.start_span(CHAT, context=set_span_in_context(parent.span),
                                      kind=SpanKind.INTERNAL, attributes=_ids(record))
        Trace(self, span).hang_on(record)

    def shutdown(self) -> None:
        export.shutdown(self.provider)


def _ids(record) -> dict:
    """The gateway's ids of a request (the client's own is a checked token)."""
    if record.client_request_id:
        return {"switchboard.request_id": record.request_id,
                "switchboard.client_request_id": record.client_request_id}
    return {"switchboard.request_id": record.request_id}


class Trace:
    """The spans of one request (or one compare/chain call): its own and its
    current upstream attempt's."""
    __slots__ = ("tracer", "span", "attempt_span", "attempts", "server")

    def __init__(self, tracer: Tracer, span):
        self.tracer, self.span = tracer, span
        self.attempt_span = None
        self.attempts = 0
        self.server: dict = {}  # server.address/port of the last upstream tried

    def hang_on(self, record) -> None:
        record.trace = self
        record.trace_id = format(self.span.get_span_context().trace_id, "032x")

    def child(self, record) -> None:
        self.tracer.call(record, self)

    # -- upstream attempts (proxy.routing.attempts, through completion.RecordTracker)
    def attempt(self, route, call) -> None:
        """Before each try: its span, whose context goes upstream with the call."""
        self.attempts += 1
        self.server = attrs.server(route.provider.spec.base_url)
        model = attrs.bounded(route.model)
        span = self.tracer.tracer.start_span(
            f"{CHAT} {model}", context=set_span_in_context(self.span), kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": CHAT, "gen_ai.provider.name": route.provider.name,
                        "gen_ai.request.model": model, "switchboard.attempt": self.attempts,
                        **self.server})
        self.attempt_span = span
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=set_span_in_context(span))
        call.trace_headers = carrier

    def attempt_failed(self, error) -> None:
        span, self.attempt_span = self.attempt_span, None
        if span is not None:
            _failed(span, attrs.bounded(error.code or error.type) or str(error.status),
                    error.status, error.message)

    # -- attempts raced in parallel (proxy/routing/hedge.py) -----------------------
    def race_attempt(self, route, call):
        """A raced attempt's span, started as `attempt` starts one, and returned: several
        are open at once, and the winner's becomes the request's attempt span."""
        current = self.attempt_span
        self.attempt(route, call)
        span, self.attempt_span = self.attempt_span, current
        return span

    def race_won(self, span) -> None:
        self.attempt_span = span

    @staticmethod
    def race_lost(span, kind: str, status: int, message: str) -> None:
        _failed(span, attrs.bounded(kind), status, message)

    # -- the end of the request (RequestLog.finish) ------------------------------
    def end(self, record) -> None:
        try:
            self._end(record)
        except Exception:  # a span must never break a response's close
            log.exception("could not end a span")
            self.span.end()

    def _end(self, record) -> None:
        span, attempt = self.span, self.attempt_span
        self.attempt_span = None
        error = self._describe(record) if span.is_recording() else None
        if attempt is not None:  # the attempt that answered: it lasted until now
            if error and record.status < 400:  # it failed after its first byte
                attempt.set_attributes({"error.type": error})
                attempt.set_status(Status(StatusCode.ERROR))
            attempt.end()
        span.end()

    def _describe(self, record) -> str | None:
        """Set the request span's attributes and status; return its error type, if any."""
        found = {"http.response.status_code": record.status}
        if record.disconnected:
            found["switchboard.client_disconnected"] = True
        error = attrs.bounded(record.error) or (str(record.status) if record.status >= 500 else None)
        if error:
            found["error.type"] = error
        if record.sink is not None:  # a completion call (not a compare, a key, a session...)
            answer = attrs.answer(record.pieces, record.stream) if record.pieces else {}
            found = {**self._call_attributes(record, answer), **answer, **found}
            if record.model_requested:
                self.span.update_name(f"{CHAT} {attrs.bounded(record.model_requested)}")
        self.span.set_attributes(found)
        if record.status >= 500 or (error and record.status < 400):  # a client's 4xx is not ours
            self.span.set_status(Status(StatusCode.ERROR))
        return error

    def _call_attributes(self, record, answer: dict) -> dict:
        """The GenAI attributes of a completion call besides its answer's."""
        found = {"gen_ai.operation.name": CHAT,
                 "gen_ai.request.model": attrs.bounded(record.model_requested),
                 "gen_ai.provider.name": record.provider,
                 "gen_ai.request.stream": record.stream,
                 "gen_ai.conversation.id": attrs.bounded(record.session_id),
                 **self.server}
        if record.ttfb is not None:
            found["gen_ai.response.time_to_first_chunk"] = record.ttfb
        if self.tracer.capture:
            found.update(attrs.content(record.messages, record.pieces, record.stream,
                                       answer.get("gen_ai.response.finish_reasons")))
        return {k: v for k, v in found.items() if v is not None}


def _failed(span, kind: str, status: int, message: str) -> None:
    span.set_attributes({"error.type": kind, "http.response.status_code": status})
    span.set_status(Status(StatusCode.ERROR, attrs.bounded(message)))
    span.end()
