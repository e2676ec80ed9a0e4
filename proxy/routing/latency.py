"""A model's latency settings from GATEWAY_CONFIG: how long its first token may take
(`first_token_timeout`, seconds) and when a second attempt races a slow first one
(`hedge_after_ms`, `max_hedges`). A provider may set `first_token_timeout` too; a
model's own wins."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

MAX_HEDGES = 4  # more parallel attempts than this buy no latency, only cost


@dataclass(frozen=True, slots=True)
class LatencyPolicy:
    first_token_timeout: float | None = None
    hedge_after_s: float | None = None
    max_hedges: int = 0

    @property
    def hedged(self) -> bool:
        return self.hedge_after_s is not None and self.max_hedges > 0


NO_POLICY = LatencyPolicy()


def seconds(value, where: str, scale: float = 1.0) -> float | None:
    """A positive number of seconds (or of milliseconds, scale 0.001) from the config."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ValueError(f"{where} in GATEWAY_CONFIG must be a positive number")
    return value * scale


def policy_of(table: Mapping, where: str) -> LatencyPolicy:
    """The latency settings of a [models.NAME] table (NO_POLICY when it has none)."""
    first_token = seconds(table.get("first_token_timeout"), f"{where}.first_token_timeout")
    hedge_after = seconds(table.get("hedge_after_ms"), f"{where}.hedge_after_ms", 0.001)
    hedges = table.get("max_hedges", 1 if hedge_after is not None else 0)
    if isinstance(hedges, bool) or not isinstance(hedges, int) or not 0 <= hedges <= MAX_HEDGES:
        raise ValueError(f"{where}.max_hedges in GATEWAY_CONFIG must be an integer from 0 "
                         f"to {MAX_HEDGES}")
    if hedges and hedge_after is None:
        raise ValueError(f"{where}.max_hedges in GATEWAY_CONFIG needs hedge_after_ms")
    if first_token is None and hedge_after is None:
        return NO_POLICY
    return LatencyPolicy(first_token, hedge_after, hedges)
