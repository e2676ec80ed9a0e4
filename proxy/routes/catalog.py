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
            data.append({"id": model, "object": "model", "created": 0, "owned_by": provider.name,
                         "provider": provider.name,
                         **facts_of(gateway.model_facts, provider.spec.aliases.get(model, model))})
    return jsonify({"object": "list", "data": data})
