"""/v1/sessions: create, list (and search), view, edit, delete; POST /v1/sessions/{id}/messages
sends one new user message with the session's system prompt and stored history.

Rows are written by each worker's background writer (batched, ~50 ms): these
views flush this worker's writer before reading, so a client sees its own
turns at once on the same worker; across workers the log is eventually
consistent (another worker's turn appears within a batch interval)."""
from __future__ import annotations

import base64
import os
from contextlib import contextmanager

import orjson
from flask import Blueprint, current_app, g, jsonify, request

from proxy import params
from proxy.completion import complete, parse_object
from proxy.errors import GatewayError, InvalidRequest, NotFound
from proxy.log import queries
from proxy.policy.access import owner, owns
from proxy.respond import flask_response
from proxy.routes.feedback import feedback_object

bp = Blueprint("sessions", __name__)

CHECKS = {
    "id": params.SESSION_ID,
    "title": params.text(params.MAX_NAME),
    "model": params.printable(params.MAX_ID),
    "system_prompt": params.text(params.MAX_PROMPT),
    "metadata": params.json_object,
}
SEARCH = params.printable(params.MAX_NAME, min_chars=1)
FLUSH_TIMEOUT = 2.0
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
_USAGE_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
_MESSAGE_FIELDS = ("name", "tool_calls", "tool_call_id")
_SYSTEM_ROLES = ("system", "developer")


@contextmanager
def _db(flush: bool = True):
    recorder = current_app.extensions["switchboard"].recorder
    if flush:
        recorder.flush(FLUSH_TIMEOUT)
    conn = recorder.connection()
    try:
        yield conn
    finally:
        conn.close()


def _not_found(session_id: str) -> NotFound:
    return NotFound(f"No session with id '{session_id}'.", param="session_id")


def _owner() -> str | None:
    return owner(g.get("principal"))


def _owned(conn, session_id: str):
    """The session row, if it exists and this caller may see it (a virtual key sees
    only its own sessions; another key's is reported as not found)."""
    row = queries.session_row(conn, session_id)
    if row is None or not owns(g.get("principal"), row["api_key_id"]):
        raise _not_found(session_id)
    return row


# -- views ------------------------------------------------------------------------
@bp.post("/sessions")
def create_session():
    raw = request.get_data(cache=False)
    body = parse_object(raw) if raw.strip() else {}
    fields = _fields(body, allow_id=True)
    session_id = fields.pop("id", None) or "sess_" + os.urandom(16).hex()
    with _db(flush=False) as conn:
        if not queries.create_session(conn, session_id, fields, _owner()):
            raise GatewayError(f"A session with id '{session_id}' already exists.", status=409,
                               type="invalid_request_error", code="session_exists", param="id")
        row = queries.session_row(conn, session_id)
    return jsonify(session_object(row)), 201


@bp.get("/sessions")
def list_sessions():
    limit, before, search = _limit(), _cursor(), _search()
    with _db() as conn:
        rows = queries.list_sessions(conn, limit, before, _owner(), search)
    page = rows[:limit]
    more = len(rows) > limit
    return jsonify({"object": "list", "data": [session_object(r) for r in page], "has_more": more,
                    "next_cursor": _encode_cursor(page[-1]) if more else None})


@bp.get("/sessions/<session_id>")
def get_session(session_id: str):
    with _db() as conn:
        _owned(conn, session_id)
        found = queries.get_session(conn, session_id)
    if found is None:
        raise _not_found(session_id)
    session, messages, feedback = found
    return jsonify({**session_object(session),
                    "messages": [message_object(m, feedback) for m in messages]})


@bp.patch("/sessions/<session_id>")
def update_session(session_id: str):
    fields = _fields(parse_object(request.get_data(cache=False)), allow_id=False)
    with _db(flush=False) as conn:
        _owned(conn, session_id)
        if fields and not queries.update_session(conn, session_id, fields):
            raise _not_found(session_id)
        row = queries.session_row(conn, session_id)
    if row is None:
        raise _not_found(session_id)
    return jsonify(session_object(row))


@bp.delete("/sessions/<session_id>")
def delete_session(session_id: str):
    # flushed first: a turn still queued here would otherwise bring the session back
    with _db() as conn:
        _owned(conn, session_id)
        if not queries.delete_session(conn, session_id):
            raise _not_found(session_id)
    return jsonify({"id": session_id, "object": "session.deleted", "deleted": True})


@bp.post("/sessions/<session_id>/messages")
def send_message(session_id: str):
    body = parse_object(request.get_data(cache=False))
    with _db() as conn:
        session = _owned(conn, session_id)
        history = queries.session_history(conn, session_id)
    # a session turn: the writer stores only the new user message and the answer
    return flask_response(complete(current_app.extensions["switchboard"],
                                   session_turn(session, history, body), None, request.headers,
                                   g.record, g.principal, session_id=session_id))


# -- the turn -------------------------------------------------------------------------
def session_turn(session, history: list[dict], body: dict) -> dict:
    """The chat body to run: the session's system prompt, its stored history
    without stored system messages, then the new user message."""
    if "messages" in body:
        raise InvalidRequest("Send the new message as `content`: the session supplies the history.",
                             param="messages", code="unknown_parameter")
    content = body.pop("content", None)
    if not content or not isinstance(content, (str, list)):
        raise InvalidRequest("`content` must be a non-empty string or a list of content parts.",
                             param="content", code="invalid_value")
    model = body.get("model") or session["model"]
    if not model:
        raise InvalidRequest("This session has no model: send `model`.", param="model",
                             code="missing_required_parameter")
    user = {"role": "user", "content": content}
    system = [{"role": "system", "content": session["system_prompt"]}] if session["system_prompt"] else []
    prompt = [m for m in history if m.get("role") not in _SYSTEM_ROLES]
    return {**body, "model": model, "messages": system + prompt + [user]}


# -- shapes ---------------------------------------------------------------------------
def session_object(row) -> dict:
    return {"id": row["id"], "object": "session", "created_at": int(row["created_at"]),
            "updated_at": int(row["updated_at"]), "title": row["title"], "model": row["model"],
            "system_prompt": row["system_prompt"],
            "metadata": orjson.loads(row["metadata"]) if row["metadata"] else {},
            "message_count": row["message_count"], "total_tokens": row["total_tokens"],
            "total_cost_usd": round(row["total_cost_usd"], 10)}


def message_object(row, feedback: list) -> dict:
    body = orjson.loads(row["body"])
    out = {"id": row["id"], "object": "session.message", "position": row["position"],
           "role": row["role"], "content": body.get("content"),
           **{k: body[k] for k in _MESSAGE_FIELDS if k in body},
           "created_at": int(row["created_at"])}
    if row["role"] == "assistant":
        out.update(_completion_facts(row))
    out["feedback"] = [feedback_object(f) for f in feedback if _attached(f, row)]
    return out


def _completion_facts(row) -> dict:
    usage = {k: row[k] for k in _USAGE_COLUMNS}
    usage["total_tokens"] = (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0) \
        if row["prompt_tokens"] is not None else None
    usage["estimated"] = bool(row["tokens_estimated"]) if row["tokens_estimated"] is not None else None
    return {"request_id": row["request_id"], "completion_id": row["completion_id"],
            "model": row["model_answered"] or row["model_requested"], "provider": row["provider"],
            "finish_reason": row["finish_reason"], "usage": usage, "cost_usd": row["cost_usd"],
            "latency_ms": row["latency_ms"], "ttft_ms": row["ttft_ms"]}


def _attached(feedback, message) -> bool:
    """Feedback on this message, or on its completion when this is the answer."""
    if feedback["message_id"] is not None:
        return feedback["message_id"] == message["id"]
    return (message["role"] == "assistant" and message["completion_row"] is not None
            and feedback["completion_row"] == message["completion_row"])


# -- parameters -------------------------------------------------------------------------
def _fields(body: dict, *, allow_id: bool) -> dict:
    allowed = queries.EDITABLE + (("id",) if allow_id else ())
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {unknown[0]}.",
                             param=unknown[0], code="unknown_parameter")
    return params.checked(body, CHECKS)


def _limit() -> int:
    text = request.args.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"`limit` must be an integer from 1 to {MAX_LIMIT}.", param="limit",
                             code="invalid_value")
    return limit


def _search() -> str | None:
    """`q`: a piece of the id, title or model to look for (empty: every session)."""
    text = request.args.get("q")
    return SEARCH(text, "q") if text else None


def _encode_cursor(row) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row["updated_at"], row["id"]])).decode()


def _cursor() -> tuple[float, str] | None:
    text = request.args.get("cursor")
    if not text:
        return None
    try:
        updated_at, session_id = orjson.loads(base64.urlsafe_b64decode(text.encode()))
        if params.is_number(updated_at) and isinstance(session_id, str):
            return float(updated_at), session_id
    except (ValueError, TypeError):
        pass
    raise InvalidRequest("`cursor` is not a cursor this gateway returned (`next_cursor`).",
                         param="cursor", code="invalid_value")
