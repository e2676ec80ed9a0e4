"""Hedged requests: a model with `hedge_after_ms` races a second attempt against a
first one whose first token is late.

The first attempt runs in the request's own greenlet, as any call does, with a
timer: a call whose first token is in time pays for nothing else. When no content
token has arrived after `hedge_after_ms`, the next route of the plan starts in parallel (the same route
again when it is the only one), and so on up to `max_hedges` extra attempts. The
first attempt to produce a content token wins: its reply is the one streamed to
the client, and every other attempt is cancelled at once (its greenlet killed,
which closes its upstream connection) and logged as a hedge loser, its prompt
estimated and priced. An error or an empty answer never wins while another
attempt is alive; when none is, a failure starts the next route as a retry
would, and the last word is the best answer seen or the last error.

Each hedge sends its own copy of the call (its model, its usage capture), so
attempts to different routes never share a body; a hedge is started only when
the key's budget and rate limit admit one more upstream call."""
from __future__ import annotations

import dataclasses
import time

import gevent
from gevent.queue import Queue

from proxy.errors import GatewayError
from proxy.log.entry import Entry
from proxy.routing import attempts

HEDGE_LOST = "hedge_lost"
HEDGE_LOST_STATUS = 499  # the gateway, as a client, went away


def launch_order(routes, max_hedges: int) -> list:
    """Routes in the order attempts start: each route once, then each route's
    retries; at least one per hedge (the only route, again)."""
    order = list(routes) + [r for r in routes for _ in range(r.provider.retries)]
    while len(order) < 1 + max_hedges:
        order.append(routes[0])
    return order


@dataclasses.dataclass
class Attempt:
    n: int  # 0 for the first, in the order started
    route: object
    call: object
    greenlet: gevent.Greenlet | None = None
    reply: object = None
    span: object = None  # its tracing span, when traced


class Race:
    def __init__(self, gateway, routes, call, tracker, policy):
        self.gateway, self.call, self.tracker, self.policy = gateway, call, tracker, policy
        self.order = launch_order(routes, policy.max_hedges)
        self.results: Queue = Queue()
        self.alive: dict[int, Attempt] = {}
        self.started = 0
        self.hedges = 0
        self.over = False
        self.failures: list[tuple[Attempt, GatewayError]] = []
        self.unanswered: Attempt | None = None  # an empty answer or an error event, kept
        self.first = None  # the request's greenlet while it runs the first attempt
        self.timer = None

    # -- starting attempts ---------------------------------------------------------
    def _next(self) -> Attempt:
        route = self.order[self.started]
        call = self.call if not self.started else \
            dataclasses.replace(self.call, body=dict(self.call.body), capture=[])
        attempts.target(call, route)
        attempt = Attempt(self.started, route, call, span=self.tracker.race_started(route, call))
        self.started += 1
        self.alive[attempt.n] = attempt
        return attempt

    def start(self) -> None:
        attempt = self._next()
        attempt.greenlet = gevent.spawn(self._try, attempt)

    def _outcome(self, attempt: Attempt):
        """(attempt, reply, found, error) of one try, up to its first content token."""
        seconds = attempts.first_token_seconds(attempt.route, self.policy)
        try:
            reply, found = attempts.attempt(attempt.route, attempt.call, seconds, content=True)
        except GatewayError as exc:
            return attempt, None, False, exc
        return attempt, reply, found, None

    def _try(self, attempt: Attempt) -> None:
        outcome = self._outcome(attempt)
        if self.over:  # lost while its last read was finishing
            attempts.close_reply(outcome[1])
            return
        self.results.put(outcome)
        if outcome[2] and self.first is not None:  # a token while the first attempt waits
            gevent.get_hub().loop.run_callback(self._interrupt_first)

    def _interrupt_first(self) -> None:
        """Runs in the hub: the first attempt, still waiting in the request's own
        greenlet, gives way (its connection closes as the exception unwinds it)."""
        first = self.first
        if first is not None:
            first.throw(_HedgeWon)

    def may_hedge(self) -> bool:
        return self.hedges < self.policy.max_hedges and self.started < len(self.order)

    def hedge(self) -> None:
        """One more attempt in parallel, if the key may pay for it; the next after
        `hedge_after_ms` again."""
        if self.over or not self.may_hedge():
            return
        if not self.tracker.admit_hedge(self.call):
            self.hedges = self.policy.max_hedges  # refused: no more hedges for this request
            return
        self.hedges += 1
        self.start()
        if self.may_hedge():
            self._arm()

    def _arm(self) -> None:
        """The next hedge, due `hedge_after_ms` from now."""
        if self.timer is not None:
            self.timer.close()
        self.timer = gevent.get_hub().loop.timer(self.policy.hedge_after_s)
        self.timer.start(self._hedge_due)

    def _hedge_due(self) -> None:
        gevent.spawn(self.hedge)  # a hub callback must not block: admission may

    # -- the race ------------------------------------------------------------------
    def run(self):
        """The first attempt runs in the request's own greenlet, and a timer starts
        hedges only when it fires: a call whose first token is in time pays for one
        timer, no greenlet and no hand-over."""
        attempt = self._next()
        self._arm()
        self.first = gevent.getcurrent()
        try:
            outcome = self._outcome(attempt)
        except _HedgeWon:  # a hedge's token came first: it is in the queue
            outcome = None
        finally:
            self.first = None
        if outcome is not None:
            if outcome[2] and not self.results.qsize():
                del self.alive[attempt.n]
                attempt.reply = outcome[1]
                return self._won(attempt)
            self.results.put(outcome)
        else:
            attempt.greenlet = None  # unwound already: nothing to kill
        return self._race()

    def _race(self):
        while True:
            attempt, reply, found, error = self.results.get()
            del self.alive[attempt.n]
            attempt.reply = reply
            if found:
                return self._won(attempt)
            if error is not None:
                self._failed(attempt, error)
            elif self.unanswered is None:
                self.unanswered = attempt
            else:  # a second answer without content: the first is kept
                self._discard(attempt)
            if not self.alive and not self._replaced():
                return self._ended()

    def _failed(self, attempt: Attempt, error: GatewayError) -> None:
        self.failures.append((attempt, error))
        self.tracker.race_failed(attempt.span, error)
        if attempts.retryable(error):
            self.gateway.router.breaker.failure(attempt.route.provider.name)

    def _replaced(self) -> bool:
        """Nothing is alive: start the next route when the last failure allows it."""
        if self.unanswered is not None or self.started >= len(self.order):
            return False
        error = self.failures[-1][1]
        if not (attempts.retryable(error) or error.code in attempts.NEXT_ROUTE_CODES):
            return False
        self.start()
        return True

    def _ended(self):
        """The best there is once nothing is alive: an answer without content, else
        the last error (the failures before it logged as attempts)."""
        if self.unanswered is not None:
            return self._won(self.unanswered)
        self.end()
        last, error = self.failures.pop()
        self._log_failures()
        self.tracker.chose(last.route)
        raise error

    def _won(self, winner: Attempt):
        self.end()
        self.gateway.router.breaker.success(winner.route.provider.name)
        for loser in self.alive.values():
            if loser.greenlet is not None:
                loser.greenlet.kill(block=False)
            self.tracker.hedge_lost(loser.route, loser.n + 1, loser.span)
        if self.unanswered is not None and self.unanswered is not winner:
            self._discard(self.unanswered)
        self._log_failures()
        self.tracker.chose(winner.route, winner.call)
        self.tracker.race_won(winner.span)
        return winner.reply, winner.route, winner.call

    def _discard(self, attempt: Attempt) -> None:
        """An answer without content that another beat: closed, logged like a loser."""
        attempts.close_reply(attempt.reply)
        self.tracker.hedge_lost(attempt.route, attempt.n + 1, attempt.span)

    def _log_failures(self) -> None:
        for attempt, error in self.failures:
            self.tracker.failed(attempt.route, error, attempt.n + 1)

    def end(self) -> None:
        self.over = True
        if self.timer is not None:
            self.timer.close()

    def cancel(self) -> None:
        self.end()
        for attempt in self.alive.values():
            if attempt.greenlet is not None and attempt.greenlet is not gevent.getcurrent():
                attempt.greenlet.kill(block=False)


class _HedgeWon(BaseException):
    """Thrown into the first attempt when a hedge's first token came first (a
    BaseException, like gevent's Timeout, so no handler of ordinary errors takes it)."""


def run(gateway, routes, call, tracker, policy):
    """attempts.run's contract, with hedging (`policy.hedged`)."""
    race = Race(gateway, routes, call, tracker, policy)
    try:
        return race.run()
    except BaseException:
        race.cancel()  # the client went away, or the gateway failed: no attempt outlives it
        raise


def loser_entry(request_id: str, n: int, route, record, prompt_estimate: int) -> Entry:
    """The log row of an attempt cancelled because another won: `<request id>.<n>`,
    its prompt (sent, so billed) estimated and priced."""
    return Entry(request_id=f"{request_id}.{n}", client_request_id=record.client_request_id,
                 created_at=time.time(), status=HEDGE_LOST_STATUS, provider=route.provider.name,
                 model_requested=record.model_requested, model_upstream=route.model,
                 api_key_id=record.api_key_id, error_type=HEDGE_LOST, streamed=record.stream,
                 attempt=n, trace_id=record.trace_id, prompt_estimate=prompt_estimate)
