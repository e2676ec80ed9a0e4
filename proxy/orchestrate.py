"""Several chat completions in one request (/v1/compare, /v1/chain).

A `SubCall` is one completion run as /v1/chat/completions runs it (validation, routing,
key policy, provider contract) outside Flask's request context, so in a greenlet of its
own, logged as its own row (request id `<request id>-<index>`). `complete()`/`invoke()`
-> `Outcome`; `blocks()`: the SSE blocks chat would send; `chunks()`: those as dicts.
`run_all`/`interleave` run several at once. `ttft_ms`: time to the answer's first byte
or event (about the latency when a body comes whole)."""
from __future__ import annotations

import copy
import logging
import re
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import gevent
import gevent.queue
import orjson

from providers.base import Call, Relay
from proxy import assemble, errors, metrics
from proxy.errors import GatewayError, InvalidRequest, UpstreamError
from proxy.log import extract
from proxy.log.entry import Entry
from proxy.completion import prepare
from proxy.policy.access import SYSTEM_ROLES
from proxy.routing import attempts
from proxy.schema import validate
from proxy.sse import DONE, iter_events, split_events

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


class SubCall:
    def __init__(self, gateway, body: dict, headers: Mapping[str, str], request_id: str,
                 principal=None):
        self.gateway = gateway
        self.body = copy.deepcopy(body)
        self.headers = headers
        self.principal = principal
        self.outcome = Outcome(model=str(body.get("model")))
        self.entry = Entry(request_id=request_id, created_at=time.time(),
                           model_requested=self.outcome.model,
                           api_key_id=getattr(principal, "key_id", None))
        self.pieces = self.entry.pieces  # what the log reads the answer from
        self.call: Call | None = None
        self.sent = 0  # answer blocks streamed (error events not counted)
        self._start = self._first_at = None
        self._done = False

    def complete(self) -> Outcome:
        self._begin()
        try:
            completion = self._whole(self._open(stream=False))
            self.outcome.completion = completion
            self._account(completion.get("model"), completion.get("usage"))
        except Exception as exc:
            self._fail(exc)
        finally:
            self._finish()
        return self.outcome

    def _whole(self, reply) -> dict:
        if not isinstance(reply, Relay):
            completion = assemble.completion(self._timed(reply), self.call.model)
            self.pieces.append(assemble.json_body(completion))
            return completion
        try:
            body = b"".join(self._timed(reply.chunks))
        finally:
            reply.close()
        self.pieces.append(body)
        return _relayed(body, reply.status, self.outcome.provider)

    def blocks(self) -> Iterator[bytes]:
        self._begin()
        self.entry.streamed = True
        reply, finished = None, False
        try:
            try:
                reply = self._open(stream=True)
                for block in self._stream_of(reply):
                    self._first()
                    self.pieces.append(block)
                    self.sent += 1
                    yield block
            except Exception as exc:
                for block in (errors.stream_event(self._fail(exc)), DONE):
                    self.pieces.append(block)
                    yield block
            finished = True
        finally:
            if reply is not None and callable(getattr(reply, "close", None)):
                reply.close()
            self._finish(disconnected=not finished)

    def chunks(self) -> Iterator[dict]:
        for _, data in iter_events(split_events(block) for block in self.blocks()):
            if self.outcome.error is not None:
                continue  # the error event and [DONE]: the caller reads `.outcome.error`
            chunk = _loads(data)
            if isinstance(chunk, dict) and "error" in chunk:
                self.outcome.error = GatewayError(**_error_fields(data))
                self.entry.error_type = self.outcome.error.type
            elif isinstance(chunk, dict):
                yield chunk

    def _stream_of(self, reply) -> Iterable[bytes]:
        if not isinstance(reply, Relay):
            return assemble.stream(reply, self.call.model, self.call.include_usage, self.pieces)
        if reply.content_type.startswith("text/event-stream"):
            return reply.chunks
        _relayed(b"".join(reply.chunks), reply.status, self.outcome.provider)
        raise UpstreamError(f"{self.outcome.provider} answered a stream with a whole body")

    def _open(self, stream: bool):
        body = self.body
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        headers = self.headers
        if body.get("provider") is not None and "X-Provider" in headers:
            # a provider named for this model beats the request's header
            headers = {k: v for k, v in headers.items() if k.lower() != "x-provider"}
        self.call, routes = prepare(self.gateway, body, None, headers, self.principal,
                                    request_id=self.entry.request_id, capture=self.pieces)
        self.entry.messages = body["messages"]
        reply, route = attempts.run(self.gateway, routes, self.call, self)
        return reply

    # attempts.run's tracker
    def routed(self, route) -> None:
        self.outcome.provider = self.entry.provider = route.provider.name
        self.entry.model_upstream = route.model

    def failed(self, route, error, n: int) -> None:
        e = self.entry
        self.gateway.recorder.record(attempts.attempt_entry(
            e.request_id, n, route, error, model_requested=e.model_requested,
            api_key_id=e.api_key_id, streamed=e.streamed))

    def _begin(self) -> None:
        self._start = time.perf_counter()
        metrics.InFlight.inc()  # gateway.record() takes it off

    def _first(self) -> None:
        self._first_at = self._first_at or time.perf_counter()

    def _timed(self, items: Iterable) -> Iterator:
        for item in items:
            self._first()
            yield item

    def _account(self, model: str | None, usage: dict | None) -> None:
        self.outcome.usage = usage
        self.outcome.cost_usd = self.gateway.cost_of(model or self.entry.model_upstream, usage)

    def _fail(self, exc: Exception) -> GatewayError:
        if not isinstance(exc, GatewayError):
            log.exception("sub-call failed",
                          extra={"fields": {"request_id": self.entry.request_id}})
            exc = GatewayError("The gateway failed on this call (logged with its request id).",
                               code="internal_error")
        self.outcome.error = exc
        self.entry.error_type = exc.code or exc.type
        if self.sent == 0:
            self.entry.status = exc.status
        return exc

    def _finish(self, disconnected: bool = False) -> None:
        if self._done:
            return
        self._done = True
        if self.entry.streamed and self.outcome.error is None and not disconnected:
            summary = extract.from_stream(self.pieces)
            self._account(summary.model, summary.usage)
        latency = (time.perf_counter() - self._start) * 1000
        ttft = (self._first_at - self._start) * 1000 if self._first_at else None
        self.outcome.latency_ms, self.outcome.ttft_ms = round(latency, 2), ttft and round(ttft, 2)
        entry = self.entry
        entry.latency_ms, entry.ttft_ms, entry.client_disconnected = latency, ttft or latency, \
            disconnected
        self.gateway.record(entry)


def _error_fields(body: bytes) -> dict:
    return {k: v for k, v in errors.openai_error_fields(body).items() if v is not None}


def _loads(data: bytes):
    """Decoded JSON, or None (for `[DONE]` too)."""
    try:
        return orjson.loads(data) if data != b"[DONE]" else None
    except orjson.JSONDecodeError:
        return None


def _relayed(body: bytes, status: int, provider: str | None) -> dict:
    """A relayed JSON body as a completion dict, or the error it carries."""
    obj = _loads(body)
    if isinstance(obj, dict) and isinstance(obj.get("choices"), list):
        return obj
    raise errors.from_upstream(status if status >= 400 else 502, provider=provider or "upstream",
                               **_error_fields(body))


def invoke(gateway, body: dict, headers: Mapping[str, str], request_id: str,
           principal=None) -> Outcome:
    """One chat completion, not streamed; failures are `Outcome.error`, never raised."""
    return SubCall(gateway, body, headers, request_id, principal).complete()


def run_all(calls: list[SubCall]) -> list[Outcome]:
    """Every call at once; outcomes in the calls' order."""
    gevent.joinall([gevent.spawn(call.complete) for call in calls])
    return [call.outcome for call in calls]


def interleave(calls: list[SubCall]) -> Iterator[tuple[int, dict | None]]:
    """`(index, chunk)` as chunks arrive, `(index, None)` when a call ends; closing stops all."""
    queue = gevent.queue.Queue()

    def pump(index: int, call: SubCall) -> None:
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
