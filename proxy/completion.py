"""One chat completion, from a client body to a response: validate, route,
execute, relay. Shared by /v1/chat/completions and the session endpoints."""
from __future__ import annotations

from typing import Mapping
from urllib.parse import quote

import orjson

from providers.base import Call
from proxy import metrics, params, tokens
from proxy.access_log import debug_body
from proxy.errors import GatewayError, InvalidRequest
from proxy.policy import access
from proxy.policy.keys import OPEN, presented_key
from proxy.redact import MIN_SECRET_LENGTH
from proxy.routing import attempts, hedge
from proxy.respond import Answer, reply_response
from proxy.schema import validate


def parse_object(raw: bytes) -> dict:
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.",
                             code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def check_model_id(model: str) -> None:
    if params.HAS_CONTROL.search(model):
        raise InvalidRequest("`model` must not contain control characters (CR, LF, NUL...).",
                             param="model", code="invalid_value")


def header_value(text: str) -> str:
    """`text` as an HTTP header value: as it is when it is printable ASCII, else
    percent-encoded UTF-8 (model ids may be any Unicode; a header is Latin-1 at most)."""
    return text if text.isascii() and text.isprintable() else quote(text, safe="")


def track(gateway, record) -> None:
    """Log this request as a completion call (once), and count it in flight."""
    if record.sink is None:
        record.sink = gateway.record
        metrics.InFlight.inc()


def prepare(gateway, body: dict, raw: bytes | None, headers: Mapping[str, str], principal, *,
            request_id: str, capture: list, session_id: str | None = None):
    """Validate, plan and admit one chat body: (the Call, the routes to try).
    `raw` is the client's own encoding of `body` (forwarded as is when the
    gateway changes nothing), or None for a body the gateway built."""
    principal = principal or OPEN
    validate(body)
    body_provider = body.pop("provider", None)
    if body_provider is not None and not isinstance(body_provider, str):
        raise InvalidRequest("`provider` must be a string.", param="provider")
    model = body["model"]
    check_model_id(model)
    routes = access.permitted(principal, model, gateway.router.plan(
        model, headers.get("X-Provider") or body_provider, body=body,
        raw_size=len(raw) if raw is not None else 0, hint=headers.get("x-gateway-route")))
    gateway.budgets.check(principal)
    if session_id is None and headers.get("X-Session-Id") is not None:
        session_id = params.SESSION_HEADER(headers["X-Session-Id"], "X-Session-Id")
        access.check_session(gateway.keys.connection(), session_id, principal)
    prompted = access.add_system_prompt(
        body, principal.system_prompt or gateway.config.default_system_prompt)
    changed = raw is None or prompted or body_provider is not None
    stream = bool(body.get("stream"))
    call = Call(body=body, raw=None if changed else raw, model=model, stream=stream,
                include_usage=stream and bool((body.get("stream_options") or {}).get("include_usage")),
                request_id=request_id, session_id=session_id,
                client_headers=headers, capture=capture,
                secrets=gateway.secret_bytes + caller_secret(principal, headers))
    return call, routes


def caller_secret(principal, headers: Mapping[str, str]) -> tuple[bytes, ...]:
    """The caller's own virtual key: no answer echoes it back (or into the log)."""
    if principal.key_id is None:
        return ()  # open or master: nothing of the caller's to hide (the master key always is)
    key = presented_key(headers)
    return (key.encode(),) if key and len(key) >= MIN_SECRET_LENGTH else ()


class RecordTracker:
    """attempts.run's view of a request's RequestLog (and of its trace, when traced)."""

    def __init__(self, gateway, record, call, principal):
        self.gateway, self.record, self.call = gateway, record, call
        self.principal = principal or OPEN

    def routed(self, route) -> None:
        self.record.provider, self.record.model = route.provider.name, route.model
        if self.record.trace is not None:
            self.record.trace.attempt(route, self.call)

    def attempt_failed(self, error) -> None:
        if self.record.trace is not None:
            self.record.trace.attempt_failed(error)

    def failed(self, route, error, n: int) -> None:
        r = self.record
        self.gateway.recorder.record(attempts.attempt_entry(
            r.request_id, n, route, error, model_requested=r.model_requested,
            api_key_id=r.api_key_id, streamed=r.stream, client_request_id=r.client_request_id,
            trace_id=r.trace_id))

    # -- a hedged race (proxy/routing/hedge.py) --------------------------------------
    def admit_hedge(self, call) -> bool:
        """Whether the caller's budget and rate limit admit one more upstream call (it
        is counted when they do; its estimate is not settled, the winner's is)."""
        try:
            self.gateway.budgets.check(self.principal)
            self.gateway.rate_gate.admit(self.principal, call, _Unsettled())
        except GatewayError:
            return False
        return True

    def race_started(self, route, call):
        """A raced attempt's span (None when not traced): its context goes upstream."""
        trace = self.record.trace
        return trace.race_attempt(route, call) if trace is not None else None

    def race_failed(self, span, error) -> None:
        if span is not None:
            self.record.trace.race_lost(span, error.code or error.type, error.status,
                                        error.message)

    def hedge_lost(self, route, n: int, span=None) -> None:
        r = self.record
        self.gateway.recorder.record(hedge.loser_entry(
            r.request_id, n, route, r, tokens.estimate_messages(r.messages or [])))
        if span is not None:
            r.trace.race_lost(span, hedge.HEDGE_LOST, hedge.HEDGE_LOST_STATUS,
                              "another attempt's first token came first")

    def chose(self, route, call=None) -> None:
        """The route whose answer (or error) is the request's; `call`: the copy it was
        sent as, whose usage capture becomes the record's (nothing is sent yet)."""
        self.record.provider, self.record.model = route.provider.name, route.model
        if call is not None and call is not self.call:
            self.record.pieces = call.capture

    def race_won(self, span) -> None:
        if span is not None:
            self.record.trace.race_won(span)


class _Unsettled:
    """A hedge's admission: counted, never settled."""

    def __init__(self):
        self.on_finish: list = []


def complete(gateway, body: dict, raw: bytes | None, headers: Mapping[str, str], record,
             principal, session_id: str | None = None) -> Answer:
    track(gateway, record)
    call, routes = prepare(gateway, body, raw, headers, principal, request_id=record.request_id,
                           capture=record.pieces, session_id=session_id)
    record.model_requested, record.stream = call.model, call.stream
    record.session_id, record.messages = call.session_id, body["messages"]
    record.session_turn = session_id is not None  # a turn the gateway built from stored history
    if raw is not None:
        debug_body("request body", record.request_id, raw, gateway.secrets)
    headers_out = gateway.rate_gate.admit(principal, call, record)
    gateway.recorder.started(record, routes[0])  # journaled: a row even if this process dies
    policy = gateway.router.latency(call.model)
    run = hedge.run if policy.hedged else attempts.run
    reply, route, call = run(gateway, routes, call, RecordTracker(gateway, record, call, principal),
                             policy)
    headers_out["x-gateway-provider"] = route.provider.name
    headers_out["x-gateway-model"] = header_value(route.model)
    return reply_response(reply, call, record, gateway.cost_of, headers_out)
