"""GET /, /health and /ready."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from proxy import __version__, metrics

bp = Blueprint("health", __name__)


@bp.get("/")
def index():
    return jsonify({"name": "switchboard", "version": __version__, "status": "ok"})


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready():
    gateway = current_app.extensions["switchboard"]
    default = gateway.providers.get(gateway.config.default_provider)
    ok = default is not None and default.spec.available
    body = {"status": "ready" if ok else "not_ready", "default_provider": gateway.config.default_provider,
            "providers": gateway.router.available()}
    return jsonify(body), 200 if ok else 503


@bp.get("/metrics")
def prometheus():
    current_app.extensions["switchboard"].metrics.tick()
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
