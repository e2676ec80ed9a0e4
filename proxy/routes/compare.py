"""POST /v1/compare: one chat request sent to several models at once.

Request: the chat-completions fields (`messages`, `temperature`, `max_tokens`,
`stream`, `stream_options`, ...) plus
  * `models`: 2 to 16 entries, each a model id (`"gpt-4o-mini"`,
    `"anthropic/claude-sonnet-4-5"`) or `{"model": ..., "provider": ...}`;
  * `system_prompt`: added as a system message at the front when the messages have none.

Answer (not streamed), in request order; one model failing fails only its entry:
  {"results": [{"model", "provider", "completion": <chat.completion> | "error": <OpenAI
   error object>, "latency_ms", "ttft_ms", "usage", "cost_usd"}]}

Streamed (`"stream": true`), `text/event-stream; charset=utf-8`, events as they arrive:
  data: {"model_index": i, "model": "...", "chunk": <chat.completion.chunk>}
  data: {"model_index": i, "model": "...", "error": {"message", "type", "param", "code"}}
  data: {"summary": {"results": [<the fields above, without "completion">]}}
  data: [DONE]
Each model's usage chunk is among its chunks only with `stream_options.include_usage`;
the summary has usage either way. Each model call is logged as its own row,
request id `<request id>-<model index>`.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request
from werkzeug.datastructures import Headers

from proxy import assemble, orchestrate
from proxy.completion import parse_object
from proxy.errors import InvalidRequest
from proxy.orchestrate import ModelCall
from proxy.sse import DONE, STREAM_HEADERS, encode

bp = Blueprint("compare", __name__)

MAX_MODELS = 16
_OWN_FIELDS = ("models", "system_prompt", "stream")


@bp.post("/compare")
def compare():
    gateway = current_app.extensions["switchboard"]
    body = parse_object(request.get_data(cache=False))
    targets = _targets(body.get("models"))
    shared, stream = _shared(body)
    headers = Headers(list(request.headers.items()))
    calls = [ModelCall(gateway, {**shared, **target}, headers, f"{g.request_id}-{i}",
                       g.get("principal"), request.path) for i, target in enumerate(targets)]
    if stream:
        return Response(_events(calls), status=200, headers=STREAM_HEADERS)
    results = [outcome.result() for outcome in orchestrate.run_all(calls)]
    return Response(assemble.json_body({"results": results}), mimetype="application/json")


def _targets(models) -> list[dict]:
    if not isinstance(models, list) or len(models) < 2:
        raise InvalidRequest("`models` must be a list of at least 2 models to compare.",
                             param="models", code="invalid_value")
    if len(models) > MAX_MODELS:
        raise InvalidRequest(f"`models` may list at most {MAX_MODELS} models.", param="models",
                             code="invalid_value")
    return [_target(i, item) for i, item in enumerate(models)]


def _target(index: int, item) -> dict:
    if isinstance(item, str) and item:
        return {"model": item}
    if (isinstance(item, dict) and isinstance(item.get("model"), str) and item["model"]
            and isinstance(item.get("provider", ""), str) and set(item) <= {"model", "provider"}):
        return dict(item)
    raise InvalidRequest(f"`models[{index}]` must be a model id, or an object with `model` and "
                         "an optional `provider`.", param=f"models[{index}]", code="invalid_value")


def _shared(body: dict) -> tuple[dict, bool]:
    """The chat fields every model gets, checked as /v1/chat/completions checks them."""
    if "model" in body:
        raise InvalidRequest("`/v1/compare` takes `models` (a list), not `model`.", param="model",
                             code="invalid_value")
    prompt = orchestrate.typed(body, "system_prompt")
    orchestrate.typed(body, "provider")
    stream = bool(orchestrate.typed(body, "stream", bool))
    shared = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    orchestrate.check_chat({**shared, "model": "compare"})
    shared["messages"] = orchestrate.with_system(shared["messages"], prompt)
    return shared, stream


def _events(calls: list[ModelCall]):
    for index, chunk in orchestrate.interleave(calls):
        outcome = calls[index].outcome
        if chunk is not None:
            yield encode({"model_index": index, "model": outcome.model, "chunk": chunk})
        elif outcome.error is not None:
            yield encode({"model_index": index, "model": outcome.model,
                          "error": outcome.error.body()["error"]})
    yield encode({"summary": {"results": [c.outcome.result(completion=False) for c in calls]}})
    yield DONE
