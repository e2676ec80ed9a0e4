"""gevent's pywsgi (26.9.0) internals the worker relies on, and nothing else.

The worker (proxy/server.py) reads request heads itself, answers a request it cannot
read with its own 400, writes a response's head with its first bytes, ends a stream
with its last chunk, answers HEAD without a body and puts a deadline on request
bodies. Each needs a private method or an undocumented attribute of pywsgi's handler,
so they live here, checked when this module is imported; proxy/server.py subclasses
`Handler` and fills in its public hooks (`read_head`, `refuse`, `stream_end`,
`body_timeout_s`).
"""
from __future__ import annotations

import time

from gevent import Timeout, pywsgi
from gunicorn.workers.ggevent import PyWSGIHandler

from proxy.shims import require
from proxy.sockets import send_all

LIBRARY = "gevent.pywsgi"
#: a first write up to this size goes out with the head in one system call; a larger
#: one is sent after it rather than copied
ONE_WRITE_MAX = 64 * 1024


_NOTED = frozenset(("connection", "date", "content-length"))  # start_response keeps these
_date = [0, b""]  # the second last formatted, and its Date field


def http_date() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[:] = now, pywsgi.format_date_time(now)
    return _date[1]


class BodyTimeout(TimeoutError):
    """The request body missed its deadline: an OSError, like a client gone silent."""


class TimedBody:
    """pywsgi's request body stream, every read of it within one deadline that starts
    at the first read: past it, what has already arrived is still read, and waiting
    for more raises BodyTimeout."""
    __slots__ = ("body", "seconds", "deadline")

    def __init__(self, body: pywsgi.Input, seconds: float):
        self.body, self.seconds, self.deadline = body, seconds, None

    def _timed(self, read, *args):
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.seconds
        with Timeout(max(self.deadline - now, 0.0), BodyTimeout):
            return read(*args)

    def read(self, length=None):
        return self._timed(self.body.read, length)

    def readline(self, size=None):
        return self._timed(self.body.readline, size)

    def readlines(self, hint=None):
        return list(self)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _discard(self):
        """pywsgi reads what the application left of the body after the response; only
        a body left unread costs a timer."""
        body = self.body
        if body.chunked_input or body.position < (body.content_length or 0):
            self._timed(body._discard)


class Handler(PyWSGIHandler):
    """gunicorn's pywsgi handler with the private parts the worker changes. Hooks:
    `read_head(fp)` returns the request's header fields (pywsgi's `MessageClass`) or
    raises; `refuse(error)` returns the whole raw response to a request that cannot
    be read (the connection then closes); a chunked body's piece ending with
    `stream_end` is its last; `body_timeout_s` bounds reading a whole request body."""

    stream_end: bytes | None = None
    body_timeout_s: float | None = None

    def read_head(self, fp):
        raise NotImplementedError

    def refuse(self, error: Exception) -> bytes:
        raise NotImplementedError

    def MessageClass(self, fp, *_):  # noqa: N802 - pywsgi's name
        return self.read_head(fp)

    def _handle_client_error(self, ex):
        return "400", self.refuse(ex)

    def get_environ(self):
        environ = super().get_environ()
        if self.body_timeout_s and environ["wsgi.input"] is self.wsgi_input:  # not an upgrade
            environ["wsgi.input"] = self.wsgi_input = TimedBody(self.wsgi_input,
                                                                self.body_timeout_s)
        return environ

    def handle_error(self, t, v, tb):
        """A write that timed out is a client that stopped reading: like a reset
        connection (pywsgi's `ignored_socket_errors`), it is closed without a
        traceback; the request's access line says it was cut."""
        if issubclass(t, TimeoutError) and self.headers_sent:
            self.close_connection = True
            return
        super().handle_error(t, v, tb)

    def process_result(self):
        """pywsgi's, except that a HEAD request gets the head alone (the body still runs
        to its end, unsent), and that a stream's last piece goes out in one write with
        the chunked terminator instead of that taking a system call of its own."""
        if self.command == "HEAD":
            for _ in self.result:
                pass
            ended = True  # nothing follows the head, not even a chunked terminator
        else:
            ended = self._send_body()
        if self.status and not self.headers_sent:
            self.write(b"")  # an empty body: the head still goes out
        if self.response_use_chunked and not ended:
            self._sendall(b"0\r\n\r\n")

    def _send_body(self) -> bool:
        """True when the chunked terminator went out with the stream's last piece."""
        ended, end = False, self.stream_end
        for data in self.result:
            if not data or ended:
                continue  # the iterator still runs to its end: the stream finishes normally
            if end and self.headers_sent and self.response_use_chunked and data.endswith(end):
                self._sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                ended = True
            else:
                self.write(data)
        return ended

    def start_response(self, status, headers, exc_info=None):
        """pywsgi's, in one pass over the headers instead of two (it checks, encodes,
        then looks for Connection, Date and Content-Length): a response's headers are
        the gateway's own. Exceptions and HTTP/1.0 take pywsgi's path."""
        if exc_info is not None or self.request_version == "HTTP/1.0":
            return super().start_response(status, headers, exc_info)
        encoded, provided = [], {}
        for name, value in headers:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError("carriage return or newline in a header", name)
            lower = name.lower()
            if lower in _NOTED:
                provided[lower] = value
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        if "\r" in status or "\n" in status:
            raise ValueError("carriage return or newline in status", status)
        code = int(status.split(" ", 1)[0])
        length = provided.get("content-length")
        if code in (204, 304) and length not in (None, "0"):
            raise self.ApplicationError(f"Invalid Content-Length for {code}: {length!r}")
        self.status, self._orig_status, self.code = status.encode("latin-1"), status, code
        self.response_headers = encoded
        self.provided_date, self.provided_content_length = provided.get("date"), length
        if provided.get("connection") == "close":
            self.close_connection = True
        return self.write

    def _sendall(self, data):
        """pywsgi's, in one system call (proxy/sockets.py); a failed write's error goes
        up as it came, without pywsgi's notes for its own access log (not used)."""
        send_all(self.socket, data)
        self.response_length += len(data)

    def _write_with_headers(self, data):
        """pywsgi's, except that the head and a small first write go out in one
        `sendall`: one system call, and one wake-up of the client, instead of two;
        and that the Date field is formatted once a second, not once a response."""
        self.headers_sent = True
        if self.provided_date is None:
            self.provided_date = True
            self.response_headers.append((b"Date", http_date()))
        self.finalize_headers()
        fields = b"\r\n".join(map(b": ".join, self.response_headers))  # no Python loop
        head = b"HTTP/1.1 %s\r\n%s\r\n\r\n" % (self.status, fields) if fields else \
            b"HTTP/1.1 %s\r\n\r\n" % self.status
        if not data or len(data) > ONE_WRITE_MAX:
            self._sendall(head)
            self._write(data)
        elif self.response_use_chunked:
            self._sendall(head + b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._sendall(head + data)


def check() -> None:
    """Raise ShimMismatch naming every name above the installed pywsgi lacks."""
    require(pywsgi.WSGIHandler,
            ("MessageClass", "_handle_client_error", "get_environ", "process_result",
             "_write_with_headers", "_write", "_sendall", "finalize_headers", "write",
             "headers_sent", "response_use_chunked", "response_headers", "status", "result",
             "provided_date", "response_length", "provided_content_length", "_orig_status",
             "code", "request_version", "ApplicationError",
             "wsgi_input", "command", "close_connection", "handle_error", "read_requestline",
             "read_request", "handle_one_response", "start_response", "handle"), LIBRARY)
    require(pywsgi, ("format_date_time",), LIBRARY)
    require(pywsgi.Input, ("_discard", "read", "readline", "chunked_input", "position",
                           "content_length"), LIBRARY)


check()
