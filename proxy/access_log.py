"""One structured line per request; bodies only at DEBUG, secrets redacted."""
from __future__ import annotations

import logging
import sys
import time

import orjson

from proxy.redact import scrub

access = logging.getLogger("switchboard.access")
debug = logging.getLogger("switchboard.debug")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str) -> None:
    root = logging.getLogger("switchboard")
    if not any(getattr(h, "_switchboard", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        handler._switchboard = True
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


class RequestLog:
    """Timings and outcome of one request, written once when the response closes."""
    __slots__ = ("request_id", "path", "start", "ttfb", "provider", "model", "status",
                 "stream", "error", "_done")

    def __init__(self, request_id: str, path: str):
        self.request_id = request_id
        self.path = path
        self.start = time.perf_counter()
        self.ttfb = None
        self.provider = self.model = self.error = None
        self.status = 200
        self.stream = False
        self._done = False

    def first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.start

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        latency = time.perf_counter() - self.start
        fields = {"request_id": self.request_id, "path": self.path, "provider": self.provider,
                  "model": self.model, "status": self.status, "stream": self.stream,
                  "latency_ms": round(latency * 1000, 2),
                  "ttfb_ms": round((self.ttfb if self.ttfb is not None else latency) * 1000, 2)}
        if self.error:
            fields["error"] = self.error
        access.info("request", extra={"fields": fields})


def debug_body(label: str, request_id: str, body: bytes, secrets: tuple[str, ...]) -> None:
    if debug.isEnabledFor(logging.DEBUG):
        text = scrub(body[:65536].decode("utf-8", "replace"), secrets)
        debug.debug(label, extra={"fields": {"request_id": request_id, "body": text}})
