"""A fake Anthropic Messages API built from real captures (tests/fixtures/anthropic,
see SOURCES.md), speaking the real wire format: compact JSON bodies, and SSE as
`event: <name>\\ndata: <json>\\n\\n` with pings, space-padded JSON and no [DONE].

`POST /v1/messages` is checked as the real API checks it (x-api-key,
anthropic-version, max_tokens, roles, non-empty text, tool_result right after
tool_use, thinking budget below max_tokens, temperature <= 1) and answered by
what the request asks for:
  * thinking requested -> the thinking capture (streamed as captured; assembled
    into one message when not streaming);
  * a forced tool (`tool_choice: {"type":"tool"}`, how a gateway asks for JSON)
    -> the tool-use capture's call, renamed to that tool, its input an instance
    of the tool's schema;
  * tools -> the tool-use captures; stop_sequences -> the stop_sequence capture;
  * otherwise the text capture (streamed: split into deltas).
Model names select failures and variants:
  * `error-<status>` -> that Anthropic error (529 is the captured body, 401 names
    API keys to prove scrubbing, 429 carries retry-after);
  * streamed from the stop_sequence capture: `error-midstream` -> two text
    deltas, then `event: error` overloaded_error (not streaming: a 529);
    `error-prestream` -> `event: error` right after message_start;
    `cut-stream` -> the connection drops before message_stop;
    `slow-stream` -> a text delta every 50 ms for ~20 s (disconnect tests);
  * a model ending in `-cached` -> prompt-cache usage (input 3, cache write 20,
    cache read 1217, as observed in a crewAI recording);
  * `stop-<reason>` -> the text answer with that stop_reason.
Every request is recorded on the server (`server.requests`, `server.last`).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from tests.fakes.openai_upstream import sse_blocks
from tests.fakes.server import FakeServer, Reply, Request, pause

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
API_KEY = "test-anthropic-key-0123456789abcdef"  # not key-shaped: only secrets() scrubs it
CACHED_USAGE = {"input_tokens": 3, "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 1217}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _captured_headers() -> dict:
    skip = {"http status", "transfer-encoding", "connection", "date", "server", "content-type",
            "cache-control"}
    lines = fixture("messages_stream.headers.txt").decode().splitlines()
    pairs = (line.split(": ", 1) for line in lines if ": " in line)
    return {k: v for k, v in pairs if k.lower() not in skip}


SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               **_captured_headers()}
JSON_HEADERS = {"Content-Type": "application/json", **_captured_headers()}


# ---- wire format ------------------------------------------------------------

def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def event(obj: dict, pad: int = 6) -> bytes:
    """One event as Anthropic frames it, JSON padded with spaces before its last brace."""
    data = compact(obj)
    return b"event: %s\ndata: %s%s}\n\n" % (obj["type"].encode(), data[:-1], b" " * pad)


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def parse_block(block: bytes) -> dict | None:
    for line in block.splitlines():
        if line.startswith(b"data:"):
            return json.loads(line[5:])
    return None


def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _start_block(block: dict) -> dict:
    kind = block["type"]
    if kind == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    return {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else \
        {"type": "text", "text": ""}


def _deltas(block: dict) -> list[dict]:
    if block["type"] == "tool_use":
        return [{"type": "input_json_delta", "partial_json": p}
                for p in ["", *pieces(json.dumps(block["input"]), 9)]]
    if block["type"] == "thinking":
        return [*({"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"], 20)),
                {"type": "signature_delta", "signature": block.get("signature", "")}]
    return [{"type": "text_delta", "text": p} for p in re.findall(r"\S+\s*|\s+", block["text"])]


def message_to_sse(message: dict) -> list[bytes]:
    """A whole message as the event blocks the real API would stream for it."""
    start = dict(message, content=[], stop_reason=None, stop_sequence=None,
                 usage=dict(message["usage"], output_tokens=1))
    out = [event({"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        out.append(event({"type": "content_block_start", "index": index,
                          "content_block": _start_block(block)}))
        if index == 0:
            out.append(PING)
        out += [event({"type": "content_block_delta", "index": index, "delta": d}, pad=index + 3)
                for d in _deltas(block)]
        out.append(event({"type": "content_block_stop", "index": index}))
    usage = {k: v for k, v in message["usage"].items() if isinstance(v, int)}
    out.append(event({"type": "message_delta", "usage": usage,
                      "delta": {"stop_reason": message["stop_reason"],
                                "stop_sequence": message.get("stop_sequence")}}))
    out.append(event({"type": "message_stop"}))
    return out


def sse_to_message(body: bytes) -> dict:
    """A captured stream assembled into the message a non-streaming call returns."""
    message: dict = {}
    for block in sse_blocks(body):
        data = parse_block(block)
        kind = data and data["type"]
        if kind == "message_start":
            message = copy.deepcopy(data["message"])
        elif kind == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif kind == "content_block_delta":
            _apply(message["content"][data["index"]], data["delta"])
        elif kind == "content_block_stop":
            part = message["content"][data["index"]]
            if "partial" in part:
                part["input"] = json.loads(part.pop("partial") or "{}")
        elif kind == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data.get("usage") or {})
    return message


def _apply(part: dict, delta: dict) -> None:
    field = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial",
             "signature_delta": "signature"}[delta["type"]]
    value = delta["partial_json" if field == "partial" else field]
    part[field] = value if field == "signature" else part.get(field, "") + value


# ---- errors -----------------------------------------------------------------

ERRORS = {
    400: ("invalid_request_error", "messages.0.content.0.type: Field required"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "model: claude-does-not-exist"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization "
                              "of 50 requests per minute."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
}


def error_body(kind: str, message: str) -> bytes:
    return compact({"type": "error", "error": {"type": kind, "message": message},
                    "request_id": "req_011CFakeAnthropicUpstream01"})


def error_reply(status: int, kind: str, message: str, headers: dict | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json",
                          "request-id": "req_011CFakeAnthropicUpstream01", **(headers or {})},
                 error_body(kind, message))


def _error(status: str, req: Request) -> Reply:
    if status == "529" or not status.isdigit():  # error-midstream etc. when not streaming
        return Reply(529, {"Content-Type": "application/json"}, fixture("error_529_overloaded.json"))
    if status == "401":
        return error_reply(401, "authentication_error",
                           f"invalid x-api-key: {req.headers.get('x-api-key')} was revoked; "
                           "rotate to sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm")
    kind, message = ERRORS.get(int(status), ("mystery_error", f"Simulated {status}"))
    headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"} \
        if status == "429" else {}
    return error_reply(int(status), kind, message, headers)


OVERLOADED_EVENT = (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                    b'"message":"Overloaded"}}\n\n')


# ---- request checks (as the real API answers them) ---------------------------

def _tool_pairing(messages: list) -> str | None:
    for i, message in enumerate(messages):
        content = message["content"] if isinstance(message["content"], list) else []
        ids = [b["id"] for b in content if b.get("type") == "tool_use"]
        if not ids:
            continue
        following = messages[i + 1]["content"] if i + 1 < len(messages) else []
        leading = []
        for block in following if isinstance(following, list) else []:
            if block.get("type") != "tool_result":
                break
            leading.append(block["tool_use_id"])
        missing = [x for x in ids if x not in leading]
        if missing:
            return (f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message.")
    return None


def invalid(body: dict) -> str | None:
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("user", "assistant"):
            return (f'messages: Unexpected role "{message.get("role")}". The Messages API '
                    'accepts a top-level `system` parameter, not "system" as an input message role.')
        content = message.get("content")
        if not content or any(b.get("type") == "text" and not b.get("text")
                              for b in (content if isinstance(content, list) else ())):
            return f"messages.{i}: all messages must have non-empty content"
    if body["messages"] and body["messages"][0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    if (body.get("temperature") or 0) > 1:
        return "temperature: Input should be less than or equal to 1"
    budget = (body.get("thinking") or {}).get("budget_tokens")
    if budget is not None and budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    return _tool_pairing(body["messages"])


def check(req: Request) -> tuple[dict | None, Reply | None]:
    if req.headers.get("x-api-key") != API_KEY:
        return None, error_reply(401, "authentication_error", "invalid x-api-key")
    if not req.headers.get("anthropic-version"):
        return None, error_reply(400, "invalid_request_error",
                                 "anthropic-version: header is required")
    try:
        body = req.json()
    except ValueError:
        return None, error_reply(400, "invalid_request_error", "There was an error parsing the "
                                 "body of your request. Please make sure it is valid JSON.")
    problem = invalid(body)
    return body, (error_reply(400, "invalid_request_error", problem) if problem else None)


# ---- answers ----------------------------------------------------------------

def forced_tool(body: dict) -> dict | None:
    choice = body.get("tool_choice") or {}
    return next((t for t in body.get("tools", ()) if choice.get("type") == "tool"
                 and t["name"] == choice.get("name")), None)


def example(schema: dict):
    """A small instance of a JSON schema (enough for the schemas tests use)."""
    kind = schema.get("type", "object")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: example(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items") or {"type": "string"})]
    return {"string": "Paris", "integer": 42, "number": 4.5, "boolean": True}.get(kind)


def forced_message(tool: dict) -> dict:
    """The captured tool call, made to the forced tool with an instance of its schema."""
    message = json.loads(fixture("messages_nonstream_tool_use.json"))
    call = next(b for b in message["content"] if b["type"] == "tool_use")
    message["content"] = [dict(call, name=tool["name"], input=example(tool["input_schema"]))]
    return message


def text_message(model: str) -> dict:
    message = json.loads(fixture("messages_nonstream_text.json"))
    if model.endswith("-cached"):
        message["usage"].update(CACHED_USAGE)
    if model.startswith("stop-"):
        message["stop_reason"] = model.removeprefix("stop-")
    return message


def answer_stream(body: dict) -> list[bytes]:
    if body.get("thinking"):
        return sse_blocks(fixture("messages_stream_thinking.sse"))
    if (tool := forced_tool(body)) is not None:
        return message_to_sse(forced_message(tool))
    if body.get("tools"):
        return sse_blocks(fixture("messages_stream_tool_use.sse"))
    if body.get("stop_sequences"):
        return sse_blocks(fixture("messages_stream_stop_sequence.sse"))
    return message_to_sse(text_message(body["model"]))


def answer_message(body: dict) -> bytes:
    if body.get("thinking"):
        return compact(sse_to_message(fixture("messages_stream_thinking.sse")))
    if (tool := forced_tool(body)) is not None:
        return compact(forced_message(tool))
    if body.get("tools"):
        return fixture("messages_nonstream_tool_use.json")
    if body.get("stop_sequences"):
        return compact(sse_to_message(fixture("messages_stream_stop_sequence.sse")))
    model = body["model"]
    if model.endswith("-cached") or model.startswith("stop-"):
        return compact(text_message(model))
    return fixture("messages_nonstream_text.json")


def _slow_stream(blocks: list[bytes]):
    yield from blocks[:3]
    for _ in range(400):
        yield pause(0.05)
        yield blocks[3]


def _cut(blocks: list[bytes]):
    yield from blocks
    raise ConnectionResetError("fake upstream drops the connection")


SPECIAL_STREAMS = {
    "error-midstream": lambda blocks: iter([*blocks[:5], OVERLOADED_EVENT]),
    "error-prestream": lambda blocks: iter([blocks[0], OVERLOADED_EVENT]),
    "cut-stream": lambda blocks: _cut(blocks[:6]),
    "slow-stream": _slow_stream,
}


def handle(req: Request) -> Reply:
    if req.method != "POST" or req.path.partition("?")[0] != "/v1/messages":
        return error_reply(404, "not_found_error", f"Not found: {req.method} {req.path}")
    body, problem = check(req)
    if problem is not None:
        return problem
    model = body["model"]
    if body.get("stream") and model in SPECIAL_STREAMS:
        captured = sse_blocks(fixture("messages_stream_stop_sequence.sse"))
        return Reply(200, SSE_HEADERS, SPECIAL_STREAMS[model](captured))
    if model.startswith("error-"):
        return _error(model.removeprefix("error-"), req)
    if body.get("stream"):
        return Reply(200, SSE_HEADERS, iter(answer_stream(body)))
    return Reply(200, JSON_HEADERS, answer_message(body))


def start() -> FakeServer:
    return FakeServer(handle).__enter__()


def gateway_env(server: FakeServer) -> dict:
    """Environment that points a gateway's `anthropic` provider at this fake."""
    return {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": server.url}
