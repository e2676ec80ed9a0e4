"""Cost of one answer from its OpenAI usage object."""
from __future__ import annotations


def usage_tokens(usage: dict) -> tuple[int | None, int | None, int, int]:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return (usage.get("prompt_tokens"), usage.get("completion_tokens"),
            prompt_details.get("cached_tokens") or 0, completion_details.get("reasoning_tokens") or 0)


def usage_cost(pricing, model: str | None, usage: dict | None) -> float | None:
    if not usage or not model:
        return None
    prompt, completion, cached, reasoning = usage_tokens(usage)
    if prompt is None or completion is None:
        return None
    return pricing.cost(model, prompt, completion, cached, reasoning)
