"""Provider selection, first rule that applies:
X-Provider header, body `provider`, `name/model` prefix naming an available
provider, the config file's model table, PROVIDER_NAME."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from providers.base import CompletionProvider
from proxy.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Route:
    provider: CompletionProvider
    model: str  # the id sent upstream


class Router:
    def __init__(self, providers: Mapping[str, CompletionProvider],
                 models: Mapping[str, tuple[str, str]], default: str):
        self.providers = providers
        self.models = models
        self.default = default

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
        if explicit:
            provider = self._provider(explicit)
            model = model.removeprefix(f"{explicit}/")
        else:
            provider, model = self._implicit(model)
        model = provider.spec.aliases.get(model, model)
        if not provider.accepts(model):
            raise ModelNotFound(
                f"The model `{model}` does not exist on provider `{provider.name}`. Its models: "
                f"{', '.join(provider.known_models())}.", param="model")
        return Route(provider, model)

    def _implicit(self, model: str) -> tuple[CompletionProvider, str]:
        prefix, sep, rest = model.partition("/")
        if sep and rest:
            candidate = self.providers.get(prefix)
            if candidate is not None and candidate.spec.available:
                return candidate, rest
        entry = self.models.get(model)
        if entry is not None:
            return self._provider(entry[0]), entry[1]
        return self._provider(self.default), model
