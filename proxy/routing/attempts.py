"""Retries and fallbacks, only while nothing has been sent to the client.

Each route of the plan is tried; a retryable failure (connect error, timeout,
429, 5xx) is retried on the same route with exponential backoff and jitter
(honouring Retry-After), up to the provider's `retries`, then the next route is
tried. A context-window error moves straight to the next route. The first
chunk or event is pulled inside the attempt, so a failure before the first
byte is still retryable. Every failed attempt is logged as its own row."""
from __future__ import annotations

import random
import time

from providers.base import Relay, ResponseMeta
from proxy.errors import GatewayError
from proxy.log.entry import Entry
from proxy.routing import first_token
from proxy.routing.latency import NO_POLICY

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
NEXT_ROUTE_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
BASE_DELAY, MAX_DELAY = 0.2, 4.0


class Primed:
    """An iterator whose first items were already pulled; closing it closes the source."""

    def __init__(self, pulled: list, rest):
        self._pulled, self._rest = pulled, rest

    def __iter__(self):
        return self

    def __next__(self):
        if self._pulled:
            return self._pulled.pop(0)
        return next(self._rest)

    def close(self):
        close = getattr(self._rest, "close", None)
        if close:
            close()


def _pull(reply, done):
    """Pull items of `reply` up to the first for which `done(item)` holds: (the reply,
    those items still to come from it, whether one held). An empty source stays empty."""
    relay = isinstance(reply, Relay)
    source = iter(reply.chunks if relay else reply)
    pulled, found = [], False
    try:
        for item in source:
            pulled.append(item)
            if done(item):
                found = True
                break
    except BaseException:
        (reply.close if relay else getattr(source, "close", lambda: None))()
        raise
    if not pulled:
        return reply, False
    primed = Primed(pulled, source)
    if relay:
        reply.chunks = primed
        return reply, found
    return primed, found


def _answering(event) -> bool:
    return not isinstance(event, ResponseMeta)  # a ResponseMeta alone sends nothing


def prime(reply):
    """Pull the first chunk (relay), or events up to the first that carries part of
    the answer, now."""
    return _pull(reply, bool if isinstance(reply, Relay) else _answering)[0]


def prime_content(reply):
    """Pull up to the first content token (proxy/routing/first_token.py): (the
    reply, whether it has one: False for an empty answer or an error event)."""
    return _pull(reply, first_token.content_test(reply))


def close_reply(reply) -> None:
    close = getattr(reply, "close", None)
    if close is not None:
        close()


def attempt(route, call, seconds: float | None, content: bool = False):
    """One try on `route`: (the primed reply, whether its first content token has
    arrived). With `seconds` or `content`, pulled up to that token, within `seconds`."""
    if seconds is None and not content:
        return prime(route.provider.execute(call)), True
    return first_token.within(seconds, lambda: prime_content(route.provider.execute(call)),
                              route.provider.name)


def first_token_seconds(route, policy) -> float | None:
    return policy.first_token_timeout or route.provider.first_token_timeout


def retryable(error: GatewayError) -> bool:
    return error.status in RETRYABLE_STATUS


def delay(attempt: int, error: GatewayError, rng=random.random) -> float | None:
    """Seconds to wait before trying the same route again; None: move on instead."""
    retry_after = error.headers.get("retry-after")
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = MAX_DELAY + 1
        return wait if wait <= MAX_DELAY else None  # a long wait: better try the next route
    return min(MAX_DELAY, BASE_DELAY * 2 ** attempt) * (0.5 + rng() / 2)


def target(call, route) -> None:
    if call.body["model"] != route.model:
        call.body["model"] = route.model
        call.raw = None
    call.model = route.model


def run(gateway, routes, call, tracker, policy=NO_POLICY):
    """(primed reply, the route that served it, the call it was sent as), or the last
    error. `tracker` hears of each route tried (`routed(route)`), of each failure as
    it happens (`attempt_failed(error)`) and of each failed attempt that is not the
    request's last word (`failed(route, error, n)`)."""
    breaker, failures = gateway.router.breaker, []
    for route in routes:
        for n in range(route.provider.retries + 1):
            target(call, route)
            tracker.routed(route)
            if failures:  # the failure before this try gets its own row; the last is the request's
                tracker.failed(*failures[-1], len(failures))
            try:
                reply = attempt(route, call, first_token_seconds(route, policy))[0]
            except GatewayError as exc:
                failures.append((route, exc))
                tracker.attempt_failed(exc)
                if exc.code in NEXT_ROUTE_CODES:
                    break
                if not retryable(exc):
                    raise
                breaker.failure(route.provider.name)
                wait = _wait_before_retry(n, exc, route is routes[-1])
                if wait is None or n == route.provider.retries:
                    break
                time.sleep(wait)
            else:
                breaker.success(route.provider.name)
                return reply, route, call
    raise failures[-1][1]


def _wait_before_retry(n: int, error: GatewayError, last_route: bool) -> float | None:
    """A first token past its deadline moves on at once: to the next route, or the
    same one again when it is the last (waiting would only add to the delay)."""
    if error.code == first_token.FirstTokenTimeout.code:
        return 0.0 if last_route else None
    return delay(n, error)


def attempt_entry(request_id: str, n: int, route, error: GatewayError, *, model_requested,
                  api_key_id, streamed, client_request_id=None, trace_id=None) -> Entry:
    """The log row of a failed attempt: `<request id>.<n>`."""
    return Entry(request_id=f"{request_id}.{n}", client_request_id=client_request_id,
                 created_at=time.time(), status=error.status,
                 provider=route.provider.name, model_requested=model_requested,
                 model_upstream=route.model, api_key_id=api_key_id,
                 error_type=error.code or error.type, streamed=streamed, attempt=n,
                 trace_id=trace_id)
