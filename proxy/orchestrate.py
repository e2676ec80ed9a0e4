"""Several chat completions in one request (/v1/compare, /v1/chain).

A `ModelCall` is one completion run through the very pipeline that serves
/v1/chat/completions (`proxy.completion.complete`: key policy, budget, rate and
token limits, system prompts, routing, attempts, the stream guard and the log),
in a greenlet of its own, logged as its own row (request id `<request id>-<index>`).
It only reads the answer that pipeline builds: `complete()` -> `Outcome`;
`blocks()`: the SSE blocks chat would send; `chunks()`: those as dicts.
`run_all`/`interleave` run several at once. `ttft_ms`: time to the answer's first
byte (about the latency when a body comes whole)."""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import gevent
import gevent.queue
import orjson

from proxy import access_log, errors, tracing
from proxy.access_log import RequestLog, client_request_id
from proxy.completion import complete
from proxy.errors import GatewayError, InvalidRequest
from proxy.log import extract
from proxy.policy.access import SYSTEM_ROLES
from proxy.respond import Answer, failure_answer
from proxy.schema import validate
from proxy.sse import iter_events, split_events

log = logging.getLogger("switchboard.orchestrate")


@dataclass
class Outcome:
    model: str  # as the client named it
    provider: str | None = None
    completion: dict | None = None
    error: GatewayError | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    usage: dict | None = None
    cost_usd: float | None = None

    def result(self, completion: bool = True) -> dict:
        """The compare entry: `error` on failure, else `completion` (when asked)."""
        answer = {"error": self.error.body()["error"]} if self.error is not None else \
            {"completion": self.completion} if completion else {}
        return {"model": self.model, "provider": self.provider, **answer,
                "latency_ms": self.latency_ms, "ttft_ms": self.ttft_ms, "usage": self.usage,
                "cost_usd": self.cost_usd}


class ModelCall:
    def __init__(self, gateway, body: dict, headers: Mapping[str, str], request_id: str,
                 principal=None, path: str = "/v1/compare"):
        self.gateway = gateway
        # the pipeline changes the body's own fields and its messages list (a system
        # prompt goes first), never what they hold: a deep copy would cost a copy of
        # every prompt and fail on deeply nested fields
        self.body = {**body, "messages": list(body.get("messages") or ())}
        self.headers = headers
        self.principal = principal
        self.outcome = Outcome(model=str(body.get("model")))
        self.record = RequestLog(request_id, path, client_request_id(headers))
        self.record.api_key_id = getattr(principal, "key_id", None)
        self.parent = access_log.serving_now()  # the compare or chain request, made here
        self.sent = 0  # answer blocks streamed (error events not counted)

    def complete(self) -> Outcome:
        answer = self._open(stream=False)
        if answer is not None:
            try:
                self.outcome.completion = _completion(answer.body)
                self._account(self.outcome.completion)
            except GatewayError as exc:
                self._fail(exc)
        self._finish()
        return self.outcome

    def blocks(self) -> Iterator[bytes]:
        answer = self._open(stream=True)
        if answer is None:
            self._finish()
            yield from (errors.stream_event(self.outcome.error), _DONE)
            return
        body = answer.body
        try:
            for block in body:
                error = _error_in(block)
                if error is not None:
                    self._fail(error)
                elif block != _DONE:
                    self.sent += 1
                yield block
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            if self.outcome.error is None and not self.record.disconnected:
                self._account_stream()
            self._finish()

    def chunks(self) -> Iterator[dict]:
        for _, data in iter_events(split_events(block) for block in self.blocks()):
            chunk = _loads(data)
            if isinstance(chunk, dict) and "error" not in chunk:
                yield chunk

    def _open(self, stream: bool) -> Answer | None:
        """The pipeline's answer, or None when it refused or failed (`outcome.error`)."""
        body = self.body
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        access_log.serving(self.record)  # in the greenlet that runs the call
        tracing.follow(self.record, self.parent)
        headers = self.headers
        if body.get("provider") is not None and "X-Provider" in headers:
            # a provider named for this model beats the request's header
            headers = {k: v for k, v in headers.items() if k.lower() != "x-provider"}
        try:
            answer = complete(self.gateway, body, None, headers, self.record, self.principal)
        except Exception as exc:
            failure_answer(exc, self.record)  # notes the error; a bug is logged
            self._fail(exc)
            return None
        finally:
            self.outcome.provider = self.record.provider
        self.record.status = answer.status
        return answer

    def _account(self, completion: dict) -> None:
        self._set_usage(completion.get("model"), completion.get("usage"))

    def _account_stream(self) -> None:
        summary = extract.from_stream(self.record.pieces)
        self._set_usage(summary.model, summary.usage)

    def _set_usage(self, model: str | None, usage: dict | None) -> None:
        self.outcome.usage = usage
        self.outcome.cost_usd = self.gateway.cost_of(model or self.record.model, usage)

    def _fail(self, exc: Exception) -> GatewayError:
        if not isinstance(exc, GatewayError):
            exc = GatewayError("The gateway failed on this call (logged with its request id).",
                               code="internal_error")
        self.outcome.error = exc
        self.record.error = exc.code or exc.type
        if self.sent == 0:
            self.record.status = exc.status
        return exc

    def _finish(self) -> None:
        record = self.record
        latency = (time.perf_counter() - record.start) * 1000
        ttft = record.ttfb * 1000 if record.ttfb is not None else None
        self.outcome.latency_ms, self.outcome.ttft_ms = round(latency, 2), ttft and round(ttft, 2)
        record.finish()


_DONE = b"data: [DONE]\n\n"


def _error_in(block: bytes) -> GatewayError | None:
    """The error event among a piece's events, if any (a byte search first: most have none)."""
    if b'{"error"' not in block:
        return None
    for _, data in iter_events(split_events(block)):
        if isinstance(_loads(data), dict) and data.startswith(b'{"error"'):
            fields = errors.openai_error_fields(data)
            return GatewayError(**{k: v for k, v in fields.items() if v is not None})
    return None


def _loads(data: bytes):
    """Decoded JSON, or None (for `[DONE]` too)."""
    try:
        return orjson.loads(data) if data != b"[DONE]" else None
    except orjson.JSONDecodeError:
        return None


def _completion(body: bytes) -> dict:
    """The pipeline's JSON answer as a completion dict (a relay checked it is a JSON object)."""
    obj = _loads(body)
    if isinstance(obj, dict) and isinstance(obj.get("choices"), list):
        return obj
    raise errors.UpstreamError("The upstream's answer has no `choices`.")


def invoke(gateway, body: dict, headers: Mapping[str, str], request_id: str,
           principal=None) -> Outcome:
    """One chat completion, not streamed; failures are `Outcome.error`, never raised."""
    return ModelCall(gateway, body, headers, request_id, principal).complete()


def run_all(calls: list[ModelCall]) -> list[Outcome]:
    """Every call at once; outcomes in the calls' order."""
    gevent.joinall([gevent.spawn(call.complete) for call in calls])
    return [call.outcome for call in calls]


def interleave(calls: list[ModelCall]) -> Iterator[tuple[int, dict | None]]:
    """`(index, chunk)` as chunks arrive, `(index, None)` when a call ends; closing stops all."""
    queue = gevent.queue.Queue()

    def pump(index: int, call: ModelCall) -> None:
        try:
            for chunk in call.chunks():
                queue.put((index, chunk))
        finally:
            queue.put((index, None))

    greenlets = [gevent.spawn(pump, i, call) for i, call in enumerate(calls)]
    try:
        running = len(calls)
        while running:
            index, chunk = queue.get()
            running -= chunk is None
            yield index, chunk
    finally:
        gevent.killall(greenlets, block=False)


def with_system(messages: list, prompt: str | None) -> list:
    """`prompt` as a system message at the front, when the messages have none."""
    if not prompt or any(m.get("role") in SYSTEM_ROLES for m in messages if isinstance(m, dict)):
        return messages
    return [{"role": "system", "content": prompt}, *messages]


def check_chat(body: dict, prefix: str = "", owned: Iterable[str] = ()) -> None:
    """400 for a body /v1/chat/completions would refuse; a field in `owned` is
    named `prefix + field` in the error (`steps[1].temperature`)."""
    try:
        validate(body)
    except InvalidRequest as exc:
        root = re.split(r"[.\[]", exc.param or "", maxsplit=1)[0]
        if prefix and root in owned:
            named = prefix + exc.param
            exc.message = exc.message.replace(f"'{exc.param}'", f"'{named}'")
            exc.args, exc.param = (exc.message,), named
        raise


def typed(body: dict, name: str, kind: type = str, param: str | None = None):
    """`body[name]` when absent, null or a `kind` (str or bool); else a 400 naming `param`."""
    value, param = body.get(name), param or name
    if value is not None and not isinstance(value, kind):
        what = "a boolean" if kind is bool else "a string"
        raise InvalidRequest(f"`{param}` must be {what}.", param=param, code="invalid_type")
    return value
