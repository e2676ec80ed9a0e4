"""Turn a provider's reply into an `Answer`: status, headers and body, which
the WSGI chat endpoint (proxy.routes.chat) sends as is and Flask views wrap.

Errors before the first byte are real HTTP errors: routing.attempts pulls the
first chunk before the response starts. After it, an error is one OpenAI error event and
`[DONE]`. Closing the response (end, or client gone) closes the upstream.
Everything sent is also kept, by reference, for the log (`record.pieces`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import orjson
from flask import Response

from providers.base import Call, Relay, Reply
from proxy import assemble, errors
from proxy.access_log import RequestLog
from proxy.sse import DONE, STREAM_HEADERS

log = logging.getLogger("switchboard.relay")
_app_log = logging.getLogger("switchboard.app")  # where a request's unhandled error goes

CostOf = Callable[[str, dict | None], float | None]


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes]  # an iterator streams; closing it closes the upstream


def flask_response(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, headers=answer.headers)


def error_answer(error: errors.GatewayError) -> Answer:
    return Answer(error.status, {"Content-Type": "application/json", **error.headers},
                  errors.render(error))


def error_response(error: errors.GatewayError) -> Response:
    return flask_response(error_answer(error))


def failure_answer(exc: Exception, record: RequestLog | None) -> Answer:
    """The answer to a request that raised `exc`: a gateway error as it is (noted on
    the request's record), anything else logged and shown only as a bug."""
    if isinstance(exc, errors.GatewayError):
        if record is not None:
            record.error = exc.code or exc.type
        return error_answer(exc)
    request_id = record.request_id if record is not None else None
    _app_log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
    return error_answer(errors.unexpected())


class GuardedStream:
    """A streamed answer as the client gets it (see `_guarded`). Closing it closes
    the upstream, once, whether or not the stream was ever started."""
    __slots__ = ("_chunks", "_close")

    def __init__(self, chunks: Iterator[bytes], record: RequestLog, close):
        self._chunks, self._close = _guarded(chunks, record), close

    def __iter__(self):
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            close, self._close = self._close, None
            if close is not None:
                close()


def _guarded(chunks: Iterator[bytes], record: RequestLog) -> Iterator[bytes]:
    keep = record.pieces.append
    finished = False
    try:
        for chunk in chunks:
            keep(chunk)
            yield chunk
        finished = True
    except Exception as exc:
        error = exc if isinstance(exc, errors.GatewayError) else _internal(record)
        record.error = error.code or error.type
        for chunk in (errors.stream_event(error), DONE):
            keep(chunk)
            yield chunk
        finished = True
    finally:
        # a generator closed before its end means the client went away
        record.disconnected = not finished


def _internal(record: RequestLog) -> errors.GatewayError:
    log.exception("stream failed", extra={"fields": {"request_id": record.request_id}})
    return errors.GatewayError("The gateway failed while streaming.", code="internal_error")


def _stream(chunks: Iterator[bytes], record: RequestLog, close, headers: dict) -> Answer:
    # the first chunk or event was already pulled by routing.attempts.prime, so a
    # failure before it was an HTTP error (or a retry), and the answer has begun
    record.first_byte()
    record.stream = True
    return Answer(200, {**STREAM_HEADERS, **headers}, GuardedStream(chunks, record, close))


def _json(body: bytes, status: int, content_type: str, record: RequestLog, cost: float | None,
          headers: dict) -> Answer:
    record.first_byte()
    record.pieces.append(body)
    if cost is not None:
        headers["x-gateway-cost-usd"] = f"{cost:.10f}".rstrip("0").rstrip(".") or "0"
    headers["Content-Type"] = content_type
    return Answer(status, headers, body)


def reply_response(reply: Reply, call: Call, record: RequestLog, cost_of: CostOf,
                   headers: dict | None = None) -> Answer:
    """`headers`: the gateway's own response headers (limits, who served it)."""
    headers = headers or {}
    if isinstance(reply, Relay):
        return _relay(reply, call, record, cost_of, headers)
    if call.stream:
        chunks = assemble.stream(reply, call.model, call.include_usage, call.capture)
        return _stream(chunks, record, getattr(reply, "close", _noop), headers)
    completion = assemble.completion(reply, call.model)
    cost = cost_of(completion["model"], completion["usage"])
    return _json(assemble.json_body(completion), 200, "application/json", record, cost, headers)


def _relay(reply: Relay, call: Call, record: RequestLog, cost_of: CostOf, headers: dict) -> Answer:
    headers = {**reply.headers, **headers}
    if call.stream and reply.content_type.startswith("text/event-stream"):
        return _stream(reply.chunks, record, reply.close, headers)
    try:
        body = b"".join(reply.chunks)
    finally:
        reply.close()
    return _json(body, reply.status, reply.content_type, record,
                 _relayed_cost(reply.answer, body, cost_of), headers)


def _relayed_cost(answer: dict | None, body: bytes, cost_of: CostOf) -> float | None:
    """The answer's usage, from the (small) response body: the request is never parsed."""
    if answer is None:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    return cost_of(answer.get("model"), answer.get("usage")) if isinstance(answer, dict) else None


def _noop() -> None:
    pass
