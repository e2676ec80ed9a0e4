"""Provider selection, first rule that applies:
X-Provider header, body `provider`, `name/model` prefix naming an available
provider, the config file's model table, PROVIDER_NAME.

`plan()` turns that choice into the ordered list of routes to try: one of the
model's deployments picked by weight (cooled-down providers skipped), the other
deployments, then the model's fallbacks."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

from providers.base import CompletionProvider
from proxy.errors import ModelNotFound
from proxy.routing.breaker import Breaker
from proxy.routing.latency import NO_POLICY, LatencyPolicy


@dataclass(frozen=True, slots=True)
class Route:
    provider: CompletionProvider
    model: str  # the id sent upstream


class Router:
    def __init__(self, providers: Mapping[str, CompletionProvider], models: Mapping,
                 default: str, breaker: Breaker | None = None, rng: random.Random | None = None,
                 auto=None):
        self.providers = providers
        self.models = models
        self.default = default
        self.breaker = breaker or Breaker()
        self.rng = rng or random.Random()
        self.auto = auto  # routing.auto.AutoRouter for `model: "auto"`

    def available(self) -> list[str]:
        return [name for name, p in self.providers.items() if p.spec.available]

    def _provider(self, name: str) -> CompletionProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise ModelNotFound(f"Unknown provider `{name}`. Configured providers: "
                                f"{', '.join(self.available())}.", param="provider")
        if not provider.spec.available:
            raise ModelNotFound(f"Provider `{name}` is not configured (set "
                                f"{', '.join(provider.spec.missing)}). Configured providers: "
                                f"{', '.join(self.available())}.", param="provider")
        return provider

    def resolve(self, model: str, explicit: str | None = None) -> Route:
        """The first route of the plan."""
        return self.plan(model, explicit)[0]

    def plan(self, model: str, explicit: str | None = None, *, body: dict | None = None,
             raw_size: int = 0, hint: str | None = None) -> list[Route]:
        if model == "auto" and not explicit and self.auto is not None and body is not None \
                and "auto" not in self.models:
            return [self._checked(self._provider(p), m)
                    for p, m in self.auto.choose(body, raw_size, hint)]
        if explicit:
            provider = self._provider(explicit)
            return [self._checked(provider, model.removeprefix(f"{explicit}/"))]
        prefix, sep, rest = model.partition("/")
        candidate = self.providers.get(prefix) if sep and rest else None
        if candidate is not None and candidate.spec.available:
            return [self._checked(candidate, rest)]
        entry = self.models.get(model)
        if entry is None:
            return [self._checked(self._provider(self.default), model)]
        routes = [self._checked(self._provider(t.provider), t.model) for t in self._by_weight(entry)]
        for fallback in entry.fallbacks:
            routes.extend(r for r in self.plan(fallback) if r not in routes)
        return self._healthy_first(routes)

    def latency(self, model: str) -> LatencyPolicy:
        """The requested model's first-token deadline and hedging (GATEWAY_CONFIG)."""
        return getattr(self.models.get(model), "latency", NO_POLICY)

    def _checked(self, provider: CompletionProvider, model: str) -> Route:
        model = provider.spec.aliases.get(model, model)
        if not provider.accepts(model):
            raise ModelNotFound(
                f"The model `{model}` does not exist on provider `{provider.name}`. Its models: "
                f"{', '.join(provider.known_models())}.", param="model")
        return Route(provider, model)

    def _by_weight(self, entry) -> list:
        """Deployments in a weighted random order: the first is picked by weight."""
        if len(entry.targets) == 1:
            return list(entry.targets)
        pool, ordered = list(entry.targets), []
        while pool:
            pick = self.rng.choices(pool, weights=[t.weight for t in pool])[0]
            pool.remove(pick)
            ordered.append(pick)
        return ordered

    def _healthy_first(self, routes: list[Route]) -> list[Route]:
        healthy = [r for r in routes if not self.breaker.cooled_down(r.provider.name)]
        return healthy + [r for r in routes if r not in healthy] if healthy else routes
