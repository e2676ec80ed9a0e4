"""Cool-down for a provider that keeps failing (a circuit breaker, per worker).

After `threshold` consecutive retryable failures a provider is skipped for
`cooldown` seconds; then one request may try it again (half-open): success
closes the breaker, failure opens it for another cool-down."""
from __future__ import annotations

import time


class Breaker:
    def __init__(self, threshold: int = 3, cooldown: float = 30.0, clock=time.monotonic,
                 per_provider: dict[str, tuple[int, float]] | None = None):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.per_provider = per_provider or {}  # name -> (threshold, cooldown), from the config
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def _limits(self, provider: str) -> tuple[int, float]:
        return self.per_provider.get(provider, (self.threshold, self.cooldown))

    def cooled_down(self, provider: str) -> bool:
        """True while `provider` should be skipped."""
        until = self._open_until.get(provider)
        if until is None:
            return False
        if self.clock() >= until:  # half-open: let the next request try
            del self._open_until[provider]
            self._failures[provider] = self._limits(provider)[0] - 1
            return False
        return True

    def failure(self, provider: str) -> None:
        count = self._failures.get(provider, 0) + 1
        self._failures[provider] = count
        threshold, cooldown = self._limits(provider)
        if count >= threshold:
            self._open_until[provider] = self.clock() + cooldown

    def success(self, provider: str) -> None:
        self._failures.pop(provider, None)
        self._open_until.pop(provider, None)


def from_specs(specs) -> Breaker:
    """Per-provider `cooldown_after` (failures in a row) and `cooldown_seconds` from the config."""
    per_provider = {}
    for spec in specs:
        options = spec.options
        if "cooldown_after" in options or "cooldown_seconds" in options:
            per_provider[spec.name] = (int(options.get("cooldown_after", 3)),
                                       float(options.get("cooldown_seconds", 30)))
    return Breaker(per_provider=per_provider)
