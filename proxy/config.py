"""Configuration: environment variables plus the optional TOML file named by
GATEWAY_CONFIG, resolved once into one frozen object."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from providers import registry
from providers.base import Preset, ProviderSpec
from proxy import forwarding, tracing
from proxy.routing.latency import NO_POLICY, LatencyPolicy, policy_of


@dataclass(frozen=True)
class Config:
    default_provider: str = "echo"
    providers: Mapping[str, ProviderSpec] = field(default_factory=dict)
    #: public model name -> where it is served (deployments) and what to try next
    models: Mapping[str, "ModelEntry"] = field(default_factory=dict)
    max_body_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    #: the largest single SSE event an upstream may send (MAX_STREAM_EVENT_BYTES)
    max_stream_event_bytes: int = 8 * 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "json"  # LOG_FORMAT: json | text
    log_bodies: bool = False
    database_url: str = "sqlite:///./gateway.db"
    log_content: str = "full"  # full | redacted | none
    log_queue_max: int = 100_000
    log_retention_days: float | None = None
    log_max_rows: int | None = None
    pricing: Mapping[str, Mapping] = field(default_factory=dict)
    #: the operator's facts about models ([model_info.NAME]), over the shipped catalog
    model_facts: Mapping[str, Mapping] = field(default_factory=dict)
    #: the models `model: "auto"` may choose from ([auto] models); None: any it knows
    auto_models: tuple[str, ...] | None = None
    master_key: str | None = field(default=None, repr=False)
    monthly_cost_limit: float | None = None
    default_system_prompt: str | None = None
    rate_limit: str = ""  # RATE_LIMIT, e.g. "60rpm,100000tpm"
    redis_url: str | None = None
    rate_limit_on_store_failure: str = "allow"  # RATE_LIMIT_ON_STORE_FAILURE: allow | refuse
    #: OpenTelemetry traces (the OTEL_* variables, see proxy/tracing), and message content in them
    tracing: bool = False
    trace_content: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        env = dict(os.environ if env is None else env)
        registry.load(plugins=env.get("SWITCHBOARD_PLUGINS", ""))
        file = _read_toml(env.get("GATEWAY_CONFIG"))
        providers = _providers(env, file.get("providers", {}))
        facts, prices = _model_info(file.get("model_info", {}))
        return cls(
            default_provider=env.get("PROVIDER_NAME") or file.get("default_provider") or "echo",
            providers=MappingProxyType(providers),
            models=MappingProxyType(_model_table(providers, file.get("models", {}))),
            max_body_bytes=int(env.get("MAX_REQUEST_BYTES", 20 * 1024 * 1024)),
            connect_timeout=float(env.get("UPSTREAM_CONNECT_TIMEOUT", 10)),
            read_timeout=float(env.get("UPSTREAM_TIMEOUT", 600)),
            max_stream_event_bytes=int(env.get("MAX_STREAM_EVENT_BYTES", 8 * 1024 * 1024)),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_format=_choice(env.get("LOG_FORMAT", "json"), ("json", "text"), "LOG_FORMAT"),
            log_bodies=env.get("LOG_LEVEL", "").upper() == "DEBUG",
            database_url=env.get("DATABASE_URL") or "sqlite:///./gateway.db",
            log_content=_choice(env.get("LOG_CONTENT", "full"), ("full", "redacted", "none"),
                                "LOG_CONTENT"),
            log_queue_max=int(env.get("LOG_QUEUE_MAX", 100_000)),
            log_retention_days=float(env["LOG_RETENTION_DAYS"]) if env.get("LOG_RETENTION_DAYS") else None,
            log_max_rows=int(env["LOG_MAX_ROWS"]) if env.get("LOG_MAX_ROWS") else None,
            pricing=MappingProxyType({**file.get("pricing", {}), **prices}),
            model_facts=MappingProxyType(facts),
            auto_models=_auto_models(file.get("auto", {})),
            master_key=env.get("GATEWAY_MASTER_KEY") or None,
            monthly_cost_limit=float(env["MONTHLY_COST_LIMIT"]) if env.get("MONTHLY_COST_LIMIT") else None,
            default_system_prompt=env.get("DEFAULT_SYSTEM_PROMPT") or None,
            rate_limit=env.get("RATE_LIMIT", ""),
            redis_url=env.get("REDIS_URL") or None,
            rate_limit_on_store_failure=_choice(env.get("RATE_LIMIT_ON_STORE_FAILURE", "allow"),
                                                ("allow", "refuse"), "RATE_LIMIT_ON_STORE_FAILURE"),
            tracing=tracing.wanted(env),
            trace_content=tracing.capture_wanted(env),
        )

    def secrets(self) -> tuple[str, ...]:
        keys = [p.api_key for p in self.providers.values() if p.api_key]
        return tuple(keys + ([self.master_key] if self.master_key else []))


# per-provider retry and timeout settings a config-file table may carry
_POLICY_KEYS = ("retries", "connect_timeout", "first_byte_timeout", "idle_timeout", "total_timeout",
                "cooldown_after", "cooldown_seconds", "warm_connections", "warm_idle_s",
                "first_token_timeout")


# [model_info.NAME] keys and the type each must have (bool is not an int here)
_FACT_TYPES = {"context_length": int, "supports_vision": bool, "supports_tools": bool,
               "supports_json_schema": bool}


def _model_info(tables: Mapping) -> tuple[dict, dict]:
    """(facts per model, prices per model) from the config's [model_info] tables."""
    facts, prices = {}, {}
    for model, table in tables.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"model_info.{model} in GATEWAY_CONFIG must be a table")
        unknown = sorted(set(table) - set(_FACT_TYPES) - {"price"})
        if unknown:
            raise ValueError(f"model_info.{model} in GATEWAY_CONFIG: unknown {unknown}; known: "
                             f"{', '.join([*_FACT_TYPES, 'price'])}")
        for name, kind in _FACT_TYPES.items():
            value = table.get(name)
            if value is not None and (type(value) is not kind or (kind is int and value <= 0)):
                raise ValueError(f"model_info.{model}.{name} in GATEWAY_CONFIG must be "
                                 f"{'a positive integer' if kind is int else 'true or false'}")
        facts[model] = {k: v for k, v in table.items() if k in _FACT_TYPES}
        if "price" in table:
            prices[model] = table["price"]
    return facts, prices


def _auto_models(table: Mapping) -> tuple[str, ...] | None:
    models = table.get("models")
    if models is None:
        return None
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError("auto.models in GATEWAY_CONFIG must be a list of model names")
    return tuple(models)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _read_toml(path: str | None) -> dict:
    if not path:
        return {}
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _from_preset(type_name: str, preset: Preset, env: Mapping, table: Mapping) -> ProviderSpec:
    custom_url = table.get("base_url")
    # A base URL the config file chose never receives the preset's key: only a
    # key variable named next to it.
    key_env = table.get("api_key_env") or (None if custom_url else preset.key_env)
    base_url = custom_url or (env.get(preset.base_url_env) if preset.base_url_env else None) \
        or preset.base_url
    missing = tuple(v for v in preset.required_env if not env.get(v))
    if custom_url and preset.key_env in missing:
        missing = tuple(v for v in missing if v != preset.key_env)
    options = {opt: env.get(var, default) for opt, (var, default) in preset.options_env.items()}
    options.update(table.get("options", {}))
    options.update({k: table[k] for k in _POLICY_KEYS if k in table})
    return ProviderSpec(
        name=preset.name, type=type_name, base_url=base_url,
        api_key=env.get(key_env) if key_env else None,
        available=not missing, missing=missing,
        default_model=table.get("default_model", preset.default_model),
        models=tuple(table.get("models", preset.models)),
        strict_models="models" in table,
        aliases=MappingProxyType(dict(table.get("aliases", {}))),
        options=MappingProxyType(options),
        headers=MappingProxyType({**preset.headers, **table.get("headers", {})}),
        **forwarding.settings(preset.name, table, registry.types()[type_name].relays_request),
    )


def _from_table(name: str, table: Mapping, env: Mapping) -> ProviderSpec:
    type_name = table.get("type")
    if type_name not in registry.types():
        raise ValueError(f"provider {name!r} in GATEWAY_CONFIG has unknown type {type_name!r}; "
                         f"known: {', '.join(sorted(registry.types()))}")
    base = next((p for t, p in registry.presets() if t == type_name), Preset(name=name))
    # the type's first preset gives option defaults; its name, URL and key do not carry over
    preset = Preset(name=name, base_url=None, key_env=None, required_env=(),
                    options_env=base.options_env, headers=base.headers)
    spec = _from_preset(type_name, preset, env, table)
    key_env = table.get("api_key_env")
    missing = (key_env,) if key_env and not env.get(key_env) else ()
    return ProviderSpec(**{**spec.__dict__, "available": not missing, "missing": missing})


def _providers(env: Mapping, tables: Mapping) -> dict[str, ProviderSpec]:
    specs: dict[str, ProviderSpec] = {}
    for type_name, preset in registry.presets():
        specs[preset.name] = _from_preset(type_name, preset, env, tables.get(preset.name, {}))
    for name, table in tables.items():
        if name not in specs:
            specs[name] = _from_table(name, table, env)
    return specs


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    weight: float = 1.0


@dataclass(frozen=True)
class ModelEntry:
    """A public model name: one or more deployments (load-balanced by weight)
    and, on retryable failures, fallbacks (`provider/model` or model names)."""
    targets: tuple[Target, ...]
    fallbacks: tuple[str, ...] = ()
    latency: LatencyPolicy = NO_POLICY


def _entry(name: str, entry) -> ModelEntry:
    if isinstance(entry, str):
        return ModelEntry((Target(entry, name),))
    deployments = entry.get("deployments") or [entry]
    targets = tuple(Target(d["provider"], d.get("model", name), float(d.get("weight", 1)))
                    for d in deployments)
    if any(t.weight <= 0 for t in targets):
        raise ValueError(f"model {name!r} in GATEWAY_CONFIG: weights must be positive")
    return ModelEntry(targets, tuple(entry.get("fallbacks", ())),
                      policy_of(entry, f"models.{name}"))


def _model_table(providers: Mapping[str, ProviderSpec], table: Mapping) -> dict:
    models: dict[str, ModelEntry] = {}
    for spec in providers.values():
        if not spec.available:
            continue
        for model in spec.models:
            models.setdefault(model, ModelEntry((Target(spec.name, model),)))
        for alias, target in spec.aliases.items():
            models.setdefault(alias, ModelEntry((Target(spec.name, target),)))
    for name, entry in table.items():
        models[name] = _entry(name, entry)
    return models
