"""A fake OpenAI chat-completions server that replays real captures
(tests/fixtures/openai, see SOURCES.md).

What it answers depends on the request, as the real API's would:
  * stream + include_usage / stream without it / n=3 / tools / parallel tools
    -> the matching captured SSE body, one event per chunk;
  * non-streaming -> the captured JSON body (tool-call variant when tools are sent),
    with `n` choices when n > 1, JSON content when response_format asks for it;
  * model names starting with `error-<status>` -> that captured error;
  * `slow-stream` streams forever-ish with pauses (disconnect tests);
  * `cut-stream` sends two events and drops the connection;
  * `hang` sleeps before answering (timeout tests).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from tests.fakes.server import FakeServer, Reply, Request, pause

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openai"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sse_blocks(body: bytes) -> list[bytes]:
    """Split a captured SSE body into its events, each ending with its blank line."""
    parts = body.split(b"\n\n")
    blocks = [p + b"\n\n" for p in parts[:-1]]
    if parts[-1]:
        blocks.append(parts[-1])
    return blocks


SSE = {"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": "req_fakeupstream0001",
       "openai-processing-ms": "12", "x-ratelimit-remaining-requests": "9999"}
JSON = {"Content-Type": "application/json", "x-request-id": "req_fakeupstream0002",
        "openai-processing-ms": "15", "x-ratelimit-limit-requests": "10000"}

ERRORS = {
    "400": ("error_400_unsupported_parameter.json", {}),
    "401": ("error_401_invalid_api_key.json", {}),
    "404": ("error_404_model_not_found.json", {}),
}


def _error(status: str) -> Reply:
    if status in ERRORS:
        name, headers = ERRORS[status]
        return Reply(int(status), {"Content-Type": "application/json", **headers}, fixture(name))
    body = {"error": {"message": f"Simulated {status} from fake upstream (key sk-fakefakefake123456)",
                      "type": "server_error" if status.startswith("5") else "rate_limit_error",
                      "param": None, "code": None if status.startswith("5") else "rate_limit_exceeded"}}
    headers = {"Content-Type": "application/json"}
    if status == "429":
        headers["retry-after"] = "1"
    return Reply(int(status), headers, json.dumps(body, indent=4).encode() + b"\n")


def _stream_fixture(body: dict) -> str:
    if (body.get("n") or 1) > 1:
        return "chat_stream_n3_interleaved.sse"
    if body.get("tools"):
        if len(body["tools"]) > 1:
            return "chat_stream_parallel_tool_calls.sse"
        return "chat_stream_tool_calls.sse"
    if (body.get("stream_options") or {}).get("include_usage"):
        return "chat_stream_include_usage.sse"
    return "chat_stream_no_usage.sse"


def _nonstream(body: dict) -> bytes:
    name = "chat_nonstream_tool_calls.json" if body.get("tools") else "chat_nonstream.json"
    raw = fixture(name)
    n = body.get("n") or 1
    json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    if n == 1 and not json_mode:
        return raw
    obj = json.loads(raw)
    if json_mode:  # as the real API answers: the content is a JSON document
        obj["choices"][0]["message"]["content"] = json.dumps({"answer": "ok"})
    first = obj["choices"][0]
    obj["choices"] = [dict(copy.deepcopy(first), index=i) for i in range(n)]
    return json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"


def _slow_stream():
    blocks = sse_blocks(fixture("chat_stream_no_usage.sse"))
    first, content = blocks[0], blocks[1]
    yield first
    for _ in range(400):
        yield pause(0.05)
        yield content


class CutStream(Exception):
    pass


def handle(req: Request) -> Reply:
    if not req.path.endswith("/chat/completions"):
        return Reply(404, {"Content-Type": "application/json"}, fixture("error_404_model_not_found.json"))
    body = req.json()
    model = body.get("model", "")
    if model.startswith("error-"):
        return _error(model.removeprefix("error-"))
    if model == "hang":
        time.sleep(float(body.get("hang_seconds", 5)))
    if body.get("stream"):
        if model == "slow-stream":
            return Reply(200, SSE, _slow_stream())
        blocks = sse_blocks(fixture(_stream_fixture(body)))
        if model == "cut-stream":
            return Reply(200, SSE, _cut(blocks[:2]))
        return Reply(200, SSE, iter(blocks))
    return Reply(200, JSON, _nonstream(body))


def _cut(blocks):
    yield from blocks
    raise ConnectionResetError("fake upstream drops the connection")


def start() -> FakeServer:
    return FakeServer(handle).__enter__()
