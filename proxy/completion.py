"""One chat completion, from a client body to a response: validate, route,
execute, relay. Shared by /v1/chat/completions and the session endpoints."""
from __future__ import annotations

from typing import Mapping

import orjson
from flask import Response, g

from providers.base import Call
from proxy import metrics
from proxy.access_log import debug_body
from proxy.errors import InvalidRequest
from proxy.policy import access
from proxy.routing import attempts
from proxy.respond import reply_response
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


def track(gateway) -> None:
    """Log this request as a completion call (once), and count it in flight."""
    record = g.record
    if record.sink is None:
        record.sink = gateway.record
        metrics.IN_FLIGHT.inc()


def complete(gateway, body: dict, raw: bytes | None, headers: Mapping[str, str],
             session_id: str | None = None) -> Response:
    """`raw` is the client's own encoding of `body` (forwarded as is when the
    gateway changes nothing), or None for a body the gateway built."""
    track(gateway)
    validate(body)
    body_provider = body.pop("provider", None)
    if body_provider is not None and not isinstance(body_provider, str):
        raise InvalidRequest("`provider` must be a string.", param="provider")
    model = body["model"]
    principal = g.principal
    routes = access.permitted(principal, model, gateway.router.plan(
        model, headers.get("X-Provider") or body_provider, body=body,
        raw_size=len(raw) if raw is not None else 0, hint=headers.get("x-gateway-route")))
    gateway.budgets.check(principal)
    prompted = access.add_system_prompt(
        body, principal.system_prompt or gateway.config.default_system_prompt)
    changed = raw is None or prompted or body_provider is not None
    stream = bool(body.get("stream"))
    record = g.record
    call = Call(body=body, raw=None if changed else raw, model=model, stream=stream,
                include_usage=stream and bool((body.get("stream_options") or {}).get("include_usage")),
                request_id=g.request_id, session_id=session_id or headers.get("X-Session-Id"),
                client_headers=headers, capture=record.pieces)
    record.model_requested, record.stream = model, stream
    record.session_id, record.messages = call.session_id, body["messages"]
    record.session_turn = session_id is not None  # a turn the gateway built from stored history
    if raw is not None:
        debug_body("request body", g.request_id, raw, gateway.secrets)
    limit_headers = gateway.rate_gate.admit(principal, call, record)
    reply, route = attempts.run(gateway, routes, call, record)
    response = reply_response(reply, call, record, gateway.cost_of)
    response.headers.update(limit_headers)
    response.headers["x-gateway-provider"] = route.provider.name
    response.headers["x-gateway-model"] = route.model
    return response
