"""POST /v1/chat/completions."""
from __future__ import annotations

from flask import Blueprint, current_app, request

from proxy.completion import complete, parse_object

bp = Blueprint("chat", __name__)


@bp.post("/chat/completions")
def chat_completions():
    raw = request.get_data(cache=False)
    return complete(current_app.extensions["switchboard"], parse_object(raw), raw, request.headers)
