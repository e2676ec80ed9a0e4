"""`model: "auto"`: the cheapest configured model that can serve the request.

A candidate must support what the request uses (images -> vision, tools ->
tools, a json_schema response_format -> json schema) and have a context window
that fits the estimated prompt (its size / 4, never tokenised) plus max_tokens.
`x-gateway-route: cheapest` (default) orders by price (input + output per
million tokens); `fastest` by the median latency measured in the log over the
last day (models without measurements after, by price). The plan is the best
three, so the next ones are fallbacks."""
from __future__ import annotations

import time
from dataclasses import dataclass

from proxy import tokens
from proxy.errors import InvalidRequest
from proxy.model_facts import facts_of

DEFAULT_OUTPUT_TOKENS = 1024
PLAN_LENGTH = 3
LATENCY_TTL = 60.0


@dataclass(frozen=True)
class Candidate:
    provider: str
    model: str
    price: float  # USD per million input + output tokens
    context_length: int
    vision: bool
    tools: bool
    json_schema: bool


def needs(body: dict, raw_size: int) -> dict:
    messages = body["messages"]
    images = any(isinstance(m.get("content"), list) and
                 any(p.get("type") == "image_url" for p in m["content"]) for m in messages)
    fmt = (body.get("response_format") or {}).get("type")
    output = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_OUTPUT_TOKENS
    return {"vision": images, "tools": bool(body.get("tools")), "json_schema": fmt == "json_schema",
            "tokens": tokens.estimate_bytes(raw_size) + output}


def fits(candidate: Candidate, need: dict) -> bool:
    return (candidate.context_length >= need["tokens"]
            and all(getattr(candidate, k) for k in ("vision", "tools", "json_schema") if need[k]))


class AutoRouter:
    def __init__(self, providers, facts: dict, pricing, latency_source=None,
                 allowed: tuple[str, ...] | None = None):
        self.candidates = [c for c in _candidates(providers, facts, pricing)
                           if allowed is None or c.model in allowed
                           or f"{c.provider}/{c.model}" in allowed]
        self.latency_source = latency_source  # () -> sqlite3.Connection, for `fastest`
        self._latency: tuple[float, dict] | None = None

    def choose(self, body: dict, raw_size: int, hint: str | None) -> list[tuple[str, str]]:
        need = needs(body, raw_size)
        fitting = [c for c in self.candidates if fits(c, need)]
        if not fitting:
            raise InvalidRequest("No configured model can serve this request with model `auto` "
                                 "(it needs " + _describe(need) + ").", param="model",
                                 code="no_model_fits")
        if (hint or "cheapest") == "fastest":
            latency = self._latencies()
            fitting.sort(key=lambda c: (latency.get((c.provider, c.model), float("inf")), c.price))
        elif hint not in (None, "cheapest"):
            raise InvalidRequest("x-gateway-route must be `cheapest` or `fastest`.",
                                 param="x-gateway-route")
        else:
            fitting.sort(key=lambda c: c.price)
        return [(c.provider, c.model) for c in fitting[:PLAN_LENGTH]]

    def _latencies(self) -> dict:
        cached = self._latency
        if cached and time.monotonic() - cached[0] < LATENCY_TTL:
            return cached[1]
        rows = self.latency_source().execute(
            "SELECT provider, model_requested AS asked, model_answered, latency_ms FROM completions "
            "WHERE created_at > ? AND status < 400 AND latency_ms IS NOT NULL",
            (time.time() - 86400,)).fetchall() if self.latency_source else []
        samples: dict[tuple, list] = {}
        for row in rows:
            model = row["asked"].split("/", 1)[-1] if row["asked"] else row["model_answered"]
            samples.setdefault((row["provider"], model), []).append(row["latency_ms"])
        medians = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
        self._latency = (time.monotonic(), medians)
        return medians


def _candidates(providers, facts: dict, pricing) -> list[Candidate]:
    out = []
    for provider in providers.values():
        if not provider.spec.available or provider.spec.type == "echo":
            continue
        for model in provider.known_models():
            upstream = provider.spec.aliases.get(model, model)
            fact = facts_of(facts, model, upstream)
            price = pricing.price(upstream)
            if not fact or price is None:
                continue  # unknown capabilities or price: never chosen blindly
            out.append(Candidate(provider.name, model, price.input + price.output,
                                 fact.get("context_length", 0), fact.get("supports_vision", False),
                                 fact.get("supports_tools", False),
                                 fact.get("supports_json_schema", fact.get("supports_tools", False))))
    return out


def _describe(need: dict) -> str:
    wants = [k.replace("_", " ") for k in ("vision", "tools", "json_schema") if need[k]]
    return ", ".join(wants + [f"about {need['tokens']} tokens of context"])
