"""Rate limits (requests and tokens per minute) per subject, shared by every
worker process: SQLite on one machine, Redis across machines.

Window algorithm: a sliding-window approximation (as Cloudflare describes it).
Time is cut into fixed 60 s windows aligned to the epoch minute; each subject
keeps the counts of the current window and of the one before. At time `now`,
a fraction `f` into the current window, the estimated usage of the last 60 s is

    previous * (1 - f) + current

and a request is admitted when that estimate plus its own cost (1 request,
`tokens` tokens) is within the limit. Inside one window with an empty previous
window the estimate is the exact count, so N per minute admits exactly N.
Across a boundary the previous window is assumed to have been spread evenly,
which never lets through more than about the limit in any 60 s.

Admission and counting happen in one atomic step in the store (one SQLite
`BEGIN IMMEDIATE` transaction, or one Redis Lua script), so concurrent workers
on one machine, or gateways on several, never over-admit.

A refused request counts nothing. `settle` corrects the token count of the
window a request was counted in (pass `decision.window`) once the real usage
is known; counts never go below zero.

A failing store (locked past the busy timeout, Redis unreachable) raises; what
that means for the request (allow or refuse, RATE_LIMIT_ON_STORE_FAILURE) is
the gate's to decide (proxy/policy/gate.py), whatever the exception.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Protocol

WINDOW_S = 60


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None      # requests per minute
    tpm: int | None = None      # tokens per minute

    def __post_init__(self):
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit_requests: int | None
    remaining_requests: int | None
    reset_requests_s: float | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens_s: float | None
    retry_after_s: float | None          # when refused; None if the request can never fit
    reason: str | None                   # "requests" | "tokens" when refused
    #: the window the request was counted in; hand it to `settle`
    window: int | None = None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, limit, remaining, reset in (
                ("requests", self.limit_requests, self.remaining_requests, self.reset_requests_s),
                ("tokens", self.limit_tokens, self.remaining_tokens, self.reset_tokens_s)):
            if limit is None:
                continue
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            if remaining is not None:
                out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            if reset is not None:
                out[f"x-ratelimit-reset-{kind}"] = go_duration(reset)
        if not self.allowed and self.retry_after_s is not None:
            out["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


class RateLimiter(Protocol):
    def check(self, subject: str, limits: Limits, tokens: int) -> Decision:
        """Atomically: refuse if the request would exceed rpm or tpm; otherwise
        count 1 request and `tokens` and allow. Raises if the store fails."""

    def settle(self, subject: str, limits: Limits, estimated: int, actual: int,
               window: int | None = None) -> None:
        """Correct the token count by (actual - estimated) in `window` (the
        Decision's; the current window when None); never below 0."""

    def close(self) -> None: ...


def make_limiter(database_path: str, redis_url: str | None) -> RateLimiter:
    """Redis when `redis_url` is set, else a SQLite file beside the log database."""
    if redis_url:
        from proxy.policy.ratelimit_redis import RedisRateLimiter
        return RedisRateLimiter(redis_url)
    from proxy.policy.ratelimit_sqlite import SqliteRateLimiter
    return SqliteRateLimiter(sqlite_path(database_path))


def sqlite_path(database_path: str) -> str:
    """`gateway.db` -> `gateway.ratelimit.db`; `:memory:` stays per process."""
    if database_path == ":memory:":
        return database_path
    if database_path.endswith(".db"):
        return database_path[:-3] + ".ratelimit.db"
    return database_path + ".ratelimit.db"


# --- RATE_LIMIT parsing ------------------------------------------------------

_ITEM = re.compile(r"^(\d[\d_]*)\s*(.*)$")
_UNITS = {
    "": "rpm", "rpm": "rpm", "/m": "rpm", "/min": "rpm", "/minute": "rpm",
    "req/min": "rpm", "requests/min": "rpm", "r/min": "rpm",
    "tpm": "tpm", "tok/min": "tpm", "tokens/min": "tpm", "t/min": "tpm",
}


def parse_rate(text: str) -> Limits:
    """`60`, `60/min`, `60rpm` -> rpm=60; `100000tpm`; `60rpm,100000tpm` -> both.
    An empty string means no limit."""
    if not isinstance(text, str):
        raise ValueError(f"rate limit must be a string, not {type(text).__name__}")
    if not text.strip():
        return Limits()
    found: dict[str, int] = {}
    for raw in text.split(","):
        item = raw.strip()
        match = _ITEM.match(item)
        unit = _UNITS.get(re.sub(r"\s+", "", match.group(2)).lower()) if match else None
        if not match or unit is None or match.group(1).endswith("_") or "__" in match.group(1):
            raise ValueError(f"bad rate limit {item!r} in {text!r}: expected e.g. "
                             f"'60', '60/min', '60rpm' or '100000tpm', comma-separated")
        value = int(match.group(1).replace("_", ""))
        if value <= 0:
            raise ValueError(f"bad rate limit {item!r} in {text!r}: must be a positive integer")
        if unit in found:
            raise ValueError(f"bad rate limit {text!r}: {unit} given twice")
        found[unit] = value
    return Limits(**found)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() at millisecond precision: 20ms, 1s, 1.5s, 6m0s, 1h0m0s."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, frac = divmod(rest, 1000)
    sec = f"{secs}.{frac:03d}".rstrip("0") if frac else str(secs)
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


# --- the window arithmetic both backends share ----------------------------------
# The Redis Lua script repeats `roll` and `over` operation for operation, so both
# stores admit exactly the same requests.

@dataclass(frozen=True)
class Counts:
    """One subject's counters: `window` (index = floor(t / WINDOW_S)) and the one before."""
    window: int
    requests: int = 0
    tokens: int = 0
    prev_requests: int = 0
    prev_tokens: int = 0


def roll(stored: Counts | None, now: float, window_s: int = WINDOW_S) -> tuple[Counts, float]:
    """The counters as seen at `now`, and the weight of the previous window."""
    current = math.floor(now / window_s)
    if stored is None:
        stored = Counts(current)
    elif stored.window < current:
        if stored.window == current - 1:
            stored = Counts(current, 0, 0, stored.requests, stored.tokens)
        else:
            stored = Counts(current)
    if stored.window == current:
        return stored, 1 - (now - current * window_s) / window_s
    return stored, 1.0  # the clock is behind the stored window: be strict


def over(limit: int | None, prev: int, cur: int, weight: float, cost: int) -> bool:
    return limit is not None and prev * weight + cur + cost > limit


def refusal(counts: Counts, weight: float, limits: Limits, cost: int) -> str | None:
    if over(limits.rpm, counts.prev_requests, counts.requests, weight, 1):
        return "requests"
    if over(limits.tpm, counts.prev_tokens, counts.tokens, weight, cost):
        return "tokens"
    return None


def decide(counts: Counts, weight: float, now: float, limits: Limits, cost: int,
           reason: str | None, window_s: int = WINDOW_S) -> Decision:
    """The Decision for counters `counts` (after counting, when allowed)."""
    end = (counts.window + 1) * window_s

    def dimension(limit, prev, cur):
        if limit is None:
            return None, None
        estimate = prev * weight + cur
        remaining = min(limit, max(0, math.floor(limit - estimate)))
        if cur > 0:
            reset = end - now + window_s
        elif prev > 0:
            reset = end - now
        else:
            reset = 0.0
        return remaining, max(0.0, reset)

    rem_r, reset_r = dimension(limits.rpm, counts.prev_requests, counts.requests)
    rem_t, reset_t = dimension(limits.tpm, counts.prev_tokens, counts.tokens)
    retry = None
    if reason is not None:
        waits = []
        for limit, prev, cur, c in ((limits.rpm, counts.prev_requests, counts.requests, 1),
                                    (limits.tpm, counts.prev_tokens, counts.tokens, cost)):
            if over(limit, prev, cur, weight, c):
                waits.append(_wait(limit, prev, cur, c, now, end, window_s))
        if waits and None not in waits:
            retry = max(waits) + 0.001  # a hair past the exact moment, against rounding
    return Decision(allowed=reason is None,
                    limit_requests=limits.rpm, remaining_requests=rem_r, reset_requests_s=reset_r,
                    limit_tokens=limits.tpm, remaining_tokens=rem_t, reset_tokens_s=reset_t,
                    retry_after_s=retry, reason=reason,
                    window=counts.window if reason is None else None)


def _wait(limit: int, prev: int, cur: int, cost: int, now: float, end: float,
          window_s: int) -> float | None:
    """Seconds until `cost` fits, if nothing else is admitted meanwhile; None if never."""
    room = limit - cost
    if room < 0:
        return None
    if cur <= room:
        # still in this window, once the previous window's share has decayed enough
        at = end - window_s * (room - cur) / prev if prev > 0 else now
    else:
        # in the next window, once this window's share (then the previous) has decayed
        at = end + window_s - window_s * room / cur
    return max(0.0, at - now)


def unlimited_decision() -> Decision:
    return Decision(True, None, None, None, None, None, None, None, None)


Clock = Callable[[], float]
