"""Turn a provider's reply into a Flask response.

Errors before the first byte are real HTTP errors: the first chunk is pulled
before the response starts. After it, an error is one OpenAI error event and
`[DONE]`. Closing the response (end, or client gone) closes the upstream.
"""
from __future__ import annotations

import itertools
import logging
from typing import Iterator

from flask import Response

from providers.base import Call, Relay, Reply
from proxy import assemble, errors
from proxy.access_log import RequestLog
from proxy.sse import DONE, STREAM_HEADERS

log = logging.getLogger("switchboard.relay")


def error_response(error: errors.GatewayError) -> Response:
    response = Response(errors.render(error), status=error.status, mimetype="application/json")
    response.headers.update(error.headers)
    return response


def _guarded(chunks: Iterator[bytes], record: RequestLog, close) -> Iterator[bytes]:
    try:
        for chunk in chunks:
            yield chunk
    except errors.GatewayError as exc:
        record.error = exc.code or exc.type
        yield errors.stream_event(exc)
        yield DONE
    except Exception:
        log.exception("stream failed", extra={"fields": {"request_id": record.request_id}})
        record.error = "internal_error"
        yield errors.stream_event(errors.GatewayError("The gateway failed while streaming."))
        yield DONE
    finally:
        close()


def _started(chunks: Iterator[bytes], record: RequestLog) -> Iterator[bytes]:
    """Pull the first chunk now, so a failure before it is still an HTTP error."""
    first = next(chunks, None)
    record.first_byte()
    return chunks if first is None else itertools.chain((first,), chunks)


def _stream(chunks: Iterator[bytes], record: RequestLog, close, headers) -> Response:
    try:
        chunks = _started(iter(chunks), record)
    except BaseException:
        close()
        raise
    record.stream = True
    response = Response(_guarded(chunks, record, close), status=200, headers=STREAM_HEADERS)
    response.headers.update(headers)
    return response


def reply_response(reply: Reply, call: Call, record: RequestLog) -> Response:
    if isinstance(reply, Relay):
        return _relay(reply, call, record)
    if call.stream:
        chunks = assemble.stream(reply, call.model, call.include_usage)
        return _stream(chunks, record, getattr(reply, "close", _noop), {})
    body = assemble.json_body(assemble.completion(reply, call.model))
    record.first_byte()
    return Response(body, status=200, mimetype="application/json")


def _relay(reply: Relay, call: Call, record: RequestLog) -> Response:
    if call.stream and reply.content_type.startswith("text/event-stream"):
        return _stream(reply.chunks, record, reply.close, reply.headers)
    try:
        body = b"".join(reply.chunks)
    finally:
        reply.close()
    record.first_byte()
    response = Response(body, status=reply.status, content_type=reply.content_type)
    response.headers.update(reply.headers)
    return response


def _noop() -> None:
    pass
