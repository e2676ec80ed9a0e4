"""Every operation the gateway serves, in one table: (method, path) -> what it
takes and answers. Bodies and parameters come from the routes' own check tables
(proxy/openapi/bodies.py); answers from proxy/openapi/shapes.py.

A new route gets a row here: tests/test_openapi.py compares this table with the
routes Flask and the chat endpoint serve, and names any route missing from it.
Paths are the /v1 ones; every /v1 route also answers without the prefix."""
from __future__ import annotations

from dataclasses import dataclass, field

from proxy import params
from proxy.log import queries
from proxy.openapi import bodies
from proxy.openapi.shapes import ERRORS, STREAM_NOTE, event, ref
from proxy.policy import key_admin
from proxy.routes import chain, compare, feedback, sessions


@dataclass(frozen=True)
class Op:
    summary: str
    tag: str
    answers: dict                      # status -> OpenAPI response object
    errors: tuple = ()                 # error statuses, keys of shapes.ERRORS
    body: dict | None = None           # the JSON body's schema
    parameters: list = field(default_factory=list)
    body_required: bool = True
    example: dict | None = None        # a body that works as it is with `make run` (echo)
    public: bool = False               # answered without a key
    description: str = ""


def answer(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def read(summary: str, tag: str, schema: str, answered: str, errors: tuple = (), **more) -> Op:
    """A GET answering 200 with `schema` (`answered` says what it holds)."""
    return Op(summary, tag, {200: answer(schema, answered)}, errors, **more)


def streamed(schema: str, chunk: str, description: str) -> dict:
    """A JSON answer, or server-sent events of `chunk`s with `"stream": true`."""
    return {"description": f"{description} {STREAM_NOTE}", "content": {
        "application/json": {"schema": ref(schema)},
        "text/event-stream": {"schema": event(chunk)}}}


HELLO = [{"role": "user", "content": "Hello there"}]

# the errors every kind of route can answer
KEYED = (401,)
BODY = (400, 408, 413)
CHAT_ERRORS = BODY + KEYED + (403, 404, 429, "4XX", "5XX")
MASTER_ONLY = KEYED + (403,)

KEY_ID = bodies.parameter("path", "key_id", {"type": "string"})
SESSION_ID = bodies.parameter("path", "session_id", {"type": "string"})
CHAT_HEADERS = [
    bodies.parameter("header", "X-Provider", {"type": "string"},
                     "The provider to use, whatever the model is called."),
    bodies.parameter("header", "X-Session-Id", params.SESSION_HEADER.schema,
                     "Log this call into that session (created on first use)."),
]
NEW_SESSION_FIELDS = {"id": params.SESSION_ID, **sessions.CHECKS}
SESSION_FIELDS = {name: sessions.CHECKS[name] for name in queries.EDITABLE}

OPERATIONS: dict[tuple[str, str], Op] = {
    ("POST", "/v1/chat/completions"): Op(
        "Create a chat completion", "Chat",
        {200: streamed("ChatCompletion", "ChatCompletionChunk", "OpenAI's chat completion.")},
        CHAT_ERRORS, ref("ChatRequest"), CHAT_HEADERS,
        example={"model": "echo", "messages": HELLO},
        description="OpenAI's chat completions, relayed or translated. Fields the gateway does "
                    "not read are forwarded unchecked. `model: \"auto\"` picks the cheapest model "
                    "that fits (`x-gateway-route: fastest`: the fastest)."),
    ("GET", "/v1/models"): read("List the models", "Models", "ModelList",
                                "Every available provider's models.", KEYED),
    ("GET", "/v1/providers"): read("List the providers", "Models", "ProviderList",
                                   "Each provider, available or not (`missing` names the "
                                   "variables it needs).", KEYED),
    ("POST", "/v1/keys"): Op(
        "Create a virtual key", "Keys",
        {201: answer("NewKey", "The new key; its secret `key` is shown only here.")},
        BODY + MASTER_ONLY, bodies.from_checks(key_admin.CHECKS, required=("name",),
                                          never_null=("name",)),
        example={"name": "team-a", "models": ["echo"], "rpm_limit": 60, "monthly_budget_usd": 50},
        description="Master key only. Null leaves a field unset."),
    ("GET", "/v1/keys"): read("List the virtual keys", "Keys", "KeyList",
                              "Every key, newest first (no secrets).", MASTER_ONLY),
    ("GET", "/v1/keys/{key_id}"): read("View a virtual key", "Keys", "KeyWithSpend",
                                       "The key and its spend this month (UTC).",
                                       MASTER_ONLY + (404,), parameters=[KEY_ID]),
    ("PATCH", "/v1/keys/{key_id}"): Op(
        "Change a virtual key", "Keys", {200: answer("Key", "The key as changed.")},
        BODY + MASTER_ONLY + (404,), bodies.from_checks(key_admin.CHECKS, never_null=("name",)),
        [KEY_ID], description="Master key only. Null clears a field (never `name`)."),
    ("DELETE", "/v1/keys/{key_id}"): Op("Revoke a virtual key", "Keys",
                                        {200: answer("Deleted", "Revoked at once, on every "
                                                     "worker.")},
                                        MASTER_ONLY + (404,), parameters=[KEY_ID]),
    ("POST", "/v1/sessions"): Op(
        "Create a session", "Sessions", {201: answer("Session", "The new session.")},
        BODY + KEYED + (409,), bodies.from_checks(NEW_SESSION_FIELDS, closed=True),
        example={"title": "Support", "model": "echo", "system_prompt": "You are helpful."},
        body_required=False, description="Without `id`, the session gets a new one."),
    ("GET", "/v1/sessions"): Op(
        "List sessions", "Sessions",
        {200: answer("SessionList", "Newest first; `next_cursor` gets the next page.")},
        (400,) + KEYED, parameters=[
            bodies.parameter("query", "limit", {**params.integer(1, sessions.MAX_LIMIT).schema,
                                                "default": sessions.DEFAULT_LIMIT}),
            bodies.parameter("query", "cursor", {"type": "string"}, "a `next_cursor` as returned"),
            bodies.parameter("query", "q", sessions.SEARCH.schema,
                             "only sessions whose id, title or model holds this text")]),
    ("GET", "/v1/sessions/{session_id}"): read(
        "View a session", "Sessions", "SessionWithMessages",
        "The session and its messages, in order.", KEYED + (404,), parameters=[SESSION_ID]),
    ("PATCH", "/v1/sessions/{session_id}"): Op(
        "Change a session", "Sessions", {200: answer("Session", "The session as changed.")},
        BODY + KEYED + (404,), bodies.from_checks(SESSION_FIELDS, closed=True), [SESSION_ID]),
    ("DELETE", "/v1/sessions/{session_id}"): Op(
        "Delete a session", "Sessions",
        {200: answer("Deleted", "Its messages, their bodies and its feedback are gone; its "
                                "completions stay, detached, for accounting.")},
        KEYED + (404,), parameters=[SESSION_ID]),
    ("POST", "/v1/sessions/{session_id}/messages"): Op(
        "Send a message in a session", "Sessions",
        {200: streamed("ChatCompletion", "ChatCompletionChunk", "The answer.")},
        CHAT_ERRORS, bodies.session_turn(), [SESSION_ID] + CHAT_HEADERS[:1],
        example={"content": "Hello there"},
        description="The session's system prompt and history, then this message, go to the "
                    "session's model (or `model`); both turns are stored."),
    ("GET", "/v1/feedback"): Op(
        "List feedback", "Feedback",
        {200: answer("FeedbackList", "Newest first; `next_cursor` gets the next page.")},
        (400,) + KEYED, parameters=bodies.query(
            feedback.LIST_ARGS, limit=f"default {feedback.DEFAULT_LIMIT}",
            cursor="a `next_cursor` as returned"),
        description="A virtual key sees the feedback on its own answers and sessions only."),
    ("POST", "/v1/feedback"): Op(
        "Give feedback on an answer", "Feedback", {201: answer("Feedback", "The feedback.")},
        BODY + KEYED + (404,),
        bodies.feedback(feedback.COMPLETION_ID, feedback.MESSAGE_ID, feedback.CHECKS),
        description="On a completion (`completion_id`, the chatcmpl id) or a session message "
                    "(`message_id`), not both; with `feedback_type` or `rating` or both."),
    ("GET", "/v1/usage"): Op(
        "Usage analytics", "Usage",
        {200: answer("Usage", "Per group and in total, for completions in [from, to).")},
        (400,) + KEYED, parameters=[
            bodies.parameter("query", "from", params.parse_time.schema, "default: `to` - 30 days"),
            bodies.parameter("query", "to", params.parse_time.schema,
                             "default: now; a date means the end of that day"),
            bodies.parameter("query", "group_by", {"type": "string", "enum": list(queries.GROUPS),
                                                   "default": "day"})]),
    ("POST", "/v1/compare"): Op(
        "Compare models", "Compare and chain",
        {200: streamed("CompareResults", "CompareEvent", "Each model's result, in request order.")},
        BODY + KEYED, bodies.compare(compare.MAX_MODELS),
        example={"models": ["echo", "echo"], "messages": HELLO},
        description="One chat request sent to several models at once; one failing fails only "
                    "its entry. Each call counts against the caller's limits and budget."),
    ("POST", "/v1/chain"): Op(
        "Chain models", "Compare and chain",
        {200: streamed("ChainResult", "ChatCompletionChunk", "Every step and the final answer "
                       "(streamed: the last step, as chat streams it).")},
        CHAT_ERRORS, bodies.chain(chain.MAX_STEPS, chain.NOT_PER_STEP),
        example={"steps": [{"model": "echo"}, {"model": "echo", "system_prompt": "Be brief."}],
                 "messages": HELLO},
        description="Each step gets the input with the previous step's answer appended. A "
                    "failing step stops the chain: its status and error, plus `step` and `steps` "
                    "(schema ChainError)."),
    ("GET", "/v1/status"): read("Live figures", "Service", "Status", "Chat calls in flight and "
                                "log rows waiting, over every worker.", MASTER_ONLY,
                                description="Master key only, when keys are on."),
    ("GET", "/"): read("Name and version", "Service", "Index", "The gateway.", public=True),
    ("GET", "/health"): read("Liveness", "Service", "Health", "Alive.", public=True),
    ("GET", "/ready"): Op("Readiness", "Service",
                          {200: answer("Readiness", "The default provider is configured."),
                           503: answer("Readiness", "The default provider is not configured.")},
                          public=True),
    ("GET", "/metrics"): Op(
        "Prometheus metrics", "Service",
        {200: {"description": "Prometheus' text format.",
               "content": {"text/plain": {"schema": {"type": "string"}}}}},
        MASTER_ONLY, description="Master key only, when keys are on."),
    ("GET", "/openapi.json"): read("This document", "Service", "OpenAPI", "OpenAPI 3.1.",
                                   public=True),
}
assert all(status in ERRORS for op in OPERATIONS.values() for status in op.errors)

# served, but not API operations: pages for a browser and the files they load
PAGES = ("/docs", "/redoc", "/docs/assets/<path:filename>", "/dashboard", "/dashboard/",
         "/dashboard/auth.json", "/dashboard/<path:filename>", "/dashboard/vendor/<path:filename>",
         "/static/<path:filename>")  # Flask's own static route (the app has no static folder)
