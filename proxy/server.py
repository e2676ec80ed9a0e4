"""The gunicorn worker: gevent's own WSGI server (pywsgi) in gunicorn's gevent
worker. Its parsing and writing cost ~15-20% less CPU per request than
gunicorn's HTTP layer (bench/); a response's head goes out in one write with its
first bytes, a stream's last chunk with its end. gunicorn.conf.py names it as the
worker class; pywsgi's private parts it changes are in proxy/shims/pywsgi.py.

The edge is held to RFC 9112 as gunicorn's and h11's parsers hold it: a request
whose framing is ambiguous (two lengths, a coding other than chunked, control
characters, no Host) gets one 400 and the connection closes, so nothing behind it
runs as a request. A slow client has deadlines, and while it sends a head it does
not hold one of the worker's serving slots."""
from __future__ import annotations

import gc
import logging
import re
import sys
from dataclasses import dataclass

from gevent import Timeout
from gevent.lock import BoundedSemaphore
from gunicorn.workers.ggevent import GeventPyWSGIWorker

from proxy import errors
from proxy.shims import pywsgi
from proxy.sse import DONE

SWITCH_INTERVAL_S = 0.0005
MAX_LINE, MAX_HEADERS = 65536, 100  # http.client's limits, which pywsgi applies
# RFC 9112 field line: token ":" OWS value OWS; the value may hold HTAB, SP, visible
# ASCII and obs-text, never another control character (NUL, a bare CR, DEL...)
_FIELD_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")
_ONE_ONLY = frozenset(("content-length", "transfer-encoding", "host"))
_HOST_OPTIONAL = frozenset(("HTTP/1.0", "HTTP/0.9"))
log = logging.getLogger("switchboard.server")


class Head:
    """A request's header fields in order, with the part of email.message's API that
    pywsgi and gunicorn read. `status` says what is wrong with the head, if anything."""
    __slots__ = ("fields", "first", "status")

    def __init__(self):
        self.fields: list[tuple[str, str]] = []
        self.first: dict[str, str] = {}  # lower-case name -> the first value
        self.status = ""

    def get(self, name: str, default=None):
        return self.first.get(name.lower(), default)

    getheader = get

    def get_all(self, name: str, default=None):
        name = name.lower()
        return [value for key, value in self.fields if key.lower() == name] or default

    def items(self) -> list[tuple[str, str]]:
        return list(self.fields)

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.first.pop(name, None)
        self.fields = [field for field in self.fields if field[0].lower() != name]

    @property
    def typeheader(self) -> str | None:
        return self.first.get("content-type")

    @property
    def headers(self) -> list[str]:
        """The lines pywsgi builds the WSGI environ from."""
        return [f"{name}: {value}\r\n" for name, value in self.fields]


def read_headers(fp) -> Head:
    """The request's header fields, read line by line up to the blank line. A
    malformed field, a second Content-Length, Transfer-Encoding or Host, or a body
    framed any way but one Content-Length of digits or `Transfer-Encoding: chunked`
    sets `status`. (pywsgi's own reader, the email package, is ~7% of a small request.)"""
    head = Head()
    fields, first = head.fields, head.first
    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_LINE + 1)
        if line == b"\r\n" or line == b"\n":
            head.status = framing_problem(first)
            return head
        field = _FIELD_LINE.fullmatch(line.decode("latin-1"))
        if field is None:
            head.status = _line_problem(line)
            return head
        name, value = field.groups()
        value, key = value.rstrip(" \t"), name.lower()
        if key not in first:
            first[key] = value
        elif key in _ONE_ONLY:
            head.status = f"more than one {name} field"
            return head
        fields.append((name, value))
    head.status = f"more than {MAX_HEADERS} header fields"
    return head


def _line_problem(line: bytes) -> str:
    if len(line) > MAX_LINE:
        return "a header line is too long"
    if not line.endswith(b"\n"):
        return "the head ended before its blank line"
    return "a malformed header field"


def framing_problem(first: dict[str, str]) -> str:
    """What makes the body's length ambiguous (RFC 9112 6.3), or ''."""
    length, coding = first.get("content-length"), first.get("transfer-encoding")
    if coding is not None:
        if coding.lower() != "chunked":
            return "a Transfer-Encoding other than chunked"
        if length is not None:
            return "both Transfer-Encoding and Content-Length"
    elif length is not None and not length.isdecimal():  # latin-1 has no other decimals
        return "a Content-Length that is not a number"
    return ""


class MalformedRequest(ValueError):
    """The request cannot be read unambiguously."""


def refusal(reason: str) -> bytes:
    """The whole raw 400 to a request that cannot be read, after which the connection
    closes: in OpenAI's error shape, like every other error."""
    body = errors.render(errors.InvalidRequest(f"Malformed HTTP request: {reason}.",
                                               code="bad_request"))
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


@dataclass(frozen=True)
class Limits:
    """How long a client may take and how many the worker serves, from gunicorn.conf.py.
    None: no limit."""
    idle_s: float | None = 75.0  # KEEPALIVE: silence while a request is awaited or read
    head_s: float | None = 10.0  # REQUEST_HEAD_TIMEOUT: a whole head (a new connection's
    #                              first from the accept, later ones from their first byte)
    body_s: float | None = 60.0  # REQUEST_BODY_TIMEOUT: a whole body, from its first read
    write_s: float | None = 600.0  # WRITE_TIMEOUT: one write of the response to the client
    serving: int = 1000  # WORKER_CONNECTIONS: requests served at once
    open_connections: int = 10000  # WORKER_OPEN_CONNECTIONS: idle or sending a head included


class Handler(pywsgi.Handler):
    """A request head read by `read_headers` within `head_s`, and only then one of
    the worker's `serving` slots taken, so clients slow to send a head never keep
    others waiting; an idle connection closed after `idle_s`; the answer's writes
    bounded by `write_s` alone, so a client slow to read is not taken for a silent one.

    Once the worker stops accepting (SIGTERM, a graceful restart), the next answer
    on each keep-alive connection says `Connection: close` and is the connection's
    last: clients reconnect to a live worker and what is in flight finishes. Alone,
    pywsgi would go on serving them until the graceful timeout kills its handlers."""

    # the app writes one access line per request itself (proxy/access_log.py);
    # gunicorn's own costs ~3% of a request: only when its access log is configured
    gunicorn_access_log = False
    limits = Limits()  # the Worker sets these two at start-up
    serving = BoundedSemaphore(Limits.serving)
    stream_end = DONE  # nothing may follow it: it goes out with the chunked terminator
    head_deadline: Timeout

    def handle(self):
        self.head_deadline = Timeout(self.limits.head_s)
        self.head_deadline.start()  # a new connection's first head is due from the accept
        try:
            super().handle()
        except Timeout as late:  # the connection is closed, without an answer
            if late is not self.head_deadline:
                raise
        finally:
            self.head_deadline.close()

    def read_requestline(self):
        self.socket.settimeout(self.limits.idle_s)
        if not self.head_deadline.pending:  # kept alive: idle until the next request begins
            self.rfile.peek(1)
            self.head_deadline.start()
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self.head_deadline.cancel()

    def read_head(self, fp) -> Head:
        head = read_headers(fp)
        if not head.status and "host" not in head.first \
                and self.request_version not in _HOST_OPTIONAL:
            head.status = "no Host field"
        if head.status:
            raise MalformedRequest(head.status)
        return head

    def refuse(self, error: Exception) -> bytes:
        reason = str(error) if isinstance(error, MalformedRequest) else "an invalid request line"
        log.info("malformed request", extra={"fields": {"client": self.client_address,
                                                         "reason": reason}})
        return refusal(reason)

    def handle_one_response(self):
        with self.serving:
            super().handle_one_response()

    def start_response(self, status, headers, exc_info=None):
        self.socket.settimeout(self.limits.write_s)  # the request is in: the answer goes out
        if self.server.closed:
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def log_request(self):
        if self.gunicorn_access_log:
            super().log_request()


class Worker(GeventPyWSGIWorker):
    wsgi_handler = Handler
    edge: dict = {}  # Limits' own settings, as gunicorn.conf.py read them (set at fork)

    def run(self):
        limits = Limits(idle_s=self.cfg.keepalive or None, serving=self.cfg.worker_connections,
                        **self.edge)
        Handler.gunicorn_access_log = bool(self.cfg.accesslog)
        Handler.limits, Handler.body_timeout_s = limits, limits.body_s
        Handler.serving = BoundedSemaphore(limits.serving)
        # gunicorn's pool holds every open connection; requests served are the semaphore's
        self.worker_connections = max(limits.open_connections, limits.serving)
        # The log writer is an OS thread running Python: while it holds the GIL a
        # request that has just arrived waits, by default up to 5 ms before the
        # interpreter makes the writer let go. 0.5 ms bounds that wait.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # the app's start-up objects (modules, config, tables) are never collected: left in
        # the tracked generations, every full collection walks them all, a ~20 ms pause of
        # the worker (every ~19,000 requests); frozen, ~0.4 ms (bench/RESULTS.md)
        gc.freeze()
        super().run()
