"""Rate limits on the request path: per key (its rpm/tpm limits) or the default
RATE_LIMIT, counted before the upstream call from the request's estimated tokens
(its size, never tokenised, plus max_tokens) and settled with the real usage.

No number a client (or an upstream) sends reaches the limiter's arithmetic or its
store unbounded: a request is estimated at most at its model's context window
(UNKNOWN_CONTEXT for a model the catalog does not know), so no request can
poison a subject's counters. A failing store, whatever it raises, follows
RATE_LIMIT_ON_STORE_FAILURE: `allow` the request (the default) or `refuse` it
with 503; either way the failure is counted and logged, never a 500."""
from __future__ import annotations

import logging
import time
from typing import Mapping

from proxy import tokens
from proxy.errors import GatewayError, RateLimited
from proxy.log.extract import usage_of
from proxy.model_facts import facts_of
from proxy.policy.keys import Principal
from proxy.policy.ratelimit import Decision, Limits, make_limiter, parse_rate

log = logging.getLogger("switchboard.ratelimit")

#: tokens: the estimate of a request for a model without a known context window,
#: and the most an upstream's usage can settle; above every window in the catalog
UNKNOWN_CONTEXT = 2_000_000


class LimitStoreUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "rate_limit_store_unavailable"


class RateGate:
    def __init__(self, limiter, default: Limits, *, on_store_failure: str = "allow",
                 model_facts: Mapping[str, Mapping] | None = None):
        self.limiter = limiter
        self.default = default
        self.store_failures = StoreFailures(refuse=on_store_failure == "refuse")
        self.model_facts = model_facts or {}

    @classmethod
    def from_config(cls, config, database_path: str, model_facts: Mapping) -> "RateGate":
        return cls(make_limiter(database_path, config.redis_url), parse_rate(config.rate_limit),
                   on_store_failure=config.rate_limit_on_store_failure, model_facts=model_facts)

    def limits(self, principal: Principal) -> Limits:
        return Limits(rpm=principal.rpm_limit or self.default.rpm,
                      tpm=principal.tpm_limit or self.default.tpm)

    def admit(self, principal: Principal, call, record) -> dict:
        """Count this request or refuse it (429); the headers to send either way."""
        limits = self.limits(principal)
        if limits.unlimited:
            return {}
        estimated = self.estimate(call)
        subject = principal.key_id or principal.name
        decision = self._check(subject, limits, estimated)
        headers = decision.headers()
        if not decision.allowed:
            raise RateLimited(_message(decision, limits, estimated), type=decision.reason or "requests",
                              headers=headers)
        if limits.tpm and decision.window is not None:
            record.on_finish.append(lambda r: self._settle(r, subject, limits, estimated,
                                                           decision.window))
        return headers

    def estimate(self, call) -> int:
        """The request's size plus the answer it asks room for, at most what its model holds."""
        window = self.context_window(call.model)
        body = call.body
        wanted = bounded(body.get("max_completion_tokens") or body.get("max_tokens"), window)
        return min(tokens.estimate_bytes(len(call.body_bytes())) + (wanted or 0), window)

    def context_window(self, model: str) -> int:
        """From the model's facts, looked up as /v1/models does: the id, else the part
        after a provider prefix."""
        return facts_of(self.model_facts, model).get("context_length") or UNKNOWN_CONTEXT

    def _check(self, subject: str, limits: Limits, estimated: int) -> Decision:
        try:
            return self.limiter.check(subject, limits, estimated)
        except Exception as error:  # any failure of the store, not only its own error types
            return self.store_failures.on_check(limits, error)

    def _settle(self, record, subject, limits, estimated, window) -> None:
        usage = usage_of(record.pieces, record.stream) or {}
        actual = bounded(usage.get("total_tokens"), UNKNOWN_CONTEXT)
        if actual is None:
            return
        try:
            self.limiter.settle(subject, limits, estimated, actual, window)
        except Exception as error:  # the answer is sent: nothing to refuse, only to report
            self.store_failures.note(error)


def bounded(value, cap: int) -> int | None:
    """A token count from outside as one the limiter can hold: an int or float clamped
    to [0, cap]; None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(min(max(value, 0), cap))


class StoreFailures:
    """What a failing limit store means for a request, and the count of failures
    (logged at most every 10 s, so a dead store does not flood the log)."""

    def __init__(self, refuse: bool):
        self.refuse = refuse
        self.count = 0
        self._last_logged = float("-inf")

    def on_check(self, limits: Limits, error: Exception) -> Decision:
        self.note(error)
        if self.refuse:
            raise LimitStoreUnavailable(
                "The rate-limit store is unavailable and this gateway refuses requests it cannot "
                "count (RATE_LIMIT_ON_STORE_FAILURE=refuse). Please try again shortly.")
        return Decision(True, limits.rpm, None, None, limits.tpm, None, None, None, None)

    def note(self, error: Exception) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last_logged >= 10:
            self._last_logged = now
            log.warning("rate limiter store failed, %s the request (%d failures so far): %s: %s",
                        "refusing" if self.refuse else "allowing", self.count,
                        type(error).__name__, error)


def _message(decision, limits: Limits, estimated: int) -> str:
    if decision.reason == "tokens":
        what = f"tokens per min (TPM): Limit {limits.tpm}, Requested {estimated}"
    else:
        what = f"requests per min (RPM): Limit {limits.rpm}"
    wait = f" Please try again in {decision.retry_after_s:.0f}s." if decision.retry_after_s else ""
    return f"Rate limit reached for {what}.{wait}"
