"""POST /v1/feedback: a thumbs up/down, flag, rating or comment on a completion
(by the chatcmpl id the client received) or on a session message (by its id).
GET /v1/feedback: what was given, newest first, a page at a time (a virtual key
sees the feedback on its own answers and sessions only)."""
from __future__ import annotations

import time
from contextlib import closing

from flask import Blueprint, current_app, g, jsonify, request

from proxy import params
from proxy.completion import parse_object
from proxy.errors import InvalidRequest, NotFound
from proxy.log import queries
from proxy.policy.access import owner, owns

bp = Blueprint("feedback", __name__)

MAX_COMMENT = 10_000
COMPLETION_ID = params.text(params.MAX_ID, min_chars=1)
MESSAGE_ID = params.integer(1, params.SQLITE_INT_MAX)
CHECKS = {"feedback_type": params.one_of(queries.FEEDBACK_TYPES), "rating": params.integer(1, 5),
          "comment": params.text(MAX_COMMENT)}
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
LIST_ARGS = {"limit": params.integer(1, MAX_LIMIT), "cursor": MESSAGE_ID,
            "feedback_type": CHECKS["feedback_type"]}
# the row may still be queued in a writer (this worker's is flushed first; another
# worker's writes within ~50 ms): look again for a short while before a 404
RETRY_SECONDS = 2.0
RETRY_STEP = 0.1


def feedback_object(row) -> dict:
    return {"id": row["id"], "object": "feedback", "completion_id": row["completion_id"],
            "request_id": row["request_id"], "message_id": row["message_id"],
            "session_id": row["session_id"], "feedback_type": row["feedback_type"],
            "rating": row["rating"], "comment": row["comment"], "created_at": int(row["created_at"])}


@bp.post("/feedback")
def create_feedback():
    body = parse_object(request.get_data(cache=False))
    kind, key = _target(body)
    fields = _fields(body)
    gateway = current_app.extensions["switchboard"]
    with closing(gateway.recorder.connection()) as conn:
        found = _lookup(gateway, conn, kind, key)
        if found is not None and not owns(g.get("principal"), found["api_key_id"]):
            found = None  # another key's answer: as if it did not exist
        if found is None:
            raise NotFound(f"No {'completion' if kind == 'completion_id' else 'message'} "
                           f"with {kind} '{key}'.", param=kind)
        if kind == "completion_id":
            links = {"completion_row": found["id"], "message_id": None}
        else:  # an answer's feedback also counts for its completion (usage by model, ...)
            links = {"message_id": found["id"],
                     "completion_row": found["completion_row"] if found["role"] == "assistant" else None}
        row = queries.add_feedback(conn, **links, **fields)
    return jsonify(feedback_object(row)), 201


@bp.get("/feedback")
def list_feedback():
    args = params.checked({name: _number(value) for name, value in request.args.items()
                           if name in LIST_ARGS and value}, LIST_ARGS)
    limit = args.get("limit", DEFAULT_LIMIT)
    with closing(current_app.extensions["switchboard"].recorder.connection()) as conn:
        rows = queries.list_feedback(conn, limit, args.get("cursor"), owner(g.get("principal")),
                                     args.get("feedback_type"))
    page = rows[:limit]
    more = len(rows) > limit
    return jsonify({"object": "list", "data": [feedback_object(r) for r in page], "has_more": more,
                    "next_cursor": str(page[-1]["id"]) if more else None})


def _target(body: dict) -> tuple[str, str | int]:
    completion_id, message_id = body.get("completion_id"), body.get("message_id")
    if completion_id is not None and message_id is not None:
        raise InvalidRequest("Send either `completion_id` or `message_id`, not both.",
                             param="message_id")
    if completion_id is not None:
        return "completion_id", COMPLETION_ID(completion_id, "completion_id")
    if message_id is None:
        raise InvalidRequest("Missing required parameter: 'completion_id' or 'message_id'.",
                             param="completion_id", code="missing_required_parameter")
    return "message_id", _message_id(message_id)


def _message_id(value) -> int:
    """A session message id, as an integer or as its ASCII digits."""
    return MESSAGE_ID(_number(value), "message_id")


def _number(value):
    """Up to 19 ASCII digits as the integer they write (`int()` would also take
    "²"-like digits from any script, and fail past 4,300 of them); anything else
    as it is, for its check to judge."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return value


def _fields(body: dict) -> dict:
    fields = dict.fromkeys(CHECKS) | params.checked(body, CHECKS)
    if fields["feedback_type"] is None and fields["rating"] is None:
        raise InvalidRequest("Send `feedback_type` or `rating` (or both).", param="feedback_type",
                             code="missing_required_parameter")
    return fields


def _lookup(gateway, conn, kind: str, key):
    find = queries.find_completion if kind == "completion_id" else queries.find_message
    found = find(conn, key)
    if found is None:
        gateway.recorder.flush(RETRY_SECONDS)
        found = find(conn, key)
    deadline = time.monotonic() + RETRY_SECONDS
    while found is None and time.monotonic() < deadline:
        time.sleep(RETRY_STEP)  # gevent's sleep under the gevent worker: other requests go on
        found = find(conn, key)
    return found
