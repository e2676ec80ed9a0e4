"""One structured line per request; bodies only at DEBUG, secrets redacted.
The same record feeds the sidecar log for completion calls.

LOG_FORMAT: `json` (one JSON object a line) or `text` (one readable line:
time, level, logger, then `key=value` fields). Every line logged while a request
is served carries its `request_id` (and `trace_id` when traced): the request
being served is a context variable, which gevent keeps per greenlet."""
from __future__ import annotations

import atexit
import logging
import re
import sys
import time
from contextvars import ContextVar
from random import getrandbits
from typing import Callable

import gevent
import orjson

from proxy.log.entry import Entry
from proxy.redact import scrub

access = logging.getLogger("switchboard.access")
debug = logging.getLogger("switchboard.debug")


# the RequestLog of the request this greenlet is serving, if any
_serving: ContextVar["RequestLog | None"] = ContextVar("switchboard_serving", default=None)


def serving(record: "RequestLog") -> None:
    """Lines logged from now on in this greenlet carry `record`'s ids, until it finishes
    (then those of the request it was part of, if any: a chain's step)."""
    record.outer = _serving.get()
    _serving.set(record)


def serving_now() -> "RequestLog | None":
    return _serving.get()


def _line(record: logging.LogRecord, exc: str | None) -> dict:
    line = {"ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage()}
    fields = getattr(record, "fields", None)
    if fields:
        line.update(fields)
    request = _serving.get()
    if request is not None:
        line.setdefault("request_id", request.request_id)
        if request.trace_id:
            line.setdefault("trace_id", request.trace_id)
    if exc:
        line["exc"] = exc
    return line


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return orjson.dumps(_line(record, exc), default=str).decode()


class TextLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return text_line(_line(record, exc))


# a value written bare in a text line; anything else is JSON-quoted (spaces, quotes,
# `=`, control characters: one line per record, and no field can fake another)
_BARE = re.compile(r"[A-Za-z0-9_.:/@+,-]+")


def _text_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else orjson.dumps(text).decode()


def text_line(line: dict) -> str:
    """`2026-01-02T03:04:05.678Z INFO switchboard.access msg=request request_id=... status=200`"""
    ts = line.pop("ts")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    head = f"{stamp} {line.pop('level').upper()} {line.pop('logger')}"
    return " ".join([head, *(f"{k}={_text_value(v)}" for k, v in line.items() if v is not None)])


def _json_line(line: dict) -> str:
    return orjson.dumps(line, default=str).decode()


FORMATS = {"json": (JsonLines, _json_line), "text": (TextLines, text_line)}


class TurnLines:
    """Access lines written directly (the logging module costs ~20 µs a line), those
    of one event-loop turn in one write: under load a turn finishes many requests,
    and a write is a system call. Outside a greenlet (a test calling the app
    directly) a line is written at once."""

    def __init__(self, stream):
        self.stream = stream
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        if not isinstance(gevent.getcurrent(), gevent.Greenlet):
            self.stream.write(line)
            return
        if not self.lines:
            gevent.get_hub().loop.run_callback(self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            self.stream.write("".join(lines))


_access_stream: TurnLines | None = None  # where access lines go
_format = "json"  # LOG_FORMAT
_render: Callable[[dict], str] = _json_line  # an access line as LOG_FORMAT writes it


@atexit.register
def _flush_access() -> None:
    if _access_stream is not None:
        _access_stream.flush()


def new_handler() -> logging.Handler:
    """A stderr handler writing LOG_FORMAT lines (the gateway's, or another library's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATS[_format][0]())
    return handler


def configure(level: str, log_format: str = "json") -> None:
    global _access_stream, _format, _render
    _format, _render = log_format, FORMATS[log_format][1]
    root = logging.getLogger("switchboard")
    for old in [h for h in root.handlers if getattr(h, "_switchboard", False)]:
        root.removeHandler(old)
    handler = new_handler()
    handler._switchboard = True
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(level)
    _access_stream = TurnLines(sys.stderr) if access.isEnabledFor(logging.INFO) else None


def _write_access(fields: dict) -> None:
    line = {"ts": round(time.time(), 3), "level": "info", "logger": access.name, "msg": "request",
            **fields}
    _access_stream.write(_render(line) + "\n")


_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    """The gateway's own id for a request, which keys its log rows: 128 random
    bits, from `random` (re-seeded in each forked worker; an id need not be
    secret, and os.urandom is a system call). Never the client's: two requests
    must never share a row."""
    return f"req_{getrandbits(128):032x}"


def client_request_id(headers) -> str | None:
    """The client's own id for correlation (`X-Client-Request-Id`, as OpenAI's API
    takes it, or `X-Request-Id`), when it is a sane token: returned, logged and
    stored beside the gateway's id, never instead of it."""
    given = headers.get("X-Client-Request-Id") or headers.get("X-Request-Id")
    return given if given and _CLIENT_REQUEST_ID.fullmatch(given) else None


class RequestLog:
    """Timings and outcome of one request, written once when the response closes."""
    __slots__ = ("request_id", "client_request_id", "path", "created_at", "start", "ttfb", "provider", "model",
                 "model_requested", "status", "stream", "error", "session_id", "api_key_id",
                 "messages", "pieces", "disconnected", "sink", "session_turn", "on_finish",
                 "trace", "trace_id", "outer", "_done")

    def __init__(self, request_id: str, path: str, client_request_id: str | None = None):
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.path = path
        self.created_at = time.time()
        self.start = time.perf_counter()
        self.ttfb = None
        self.provider = self.model = self.model_requested = self.error = None
        self.session_id = self.api_key_id = self.messages = None
        self.session_turn = False
        self.on_finish: list = []  # called with this record once the response is closed
        self.status = 200
        self.stream = self.disconnected = False
        self.pieces: list[bytes] = []
        self.sink: Callable[[Entry], None] | None = None  # set for completion calls
        self.trace = self.trace_id = None  # proxy.tracing's spans, when tracing is on
        self.outer = None  # the request this one is part of (see `serving`)
        self._done = False

    def first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.start

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        latency = (time.perf_counter() - self.start) * 1000
        ttfb = self.ttfb * 1000 if self.ttfb is not None else latency
        fields = {"request_id": self.request_id, "path": self.path, "provider": self.provider,
                  "model": self.model, "status": self.status, "stream": self.stream,
                  "latency_ms": round(latency, 2), "ttfb_ms": round(ttfb, 2)}
        if self.client_request_id:
            fields["client_request_id"] = self.client_request_id
        if self.trace_id:
            fields["trace_id"] = self.trace_id
        if self.error:
            fields["error"] = self.error
        if self.disconnected:
            fields["client_disconnected"] = True
        if _access_stream is not None:
            _write_access(fields)
        if self.sink is not None:
            self.sink(self._entry(latency, ttfb))
        if self.trace is not None:
            self.trace.end(self)
        for hook in self.on_finish:
            try:
                hook(self)
            except Exception:  # a hook must not break the response's close
                logging.getLogger("switchboard.app").exception("finish hook failed")
        if _serving.get() is self:
            _serving.set(self.outer)

    def _entry(self, latency: float, ttfb: float) -> Entry:
        return Entry(request_id=self.request_id, client_request_id=self.client_request_id,
                     created_at=self.created_at, status=self.status,
                     provider=self.provider, model_requested=self.model_requested,
                     model_upstream=self.model, session_id=self.session_id,
                     api_key_id=self.api_key_id, error_type=self.error, streamed=self.stream,
                     client_disconnected=self.disconnected, latency_ms=latency, ttft_ms=ttfb,
                     messages=self.messages, pieces=self.pieces, session_turn=self.session_turn,
                     trace_id=self.trace_id)


def debug_body(label: str, request_id: str, body: bytes, secrets: tuple[str, ...]) -> None:
    if debug.isEnabledFor(logging.DEBUG):
        text = scrub(body[:65536].decode("utf-8", "replace"), secrets)
        debug.debug(label, extra={"fields": {"request_id": request_id, "body": text}})
