"""GET /v1/providers and GET /v1/models."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

from flask import Blueprint, current_app, jsonify

bp = Blueprint("catalog", __name__)


@lru_cache(maxsize=1)
def model_facts() -> dict:
    text = resources.files("proxy").joinpath("model_catalog.toml").read_text()
    return tomllib.loads(text)["models"]


def facts_of(facts: dict, model: str) -> dict:
    """What `facts` (shipped, or with the operator's) know of a model id, prefixed or not."""
    return facts.get(model) or facts.get(model.rsplit("/", 1)[-1]) or {}


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
