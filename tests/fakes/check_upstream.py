"""A fake OpenAI-compatible chat endpoint for the stream checker (tests/test_check.py):
it streams the captured `chat_stream_include_usage.sse` (tests/fixtures/SOURCES.md)
and answers the same request whole with the same text, so it passes every rule;
the model `break-<rule>` breaks that one rule and no other, as servers in the wild
do (`break-json_text`: another text, `break-hostile`: wrong types); `tools` streams a
captured tool call (`tools-renamed`: the whole answer names another tool); `leak-key`
answers 401 with the caller's key in the message. `GET /models` is 404 (a server that
does not list its models)."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Callable

from tests.fakes.openai_upstream import SSE, fixture, sse_blocks
from tests.fakes.server import FakeServer, Reply, Request


def capture(name: str) -> list[dict]:
    return [json.loads(block[len(b"data: "):]) for block in sse_blocks(fixture(name))
            if b"[DONE]" not in block]


CAPTURE = capture("chat_stream_include_usage.sse")
# the tool call that chat_stream_tool_calls.sse streams in pieces, as a whole message has it
TOOL_CALL = {"id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "type": "function",
             "function": {"name": "get_capital", "arguments": '{"country":"UK"}'}}
JSON = {"Content-Type": "application/json"}


@dataclass
class Scenario:
    """What the fake answers: stream events (chunk objects, or raw blocks), whether
    `[DONE]` ends them, the stream's headers, and the whole answer."""
    events: list
    answer: dict
    done: bool = True
    headers: dict = field(default_factory=lambda: dict(SSE))


def whole(chunks: list[dict], finish: str = "stop", calls: tuple = ()) -> dict:
    """The non-streamed answer the captured stream adds up to."""
    first, usage = chunks[0], chunks[-1]["usage"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    message = {"role": "assistant", "content": text or None,
               **({"tool_calls": list(calls)} if calls else {}), "refusal": None,
               "annotations": []}
    return {"id": first["id"], "object": "chat.completion", "created": first["created"],
            "model": first["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage}


def encode(event) -> bytes:
    return event if isinstance(event, bytes) else b"data: " + json.dumps(event).encode() + b"\n\n"


# the chunks of the capture: 0 role, 1..-3 content, -2 finish, -1 usage
CONTENT, FINISH, USAGE = 2, -2, -1


def _frame_as_named_event(s: Scenario) -> None:
    s.events[CONTENT] = b"event: delta\n" + encode(s.events[CONTENT])


def _role_dropped(s: Scenario) -> None:
    del s.events[0]["choices"][0]["delta"]["role"]


def _finish_twice(s: Scenario) -> None:
    s.events[FINISH - 1]["choices"][0]["finish_reason"] = "stop"


def _usage_on_finish_chunk(s: Scenario) -> None:
    """Usage on the finish chunk, no `choices: []` chunk: a layout seen in compatible servers."""
    usage = s.events.pop(USAGE)["usage"]
    s.events[-1]["usage"] = usage


def _error_event(s: Scenario) -> None:
    s.events.insert(FINISH, {"error": {"message": "upstream failed for key {key}",
                                       "type": "server_error", "param": None, "code": None}})


def _delta_renamed(s: Scenario) -> None:
    choice = s.events[CONTENT]["choices"][0]
    choice["message"] = choice.pop("delta")


def _hostile(s: Scenario) -> None:
    """Wrong types everywhere and a terminal escape in an error: the checker reports."""
    s.events[0]["choices"] = {"index": [0]}
    s.events[CONTENT]["choices"][0].update(index=[0], delta={"content": ["x"], "tool_calls": 5})
    s.events.insert(FINISH, {"error": {"message": "\x1b[2J\x1b[31mred alert"}})
    s.answer["choices"] = "none"


def _set(where: int, name: str, value) -> Callable[[Scenario], None]:
    return lambda s: s.events[where].__setitem__(name, value)


BREAKS = {
    "content_type": lambda s: s.headers.update({"Content-Type": "application/json"}),
    "data_framing": _frame_as_named_event,
    "first_chunk_role": _role_dropped,
    "stable_id": _set(CONTENT, "id", "chatcmpl-another"),
    "stable_created": _set(CONTENT, "created", CAPTURE[0]["created"] + 1),
    "stable_model": _set(CONTENT, "model", "another-model"),
    "object_field": _set(CONTENT, "object", "chat.completion"),
    "chunk_shape": _delta_renamed,
    "finish_reason": _finish_twice,
    "usage_chunk": _usage_on_finish_chunk,
    "done_marker": lambda s: setattr(s, "done", False),
    "no_error_event": _error_event,
    "json_answer": lambda s: s.answer.__setitem__("object", "chat.completion.chunk"),
    "json_matches_stream": lambda s: s.answer["choices"][0].__setitem__("finish_reason", "length"),
    # with --exact only: the same shape, another text
    "json_text": lambda s: s.answer["choices"][0]["message"].__setitem__("content", "Hello."),
    "hostile": _hostile,
}


def scenario(model: str) -> Scenario:
    if model.startswith("tools"):  # `tools-renamed`: the whole answer calls another tool
        chunks = capture("chat_stream_tool_calls.sse")
        name = "get_weather" if model == "tools-renamed" else "get_capital"
        call = {**TOOL_CALL, "function": {**TOOL_CALL["function"], "name": name}}
        return Scenario(chunks, whole(chunks, "tool_calls", (call,)))
    chunks = copy.deepcopy(CAPTURE)
    built = Scenario(chunks, whole(chunks))
    rule = model.removeprefix("break-")
    if rule != model:
        BREAKS[rule](built)
    return built


def handle(req: Request) -> Reply:
    if not req.path.endswith("/chat/completions"):
        return Reply(404, JSON, fixture("error_404_model_not_found.json"))
    body, key = req.json(), req.headers.get("authorization", "").removeprefix("Bearer ")
    if body["model"] == "leak-key":
        return Reply(401, JSON, json.dumps({"error": {"message": f"Incorrect API key {key}",
                                                      "type": "invalid_request_error"}}).encode())
    built = scenario(body["model"])
    if not body.get("stream"):
        return Reply(200, JSON, json.dumps(built.answer).encode())
    events = [encode(e).replace(b"{key}", key.encode()) for e in built.events]
    return Reply(200, built.headers, iter(events + [b"data: [DONE]\n\n"] * built.done))


def start() -> FakeServer:
    return FakeServer(handle).__enter__()
