"""Cool-down for a provider that keeps failing (a circuit breaker, per worker).

After `threshold` consecutive retryable failures a provider is skipped for
`cooldown` seconds; then one request may try it again (half-open): success
closes the breaker, failure opens it for another cool-down."""
from __future__ import annotations

import time


class Breaker:
    def __init__(self, threshold: int = 3, cooldown: float = 30.0, clock=time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def cooled_down(self, provider: str) -> bool:
        """True while `provider` should be skipped."""
        until = self._open_until.get(provider)
        if until is None:
            return False
        if self.clock() >= until:  # half-open: let the next request try
            del self._open_until[provider]
            self._failures[provider] = self.threshold - 1
            return False
        return True

    def failure(self, provider: str) -> None:
        count = self._failures.get(provider, 0) + 1
        self._failures[provider] = count
        if count >= self.threshold:
            self._open_until[provider] = self.clock() + self.cooldown

    def success(self, provider: str) -> None:
        self._failures.pop(provider, None)
        self._open_until.pop(provider, None)
