"""Provider types by name. Built-ins register through the same `register` a
plugin uses; `SWITCHBOARD_PLUGINS` names extra modules to import."""
from __future__ import annotations

import importlib

from providers.base import CompletionProvider, Preset

_TYPES: dict[str, type[CompletionProvider]] = {}

BUILTIN_MODULES = (
    "providers.echo",
    "providers.openai_compat",
    "providers.azure",
    "providers.anthropic",
    "providers.bedrock",
    "providers.bedrock_agent",
)


def register(cls: type[CompletionProvider]) -> type[CompletionProvider]:
    _TYPES[cls.type_name] = cls
    return cls


def unregister(type_name: str) -> None:
    _TYPES.pop(type_name, None)


def load(modules=BUILTIN_MODULES, plugins: str = "") -> None:
    extra = [m.strip() for m in plugins.split(",") if m.strip()]
    for module in (*modules, *extra):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real import error inside the module
                raise


def types() -> dict[str, type[CompletionProvider]]:
    return dict(_TYPES)


def presets() -> list[tuple[str, Preset]]:
    """(type name, preset) for every registered type, in registration order."""
    return [(name, preset) for name, cls in _TYPES.items() for preset in cls.presets]


def build(spec, http) -> CompletionProvider:
    return _TYPES[spec.type](spec, http)
