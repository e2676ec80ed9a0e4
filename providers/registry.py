"""Provider types by name. Built-ins register through the same `register` a
plugin uses; `SWITCHBOARD_PLUGINS` names extra modules to import, and one that
cannot be imported stops the start."""
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


class PluginError(ImportError):
    """A module named in SWITCHBOARD_PLUGINS cannot be imported: the gateway does not
    start without a provider type its configuration may rely on."""


def load(modules=BUILTIN_MODULES, plugins: str = "") -> None:
    for module in modules:
        importlib.import_module(module)
    for module in filter(None, (name.strip() for name in plugins.split(","))):
        _import_plugin(module)


def _import_plugin(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:  # misspelled, not on the path, or a dependency missing
        raise PluginError(f"SWITCHBOARD_PLUGINS names {module!r}, which cannot be imported: "
                          f"{exc}") from exc


def types() -> dict[str, type[CompletionProvider]]:
    return dict(_TYPES)


def presets() -> list[tuple[str, Preset]]:
    """(type name, preset) for every registered type, in registration order."""
    return [(name, preset) for name, cls in _TYPES.items() for preset in cls.presets]


def build(spec, http) -> CompletionProvider:
    return _TYPES[spec.type](spec, http)
