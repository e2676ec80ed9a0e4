"""POST /v1/chat/completions, served as a plain WSGI callable in front of Flask.

The one endpoint that carries the traffic skips Flask's request context, URL
map, hooks and Response objects: together they cost about a third of the app's
CPU per call (bench/log_cost.py). Everything else goes on to Flask. The request
id, key check, access line, sidecar log and error bodies are the same ones the
Flask views use.
"""
from __future__ import annotations

from functools import cache

from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES

from proxy import access_log, errors
from proxy.access_log import RequestLog
from proxy.completion import complete, parse_object, track
from proxy.respond import Answer, failure_answer

PATHS = frozenset(("/v1/chat/completions", "/chat/completions"))  # full-path clients omit /v1


class ChatEndpoint:
    """WSGI middleware: chat completions here, any other request to `fallback` (Flask)."""

    def __init__(self, fallback, gateway, max_body_bytes: int):
        self.fallback, self.gateway, self.max_body_bytes = fallback, gateway, max_body_bytes
        self.tracer = gateway.tracer  # None when tracing is off

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO")
        if path not in PATHS:
            return self.fallback(environ, start_response)
        headers = EnvironHeaders(environ)
        record = RequestLog(access_log.new_request_id(), path,
                            access_log.client_request_id(headers))
        access_log.serving(record)
        if self.tracer is not None:
            self.tracer.request(record, headers, environ.get("REQUEST_METHOD"))
        try:
            answer = self._answer(environ, headers, record)
        except Exception as exc:
            answer = failure_answer(exc, record)
        try:
            return send(answer, record, start_response)
        except Exception as exc:  # the answer could not be sent as built: say so, log it
            discard(answer)
            return send(failure_answer(exc, record), record, start_response)

    def _answer(self, environ, headers: EnvironHeaders, record: RequestLog) -> Answer:
        method = environ.get("REQUEST_METHOD")
        if method != "POST":
            raise errors.method_not_allowed(method, record.path, ("POST",))
        gateway = self.gateway
        principal = gateway.keys.authenticate(headers)
        record.api_key_id = principal.key_id
        track(gateway, record)  # before parsing: refused calls are logged too
        raw = read_body(environ, self.max_body_bytes)
        return complete(gateway, parse_object(raw), raw, headers, record, principal)


def read_body(environ, limit: int) -> bytes:
    """The request body, refused (413) past `limit` before it is read."""
    try:
        return _read_body(environ, limit)
    except OSError:  # the client went silent, too slow (the worker's limits) or away mid-body
        # where the next request would start is unknown: the connection closes
        raise errors.GatewayError("The request body did not arrive in time.", status=408,
                                  type="invalid_request_error", code="request_timeout",
                                  headers={"Connection": "close"}) from None


def _read_body(environ, limit: int) -> bytes:
    stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
    if length:
        try:
            size = int(length)
        except ValueError:
            raise errors.InvalidRequest("The Content-Length header is not a number.") from None
        if size > limit:
            raise errors.body_too_large(limit)
        return stream.read(size)
    if not (environ.get("wsgi.input_terminated") or
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
        return b""  # no length and no chunked framing: no body (reading could block)
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise errors.body_too_large(limit)
    return raw


def discard(answer: Answer) -> None:
    """Close an answer that will not be sent (its upstream goes at once)."""
    close = getattr(answer.body, "close", None)
    if close is not None:
        close()


def send(answer: Answer, record: RequestLog, start_response):
    record.status = answer.status
    headers = list(answer.headers.items())
    body = answer.body
    if isinstance(body, bytes):
        headers.append(("Content-Length", str(len(body))))
        body = (body,)
    headers.append(("x-request-id", record.request_id))
    if record.client_request_id:
        headers.append(("x-client-request-id", record.client_request_id))
    if record.trace_id:
        headers.append(("x-trace-id", record.trace_id))
    start_response(status_line(answer.status), headers)
    return ClosingBody(body, record)


class ClosingBody:
    """The WSGI body: closing it (end of the answer, or client gone) closes the
    answer's iterator, hence the upstream, then writes the request's log. A body not
    handed over to the server to its end was cut (the client went away, or did not
    read within the worker's write limit): the log says so."""
    __slots__ = ("body", "record", "delivered")

    def __init__(self, body, record: RequestLog):
        # a stream's own guard (respond.GuardedStream) notes a cut stream, with no
        # layer here between each chunk and the server
        self.body, self.record, self.delivered = body, record, not isinstance(body, tuple)

    def __iter__(self):
        return iter(self.body) if self.delivered else self._whole()

    def _whole(self):
        yield from self.body
        self.delivered = True  # the server asked for more after the last piece was written

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            if not self.delivered:
                self.record.disconnected = True
            self.record.finish()


@cache
def status_line(code: int) -> str:
    """`200 OK`, as werkzeug writes it for the Flask views."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'unknown').upper()}"
