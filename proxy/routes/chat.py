"""POST /v1/chat/completions."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from proxy.completion import complete, parse_object, track

bp = Blueprint("chat", __name__)


@bp.post("/chat/completions")
def chat_completions():
    gateway = current_app.extensions["switchboard"]
    track(gateway, g.record)  # before parsing: refused calls are logged too
    raw = request.get_data(cache=False)
    return complete(gateway, parse_object(raw), raw, request.headers)
