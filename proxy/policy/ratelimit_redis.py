"""The Redis rate limiter, for several gateways sharing limits.

One hash per subject (`<prefix><subject>`: fields w, r, t, pr, pt = window,
its requests and tokens, the previous window's) read, decided on and written
by one Lua script, so the check is atomic on the server. The key expires
after the end of the window following its last write. By default the script
takes the time from Redis itself (TIME), so gateways whose clocks disagree
still agree on the window; a `now` clock given to the constructor is sent
instead (tests).

The client uses a connection pool; under gevent's monkey-patching its sockets
are cooperative. Socket timeouts are short: a slow Redis is a failing store
(see the gate's RATE_LIMIT_ON_STORE_FAILURE), not a slow request.
"""
from __future__ import annotations

import math

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.policy.ratelimit import (WINDOW_S, Clock, Counts, Decision, Limits, decide, roll,
                                    unlimited_decision)

# KEYS[1] subject key; ARGV: now ("" = server TIME), window_s, rpm (-1 = none),
# tpm (-1 = none), cost. Same arithmetic as ratelimit.roll / refusal.
# Returns {refused (0, 1 requests, 2 tokens), now in µs, w, r, t, pr, pt}:
# the counters after counting when admitted, as read when refused.
CHECK = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local W = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local win = math.floor(now / W)
local h = redis.call('HMGET', KEYS[1], 'w', 'r', 't', 'pr', 'pt')
local w = tonumber(h[1])
local r, t, pr, pt = tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0, tonumber(h[5]) or 0
if w == nil then
  w, r, t, pr, pt = win, 0, 0, 0, 0
elseif w < win then
  if w == win - 1 then pr, pt = r, t else pr, pt = 0, 0 end
  w, r, t = win, 0, 0
end
local weight = 1.0
if w == win then weight = 1 - (now - win * W) / W end
local refused = 0
if rpm >= 0 and pr * weight + r + 1 > rpm then
  refused = 1
elseif tpm >= 0 and pt * weight + t + cost > tpm then
  refused = 2
end
if refused == 0 then
  r = r + 1
  t = t + cost
  redis.call('HSET', KEYS[1], 'w', w, 'r', r, 't', t, 'pr', pr, 'pt', pt)
  redis.call('PEXPIRE', KEYS[1], math.ceil(((w + 2) * W - now) * 1000) + 5000)
end
return {refused, math.floor(now * 1000000), w, r, t, pr, pt}
"""

# KEYS[1] subject key; ARGV: window ("" = the current one by server TIME), delta.
SETTLE = """
local w = tonumber(redis.call('HGET', KEYS[1], 'w'))
if not w then return 0 end
local k = tonumber(ARGV[1])
local W = tonumber(ARGV[3])
if not k then
  local t = redis.call('TIME')
  k = math.floor((tonumber(t[1]) + tonumber(t[2]) / 1000000) / W)
end
local field
if w == k then field = 't' elseif w == k + 1 then field = 'pt' else return 0 end
local v = (tonumber(redis.call('HGET', KEYS[1], field)) or 0) + tonumber(ARGV[2])
if v < 0 then v = 0 end
redis.call('HSET', KEYS[1], field, v)
return 1
"""

_REASONS = {0: None, 1: "requests", 2: "tokens"}


class RedisRateLimiter:
    def __init__(self, url: str | None = None, *, client: "redis.Redis | None" = None,
                 now: Clock | None = None, window_s: int = WINDOW_S,
                 prefix: str = "switchboard:ratelimit:", socket_timeout: float = 0.5):
        if client is None:
            if not url:
                raise ValueError("RedisRateLimiter needs a url or a client")
            # one quick retry for a pooled connection the server dropped; no backoff sleeps
            client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                          socket_connect_timeout=socket_timeout,
                                          retry=Retry(NoBackoff(), 1), health_check_interval=30)
            self._owns_client = True
        else:
            self._owns_client = False
        self.redis = client
        self._now = now
        self.window_s = int(window_s)
        self.prefix = prefix
        self._check = client.register_script(CHECK)
        self._settle = client.register_script(SETTLE)

    def _now_arg(self) -> str:
        return "" if self._now is None else repr(float(self._now()))

    def check(self, subject: str, limits: Limits, tokens: int) -> Decision:
        if limits.unlimited:
            return unlimited_decision()
        cost = max(0, int(tokens))
        refused, now_us, *state = self._check(
            keys=[self.prefix + subject],
            args=[self._now_arg(), self.window_s,
                  -1 if limits.rpm is None else limits.rpm,
                  -1 if limits.tpm is None else limits.tpm, cost])
        now = now_us / 1_000_000
        counts = Counts(*(int(v) for v in state))
        # `roll` only recomputes the previous window's weight here (counts are current)
        _, weight = roll(counts, now, self.window_s)
        return decide(counts, weight, now, limits, cost, _REASONS[int(refused)], self.window_s)

    def settle(self, subject: str, limits: Limits, estimated: int, actual: int,
               window: int | None = None) -> None:
        delta = int(actual) - int(estimated)
        if limits.tpm is None or delta == 0:
            return
        if window is None and self._now is not None:
            window = math.floor(self._now() / self.window_s)
        self._settle(keys=[self.prefix + subject],
                     args=["" if window is None else window, delta, self.window_s])

    def close(self) -> None:
        if self._owns_client:
            self.redis.close()
