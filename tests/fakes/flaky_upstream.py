"""An OpenAI-compatible upstream that fails on purpose, for retries, fallbacks
and cool-downs. Answers are the real captures (tests/fixtures/openai); the
failures are OpenAI's error shapes. By model name:
  * `ok` -> the captured answer (JSON or SSE);
  * `flaky-<n>[-<tag>]` -> 500 for the first n calls of that model, then `ok`;
  * `down` -> 500 always; `overloaded` -> 529 always;
  * `limited` -> 429 with `retry-after: 1` always; `limited-long` -> 429, retry-after 60;
  * `too-long` -> 400 `context_length_exceeded`; `bad` -> 400 `invalid_value`;
  * `hang` -> sleeps 3 s before answering;
  * `reset` (stream) -> two events, then the connection is dropped.
Every request is recorded (`server.requests`); `calls(model)` counts them."""
from __future__ import annotations

import json
import threading
import time

from tests.fakes.openai_upstream import JSON, SSE, fixture, sse_blocks
from tests.fakes.server import FakeServer, Reply, Request

_ERRORS = {
    "down": (500, "server_error", None, "The server had an error processing your request."),
    "overloaded": (529, "server_error", "overloaded", "Overloaded"),
    "limited": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    "limited-long": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    "too-long": (400, "invalid_request_error", "context_length_exceeded",
                 "This model's maximum context length is 8192 tokens."),
    "bad": (400, "invalid_request_error", "invalid_value", "Invalid value for 'temperature'."),
}
_RETRY_AFTER = {"limited": "1", "limited-long": "60"}


class Flaky:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)

    def calls(self, model: str) -> int:
        return sum(1 for r in self.server.requests if r.json().get("model") == model)

    def _count(self, model: str) -> int:
        with self.lock:
            self.counts[model] = self.counts.get(model, 0) + 1
            return self.counts[model]

    def handle(self, req: Request) -> Reply:
        body = req.json()
        model = body.get("model", "")
        n = self._count(model)
        if model.startswith("flaky-") and n <= int(model.split("-")[1]):
            model = "down"
        if model in _ERRORS:
            status, type_, code, message = _ERRORS[model]
            headers = {"Content-Type": "application/json"}
            if model in _RETRY_AFTER:
                headers["retry-after"] = _RETRY_AFTER[model]
            error = {"error": {"message": message, "type": type_, "param": None, "code": code}}
            return Reply(status, headers, json.dumps(error, indent=4).encode() + b"\n")
        if model == "hang":
            time.sleep(3)
        if body.get("stream"):
            blocks = sse_blocks(fixture("chat_stream_include_usage.sse"))
            return Reply(200, SSE, _reset(blocks[:2]) if model == "reset" else iter(blocks))
        return Reply(200, JSON, fixture("chat_nonstream.json"))


def _reset(blocks):
    yield from blocks
    raise ConnectionResetError("the flaky upstream drops the connection")


def start() -> Flaky:
    flaky = Flaky()
    flaky.server.__enter__()
    return flaky
