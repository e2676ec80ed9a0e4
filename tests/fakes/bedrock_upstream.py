"""A fake Amazon Bedrock runtime and agent runtime, built from real captures
(tests/fixtures/bedrock, see SOURCES.md), that boto3 reaches through
AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME.
Signatures are not checked. Every request is recorded (`converse_calls`,
`agent_calls` decode them).

Converse (`/model/{modelId}/converse` and `/converse-stream`), by model id:
  * `error-throttling|validation|access|notfound|timeout|unavailable|internal` -> that
    HTTP error (`x-amzn-ErrorType` header, `{"message"}` body), streaming or not;
  * `stream-error-unavailable` / `stream-error-throttling` / `stream-error-unmodeled` ->
    text, then an in-stream exception (the captured one for `unavailable`);
  * `...reasoning...` -> reasoning then text (the captured stream);
  * `...max-tokens...` -> the captured max_tokens answer; `...guardrail...` -> guardrail stop;
  * `slow-stream` -> text pieces with pauses (disconnect tests); `hang` -> answers after
    4 s, `delay` after 1 s;
  otherwise, when the request forces a tool (`toolChoice.tool`) -> that tool called with input
  filled from its schema; with tools and no tool result last -> the captured tool-use answer
  (`add_numbers` whole, `get_temperature` streamed; `...parallel...` -> two calls after text);
  else a text answer with cache usage.
InvokeAgent (`/agents/{id}/agentAliases/{alias}/sessions/{session}/text`), by inputText:
  `no trace` -> the captured chunk-only stream; `many words` -> several chunks (one cut inside a
  UTF-8 character), no traces;
  `throttle me` -> HTTP 429; `stream error` -> a trace then a throttlingException;
  otherwise the captured stream with 9 traces (usage 728+915 in, 165+56 out).
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from tests.fakes import eventstream as es
from tests.fakes.server import FakeServer, Reply, Request, pause

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bedrock"
STREAM = {"Content-Type": "application/vnd.amazon.eventstream",
          "x-amzn-RequestId": "5f1c3a4e-0000-4000-8000-fakebedrock01"}
JSON = {"Content-Type": "application/json",
        "x-amzn-RequestId": "5f1c3a4e-0000-4000-8000-fakebedrock02"}
# how many slow (`delay`/`hang`) calls were in flight at once: proves concurrency without timing
IN_FLIGHT = {"now": 0, "max": 0}
IN_FLIGHT_LOCK = threading.Lock()
CODE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

ERRORS = {  # model id -> (status, x-amzn-ErrorType, message)
    "error-throttling": (429, "ThrottlingException",
                         "Too many requests, please wait before trying again."),
    "error-validation": (400, "ValidationException", None),  # the captured body
    "error-access": (403, "AccessDeniedException",
                     "User: arn:aws:iam::123456789012:user/gateway is not authorized to perform: "
                     "bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1:123456789012:"
                     "inference-profile/us.anthropic.claude (account 123456789012)"),
    "error-notfound": (404, "ResourceNotFoundException", "Model not found."),
    "error-timeout": (408, "ModelTimeoutException",
                      "Model has timed out in processing the request."),
    "error-unavailable": (503, "ServiceUnavailableException",
                          "Bedrock is unable to process your request."),
    "error-internal": (500, "InternalServerException",
                       "The system encountered an unexpected error."),
}
TEXT = ["Hello", " from", " Bedrock", "."]
USAGE = {"cacheReadInputTokens": 100, "cacheWriteInputTokens": 3, "inputTokens": 12,
         "outputTokens": 9, "totalTokens": 124}
AGENT = re.compile(r"/agents/([^/]+)/agentAliases/([^/]+)/sessions/([^/]+)/text")
CONVERSE = re.compile(r"/model/([^/]+)/(converse|converse-stream)")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def error_reply(status: int, code: str, message: str | None) -> Reply:
    body = fixture("error_400_validation.json") if message is None else _json({"message": message})
    return Reply(status, {**JSON, "x-amzn-ErrorType": code + CODE_SUFFIX}, body)


def example(schema: dict):
    """A value that follows a JSON schema, as a model filling a forced tool would."""
    kind = schema.get("type", "object")
    if kind == "object":
        return {k: example(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items") or {"type": "string"})]
    return {"string": "Paris", "integer": 42, "number": 42, "boolean": True}.get(kind)


def forced_tool(body: dict) -> tuple[str, dict] | None:
    config = body.get("toolConfig") or {}
    name = ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
    if not name:
        return None
    spec = next(t["toolSpec"] for t in config["tools"] if t["toolSpec"]["name"] == name)
    return name, example(spec["inputSchema"]["json"])


def wants_tool(body: dict) -> bool:
    last = body["messages"][-1]["content"]
    return bool(body.get("toolConfig")) and not any("toolResult" in b for b in last)


# ---- Converse (whole answers) -------------------------------------------------

def _answer(content: list, stop: str, usage: dict = USAGE) -> bytes:
    return _json({"metrics": {"latencyMs": 321}, "output": {"message": {"content": content,
                  "role": "assistant"}}, "stopReason": stop, "usage": usage})


def converse(model: str, body: dict) -> bytes:
    forced = forced_tool(body)
    if "max-tokens" in model:
        return fixture("converse_nonstream_max_tokens.json")
    if forced:
        return _answer([{"toolUse": {"input": forced[1], "name": forced[0],
                                     "toolUseId": "tooluse_forced0000000000001"}}], "tool_use")
    if wants_tool(body):
        return fixture("converse_nonstream_tool_use.json")
    if "reasoning" in model:
        return _answer([{"reasoningContent": {"reasoningText": {"signature": "c2ln", "text":
                        "The user greets me."}}}, {"text": "Hello! How can I help?"}], "end_turn")
    stop = "guardrail_intervened" if "guardrail" in model else "end_turn"
    return _answer([{"text": "".join(TEXT)}], stop)


# ---- ConverseStream -------------------------------------------------------------

def _text_frames(index: int = 0) -> list[bytes]:
    return [es.event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": t}})
            for t in TEXT]


def _tool_frames(index: int, name: str, tool_id: str, arguments: str) -> list[bytes]:
    cut = len(arguments) // 2
    return [es.event("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"name": name, "toolUseId": tool_id}}}),
            *(es.event("contentBlockDelta", {"contentBlockIndex": index,
                                             "delta": {"toolUse": {"input": piece}}})
              for piece in (arguments[:cut], arguments[cut:])),
            es.event("contentBlockStop", {"contentBlockIndex": index})]


def _message(blocks: list[bytes], stop: str) -> list[bytes]:
    return [es.event("messageStart", {"role": "assistant"}), *blocks,
            es.event("messageStop", {"stopReason": stop}),
            es.event("metadata", {"metrics": {"latencyMs": 123}, "usage": USAGE})]


_STREAM_ERRORS = {
    "stream-error-unavailable":  # the captured frame
        lambda: fixture("converse_stream_exception_service_unavailable.eventstream"),
    "stream-error-throttling":
        lambda: es.exception("throttlingException", "Too many tokens, please wait."),
    "stream-error-unmodeled": lambda: es.error("InternalFailure", "An internal failure occurred."),
}


def converse_stream(model: str, body: dict):
    if model in _STREAM_ERRORS:
        return [es.event("messageStart", {"role": "assistant"}), *_text_frames(),
                _STREAM_ERRORS[model]()]
    if model == "slow-stream":
        return _slow()
    forced = forced_tool(body)
    if forced:
        return _message(_tool_frames(0, forced[0], "tooluse_forced0000000000001",
                                     json.dumps(forced[1])), "tool_use")
    if wants_tool(body) and "parallel" in model:
        return _message([*_text_frames(0), es.event("contentBlockStop", {"contentBlockIndex": 0}),
                         *_tool_frames(1, "get_temperature", "tooluse_par1", '{"city":"Paris"}'),
                         *_tool_frames(2, "get_temperature", "tooluse_par2", '{"city":"Lyon"}')],
                        "tool_use")
    if wants_tool(body):
        return es.frames(fixture("converse_stream_tool_use.eventstream"))
    if "reasoning" in model:
        return es.frames(fixture("converse_stream_reasoning.eventstream"))
    stop = "max_tokens" if "max-tokens" in model else \
        "guardrail_intervened" if "guardrail" in model else "end_turn"
    return _message([*_text_frames(), es.event("contentBlockStop", {"contentBlockIndex": 0})], stop)


def _slow():
    yield es.event("messageStart", {"role": "assistant"})
    for _ in range(400):
        yield es.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " tick"}})
        yield pause(0.05)


# ---- InvokeAgent ------------------------------------------------------------------

def _chunk(data: bytes) -> bytes:
    return es.event("chunk", {"bytes": base64.b64encode(data).decode()})


def invoke_agent(session: str, body: dict) -> Reply:
    text = body.get("inputText", "")
    headers = {**STREAM, "x-amzn-bedrock-agent-content-type": "application/json",
               "x-amz-bedrock-agent-session-id": session}
    if "throttle me" in text:
        return error_reply(429, "ThrottlingException", "Rate exceeded.")
    if "no trace" in text:
        return Reply(200, headers, iter(es.frames(fixture("agent_invoke_chunk_only.eventstream"))))
    traces = es.frames(fixture("agent_invoke_with_trace.eventstream"))[:-1]
    if "stream error" in text:
        limit = es.exception("throttlingException", "Your request rate is too high.")
        return Reply(200, headers, iter([traces[0], limit]))
    if "many words" in text:
        # the last cut falls inside the two UTF-8 bytes of "\u00e9"
        pieces = [b"The agent answers in several ", b"pieces: one two three four five ",
                  b"six seven eight nine ten. Caf\xc3", b"\xa9 au lait."]
        return Reply(200, headers, iter([_chunk(p) for p in pieces]))
    return Reply(200, headers, iter(es.frames(fixture("agent_invoke_with_trace.eventstream"))))


# ---- the server ---------------------------------------------------------------------

def handle(req: Request) -> Reply:
    path = req.path.split("?")[0]
    agent = AGENT.fullmatch(path)
    if agent:
        return invoke_agent(unquote(agent[3]), req.json())
    match = CONVERSE.fullmatch(path)
    if not match:
        return error_reply(404, "UnknownOperationException", f"Unknown operation {path}")
    model, operation = unquote(match[1]), match[2]
    if model in ERRORS:
        return error_reply(*ERRORS[model])
    if model in ("hang", "delay"):
        with IN_FLIGHT_LOCK:
            IN_FLIGHT["now"] += 1
            IN_FLIGHT["max"] = max(IN_FLIGHT["max"], IN_FLIGHT["now"])
        time.sleep(4 if model == "hang" else 1)
        with IN_FLIGHT_LOCK:
            IN_FLIGHT["now"] -= 1
    body = req.json()
    if body["messages"] and body["messages"][0]["role"] != "user":
        return error_reply(400, "ValidationException",
                           "A conversation must start with a user message. Try again with a "
                           "conversation that starts with a user message.")
    if operation == "converse":
        return Reply(200, JSON, converse(model, body))
    return Reply(200, STREAM, iter(converse_stream(model, body)))


def converse_calls(server: FakeServer) -> list[tuple[str, str, dict]]:
    """(model id URL-decoded, "converse"|"converse-stream", JSON body) per Converse request."""
    calls = []
    for req in list(server.requests):
        match = CONVERSE.fullmatch(req.path.split("?")[0])
        if match:
            calls.append((unquote(match[1]), match[2], req.json()))
    return calls


def agent_calls(server: FakeServer) -> list[dict]:
    """{agent, alias, session, body} per InvokeAgent request."""
    calls = []
    for req in list(server.requests):
        match = AGENT.fullmatch(req.path.split("?")[0])
        if match:
            calls.append({"agent": match[1], "alias": match[2], "session": unquote(match[3]),
                          "body": req.json()})
    return calls


def start() -> FakeServer:
    return FakeServer(handle).__enter__()


def gateway_env(server: FakeServer) -> dict:
    """Environment for a gateway with `bedrock` and `bedrock-agent` pointed at `server`."""
    return {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000",
            "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests-0123456789abcdef",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": server.url,
            "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": server.url,
            "AGENT_ID": "FAKEAGENT1", "AGENT_ALIAS_ID": "FAKEALIAS1",
            # nothing from the developer's machine: no profiles, no instance metadata
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true"}
