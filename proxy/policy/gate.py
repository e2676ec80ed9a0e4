"""Rate limits on the request path: per key (its rpm/tpm limits) or the default
RATE_LIMIT, counted before the upstream call from the request's estimated tokens
(its size, never tokenised, plus max_tokens) and settled with the real usage."""
from __future__ import annotations

from proxy import tokens
from proxy.errors import RateLimited
from proxy.log.extract import usage_of
from proxy.policy.keys import Principal
from proxy.policy.ratelimit import Limits


class RateGate:
    def __init__(self, limiter, default: Limits):
        self.limiter = limiter
        self.default = default

    def limits(self, principal: Principal) -> Limits:
        return Limits(rpm=principal.rpm_limit or self.default.rpm,
                      tpm=principal.tpm_limit or self.default.tpm)

    def admit(self, principal: Principal, call, record) -> dict:
        """Count this request or refuse it (429); the headers to send either way."""
        limits = self.limits(principal)
        if limits.unlimited:
            return {}
        body = call.body
        estimated = tokens.estimate_bytes(len(call.body_bytes())) + \
            (body.get("max_completion_tokens") or body.get("max_tokens") or 0)
        subject = principal.key_id or principal.name
        decision = self.limiter.check(subject, limits, estimated)
        headers = decision.headers()
        if not decision.allowed:
            raise RateLimited(_message(decision, limits, estimated), type=decision.reason or "requests",
                              headers=headers)
        if limits.tpm:
            record.on_finish.append(lambda r: self._settle(r, subject, limits, estimated,
                                                           decision.window))
        return headers

    def _settle(self, record, subject, limits, estimated, window) -> None:
        usage = usage_of(record.pieces, record.stream)
        if usage and usage.get("total_tokens") is not None:
            self.limiter.settle(subject, limits, estimated, usage["total_tokens"], window)


def _message(decision, limits: Limits, estimated: int) -> str:
    if decision.reason == "tokens":
        what = f"tokens per min (TPM): Limit {limits.tpm}, Requested {estimated}"
    else:
        what = f"requests per min (RPM): Limit {limits.rpm}"
    wait = f" Please try again in {decision.retry_after_s:.0f}s." if decision.retry_after_s else ""
    return f"Rate limit reached for {what}.{wait}"
