"""GET /v1/providers and GET /v1/models."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from proxy.model_facts import facts_of

bp = Blueprint("catalog", __name__)


@bp.get("/providers")
def providers():
    gateway = current_app.extensions["switchboard"]
    listing = [{"name": p.name, "type": p.spec.type, "available": p.spec.available,
                "default_model": p.spec.default_model, "models": list(p.known_models()),
                **({"missing": list(p.spec.missing)} if p.spec.missing else {})}
               for p in gateway.providers.values()]
    return jsonify({"providers": listing, "default": gateway.config.default_provider})


@bp.get("/models")
def models():
    gateway = current_app.extensions["switchboard"]
    data = []
    for provider in gateway.providers.values():
        if not provider.spec.available:
            continue
        ids = provider.known_models() or ((provider.spec.default_model,)
                                         if provider.spec.default_model else ())
        for model in ids:
            target = provider.spec.aliases.get(model, model)
            data.append({"id": model, "object": "model", "created": 0, "owned_by": provider.name,
                         "provider": provider.name, **facts_of(gateway.model_facts, target),
                         **_price(gateway.pricing, target)})
    return jsonify({"object": "list", "data": data})


def _price(pricing, model: str) -> dict:
    """The price the log charges for `model`, USD per million tokens, where known."""
    price = pricing.price(model)
    return {} if price is None else {"price": {
        "input": price.input, "cached_input": price.cached_rate, "output": price.output,
        "reasoning": price.reasoning_rate}}
