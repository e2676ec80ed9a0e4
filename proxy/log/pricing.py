"""What a request cost, in USD, from the shipped price table (pricing.toml)
plus the gateway config file's [pricing] overrides.

Prices are USD per million tokens. Token counts follow OpenAI's usage
convention: prompt_tokens INCLUDES cached_tokens and completion_tokens
INCLUDES reasoning_tokens. A model without a price costs None, never 0.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

_FIELDS = ("input", "cached_input", "output", "reasoning", "cache_write")
_REQUIRED = ("input", "output")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; an absent optional price falls back as noted."""
    input: float
    output: float
    cached_input: float | None = None   # cache reads; absent: input
    reasoning: float | None = None      # absent: output
    cache_write: float | None = None    # informational (Anthropic/Bedrock)

    @property
    def cached_rate(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def reasoning_rate(self) -> float:
        return self.output if self.reasoning is None else self.reasoning

    @classmethod
    def from_table(cls, model: str, table: Mapping) -> "ModelPrice":
        unknown = sorted(set(table) - set(_FIELDS))
        missing = [f for f in _REQUIRED if f not in table]
        if unknown or missing:
            raise ValueError(f"pricing for {model!r}: unknown {unknown}, missing {missing}")
        for name, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"pricing for {model!r}: {name} must be a number >= 0")
        return cls(**{name: float(value) for name, value in table.items()})


# How a model id is rewritten until it names a table entry. The id as given
# (lower-cased) is tried first; then each rule in order, cumulatively, and the
# first rewritten id found in the table wins.
_GATEWAY_PREFIXES = ("openrouter|openai|anthropic|azure|bedrock|converse|invoke|gemini|google"
                     "|vertex_ai|vertex|groq|mistral|mistralai|cohere|deepseek")
_RULES: tuple[tuple[re.Pattern, str], ...] = (
    # gateway/provider prefix: "openai/gpt-4o", "openrouter/anthropic/claude-…"
    (re.compile(rf"^(?:(?:{_GATEWAY_PREFIXES})/)+"), ""),
    # Bedrock region / cross-region inference profile: "us.", "global."
    (re.compile(r"^(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\."), ""),
    # Bedrock version: "-v1:0", "-v2:0", "-v0:2", ":0"
    (re.compile(r"(?:-v\d+)?(?::\d+)+$"), ""),
    # OpenRouter variants billed like the base model
    (re.compile(r":(?:beta|thinking)$"), ""),
    # Bedrock vendor: "anthropic.", "amazon.", "meta." …
    (re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|qwen|openai|writer)\."), ""),
    # date/snapshot: -2024-07-18, -20241022, @20250929 (Vertex), -0125 (MMDD), -001 (Gemini)
    (re.compile(r"(?:-\d{4}-\d{2}-\d{2}|[-@]\d{8}|-(?:0[1-9]|1[0-2])\d{2}|-\d{3})$"), ""),
    # bare version tag: Vertex "claude-3-5-sonnet-v2@…", Bedrock "…-v1"
    (re.compile(r"-v\d+$"), ""),
    # moving aliases
    (re.compile(r"-(?:latest|preview)$"), ""),
    # OpenRouter dotted versions: "claude-sonnet-4.5" -> "claude-sonnet-4-5"
    (re.compile(r"(?<=\d)\.(?=\d)"), "-"),
)


def candidate_names(model: str):
    """The id as given, then each distinct rewrite, in rule order."""
    name = model.strip().lower()
    yield name
    for pattern, replacement in _RULES:
        rewritten = pattern.sub(replacement, name)
        if rewritten != name:
            name = rewritten
            yield name


@lru_cache(maxsize=1)
def _shipped_tables() -> Mapping[str, Mapping]:
    text = resources.files(__package__).joinpath("pricing.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["models"]


class Pricing:
    def __init__(self, prices: Mapping[str, ModelPrice]):
        self._prices = {name.lower(): price for name, price in prices.items()}
        # Runs per request: remember what each id resolved to (None included).
        self._resolve = lru_cache(maxsize=4096)(self._resolve_uncached)

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping] | None = None) -> "Pricing":
        """The shipped table plus overrides ({"model": {"input": …, …}}, the
        config's [pricing] table). An override of a shipped model replaces the
        fields it names and keeps the others; a new model needs input and output."""
        tables = {name.lower(): dict(table) for name, table in _shipped_tables().items()}
        for name, table in (overrides or {}).items():
            if not isinstance(table, Mapping):
                raise ValueError(f"pricing for {name!r} must be a table")
            tables[name.lower()] = {**tables.get(name.lower(), {}), **table}
        return cls({name: ModelPrice.from_table(name, table) for name, table in tables.items()})

    def _resolve_uncached(self, model: str) -> str | None:
        return next((name for name in candidate_names(model) if name in self._prices), None)

    def resolve(self, model: str) -> str | None:
        """The table entry a model id is priced as, or None."""
        return self._resolve(model) if model else None

    def price(self, model: str) -> ModelPrice | None:
        name = self.resolve(model)
        return None if name is None else self._prices[name]

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int,
             cached_tokens: int = 0, reasoning_tokens: int = 0) -> float | None:
        """USD, rounded to 10 decimal places; None when the model has no price.
        Cached tokens are clamped to the prompt, reasoning tokens to the completion."""
        price = self.price(model)
        if price is None:
            return None
        prompt, completion = max(prompt_tokens or 0, 0), max(completion_tokens or 0, 0)
        cached = min(max(cached_tokens or 0, 0), prompt)
        reasoning = min(max(reasoning_tokens or 0, 0), completion)
        micro_usd = ((prompt - cached) * price.input + cached * price.cached_rate
                     + (completion - reasoning) * price.output + reasoning * price.reasoning_rate)
        return round(micro_usd / 1_000_000, 10)
