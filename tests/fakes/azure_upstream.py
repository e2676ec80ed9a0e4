"""A fake Azure OpenAI deployment endpoint.

No Azure capture is in tests/fixtures, so the Azure additions are written from
Azure's documented format on top of the real OpenAI captures: a first stream
chunk with empty id/model and `prompt_filter_results`, `content_filter_results`
inside every choice, a trailing `content_filter_offsets` chunk (asynchronous
filter mode), and alphabetically ordered keys as Azure sends them.
"""
from __future__ import annotations

import json
import re

from tests.fakes.openai_upstream import fixture, sse_blocks
from tests.fakes.server import FakeServer, Reply, Request

SAFE = {c: {"filtered": False, "severity": "safe"} for c in ("hate", "self_harm", "sexual", "violence")}
PROMPT_FILTER = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]}
OFFSETS = {"choices": [{"content_filter_offsets": {"check_offset": 35, "start_offset": 35, "end_offset": 68},
                        "content_filter_results": SAFE, "finish_reason": None, "index": 0}],
           "created": 0, "id": "", "model": "", "object": ""}
PATH = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions\?api-version=(?P<version>.+)")


def _data(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), sort_keys=True).encode() + b"\n\n"


def _azure_chunk(block: bytes) -> bytes:
    payload = block.removeprefix(b"data: ").strip()
    if payload == b"[DONE]":
        return block
    chunk = json.loads(payload)
    for choice in chunk["choices"]:
        choice["content_filter_results"] = SAFE if choice["delta"].get("content") else {}
    return _data(chunk)


def _stream(body: dict):
    name = "chat_stream_include_usage.sse" if (body.get("stream_options") or {}).get("include_usage") \
        else "chat_stream_no_usage.sse"
    blocks = sse_blocks(fixture(name))
    yield _data(PROMPT_FILTER)
    for block in blocks[:-1]:
        yield _azure_chunk(block)
    yield _data(OFFSETS)
    yield blocks[-1]


def _json() -> bytes:
    obj = json.loads(fixture("chat_nonstream.json"))
    obj["prompt_filter_results"] = PROMPT_FILTER["prompt_filter_results"]
    for choice in obj["choices"]:
        choice["content_filter_results"] = SAFE
    return json.dumps(obj, sort_keys=True).encode()


def handle(req: Request) -> Reply:
    match = PATH.fullmatch(req.path)
    if not match:
        return Reply(404, {"Content-Type": "application/json"},
                     b'{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}')
    if req.headers.get("api-key") != "azure-test-key-123456":
        return Reply(401, {"Content-Type": "application/json"},
                     b'{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}')
    body = req.json()
    if body.get("stream"):
        return Reply(200, {"Content-Type": "text/event-stream; charset=utf-8"}, _stream(body))
    return Reply(200, {"Content-Type": "application/json"}, _json())


def start() -> FakeServer:
    return FakeServer(handle).__enter__()


def gateway_env(server: FakeServer) -> dict:
    return {"AZURE_OPENAI_API_KEY": "azure-test-key-123456", "AZURE_OPENAI_ENDPOINT": server.url,
            "AZURE_OPENAI_API_VERSION": "2024-10-21",
            "AZURE_OPENAI_DEPLOYED_MODELS": "gpt-4o-mini=mini-prod,gpt-4o"}
