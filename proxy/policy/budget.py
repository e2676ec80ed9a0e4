"""Monthly budgets, per key and global (MONTHLY_COST_LIMIT), from the log's costs.

Spend is read from the completions table (indexed by key and time) and cached
for `ttl` seconds per worker, so a budget check costs one dict lookup on most
requests; a burst can overshoot a budget by at most that much spend."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from proxy.errors import GatewayError


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


def month_start(now: float | None = None) -> float:
    moment = datetime.fromtimestamp(now if now is not None else time.time(), timezone.utc)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class Budgets:
    def __init__(self, connection, global_limit_usd: float | None, ttl: float = 1.0):
        self._connection = connection  # callable -> sqlite3.Connection (this worker's)
        self.global_limit = global_limit_usd
        self.ttl = ttl
        self._cache: dict[str | None, tuple[float, float]] = {}

    def spend(self, key_id: str | None = None, *, fresh: bool = False) -> float:
        """This month's spend in USD, of one key or (key_id None) of the whole gateway."""
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached and not fresh and now - cached[0] < self.ttl:
            return cached[1]
        sql, args = "SELECT COALESCE(SUM(cost_usd), 0) FROM completions WHERE created_at >= ?", \
            [month_start()]
        if key_id is not None:
            sql += " AND api_key_id = ?"
            args.append(key_id)
        value = self._connection().execute(sql, args).fetchone()[0]
        self._cache[key_id] = (now, value)
        return value

    def check(self, principal) -> None:
        """429 insufficient_quota before any upstream call when a budget is spent."""
        if self.global_limit is not None and self.spend() >= self.global_limit:
            raise QuotaExceeded("This gateway's monthly cost limit is reached "
                                f"(MONTHLY_COST_LIMIT {self.global_limit:g} USD).")
        budget = principal.monthly_budget_usd
        if budget is not None and principal.key_id and self.spend(principal.key_id) >= budget:
            raise QuotaExceeded(f"You exceeded this key's monthly budget of {budget:g} USD.")
