"""POST /v1/chain: a pipeline of models, each step refining the one before.

Request: `messages` (the chain's input), `steps`: 1 to 16 objects, each with a
`model` and optionally a `system_prompt`, a `provider` and any chat field
(`temperature`, `max_tokens`, ...); chat fields at the top level are defaults
for every step, `system_prompt` at the top level is the default step prompt.

What a step receives:
  * its `system_prompt`, when it has one, replaces the input's system messages
    (each step has its own job); without one the input's system messages stay;
  * step 1: the input messages;
  * step N: the input messages with step N-1's answer appended to the last user
    message, after a blank line, as
        <previous_step_answer>
        ...
        </previous_step_answer>
    (as a new text part when that message's content is a list of parts; as a
    new user message when the input does not end with one).

Answer: {"steps": [{"model", "provider", "output", "usage", "cost_usd",
"latency_ms"}] (every step), "final": <the last step's chat.completion>}.
With `"stream": true` the steps before the last run first, unstreamed, then the
last step streams exactly as /v1/chat/completions streams it.
A failing step stops the chain: the response has that step's HTTP status and
OpenAI's error body plus `"step"` (its 0-based index) and `"steps"` (those done).
Each step is logged as its own row, request id `<request id>-<step index>`.
"""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, g, request
from werkzeug.datastructures import Headers

from proxy import assemble, orchestrate
from proxy.completion import parse_object
from proxy.errors import GatewayError, InvalidRequest
from proxy.orchestrate import ModelCall, Outcome
from proxy.sse import STREAM_HEADERS

bp = Blueprint("chain", __name__)

MAX_STEPS = 16
_OWN_FIELDS = ("steps", "stream", "system_prompt")
NOT_PER_STEP = ("messages", "stream", "stream_options")


@bp.post("/chain")
def chain():
    gateway = current_app.extensions["switchboard"]
    body = parse_object(request.get_data(cache=False))
    stream = bool(orchestrate.typed(body, "stream", bool))
    steps, messages = _steps(body)
    headers = Headers(list(request.headers.items()))
    done: list[dict] = []
    answer = outcome = None
    for index, (step, prompt) in enumerate(steps):
        step = {**step, "messages": compose(messages, prompt, answer)}
        call = ModelCall(gateway, step, headers, f"{g.request_id}-{index}", g.get("principal"),
                         request.path)
        if stream and index == len(steps) - 1:
            return _streamed(call, index, done)
        outcome = call.complete()
        if outcome.error is not None:
            return _failed(index, outcome.error, done)
        done.append(_step_result(outcome))
        answer = _output(outcome)
    return Response(assemble.json_body({"steps": done, "final": outcome.completion}),
                    mimetype="application/json")


def compose(messages: list, prompt: str | None, answer: str | None) -> list:
    """A step's messages from the chain's input (see the module docstring)."""
    if prompt:
        messages = [{"role": "system", "content": prompt},
                    *(m for m in messages if m.get("role") not in orchestrate.SYSTEM_ROLES)]
    if answer is None:
        return messages
    block = f"<previous_step_answer>\n{answer}\n</previous_step_answer>"
    last = messages[-1] if messages else {}
    if last.get("role") != "user":
        return [*messages, {"role": "user", "content": block}]
    content = last.get("content")
    if isinstance(content, list):
        content = [*content, {"type": "text", "text": f"\n\n{block}"}]
    else:
        content = f"{content}\n\n{block}"
    return [*messages[:-1], {**last, "content": content}]


def _steps(body: dict) -> tuple[list[tuple[dict, str | None]], list]:
    """Each step's chat body (without messages) and system prompt, all checked before any runs."""
    steps = body.get("steps")
    if not isinstance(steps, list) or not steps or len(steps) > MAX_STEPS:
        raise InvalidRequest(f"`steps` must be a list of 1 to {MAX_STEPS} steps.", param="steps",
                             code="invalid_value")
    default_prompt = orchestrate.typed(body, "system_prompt")
    shared = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    orchestrate.check_chat({**shared, "model": "chain"})
    checked = [_step(i, step, shared, default_prompt) for i, step in enumerate(steps)]
    return checked, shared["messages"]


def _step(index: int, step, shared: dict, default_prompt: str | None) -> tuple[dict, str | None]:
    prefix = f"steps[{index}]."
    if not isinstance(step, dict):
        raise InvalidRequest(f"`steps[{index}]` must be an object with a `model`.",
                             param=f"steps[{index}]", code="invalid_value")
    if "model" not in step:
        raise InvalidRequest(f"Missing required parameter: '{prefix}model'.",
                             param=f"{prefix}model", code="missing_required_parameter")
    for name in NOT_PER_STEP:
        if name in step:
            raise InvalidRequest(f"`{prefix}{name}` is not a step field: set it on the chain.",
                                 param=prefix + name, code="invalid_value")
    prompt = orchestrate.typed(step, "system_prompt", str, prefix + "system_prompt")
    orchestrate.typed(step, "provider", str, prefix + "provider")
    fields = {k: v for k, v in step.items() if k != "system_prompt"}
    orchestrate.check_chat({**shared, **fields}, prefix, owned=fields)
    merged = {k: v for k, v in {**shared, **fields}.items() if k != "messages"}
    return merged, prompt if prompt is not None else default_prompt


def _step_result(outcome: Outcome) -> dict:
    return {"model": outcome.model, "provider": outcome.provider, "output": _output(outcome),
            "usage": outcome.usage, "cost_usd": outcome.cost_usd,
            "latency_ms": outcome.latency_ms}


def _output(outcome: Outcome) -> str:
    """The answer's text (first choice)."""
    choices = (outcome.completion or {}).get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


def _failed(index: int, error: GatewayError, done: list[dict]) -> Response:
    g.record.error = error.code or error.type
    body = {**error.body(), "step": index, "steps": done}
    response = Response(orjson.dumps(body, option=orjson.OPT_INDENT_2), status=error.status,
                        mimetype="application/json")
    response.headers.update(error.headers)
    return response


def _streamed(call: ModelCall, index: int, done: list[dict]) -> Response:
    """The last step as chat would stream it; a failure before its first chunk is an HTTP error."""
    blocks = call.blocks()
    first = next(blocks)
    if call.outcome.error is not None and call.sent == 0:
        for _ in blocks:  # [DONE]: let the call finish (and be logged) normally
            pass
        return _failed(index, call.outcome.error, done)
    return Response(_relay(first, blocks), status=200, headers=STREAM_HEADERS)


def _relay(first: bytes, blocks):
    try:
        yield first
        yield from blocks
    finally:
        blocks.close()
