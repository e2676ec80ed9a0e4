"""Byte compatibility: a pass-through relays the upstream's bytes unchanged;
what the gateway writes itself has OpenAI's exact layout."""
import json
import re

import requests

from proxy.assemble import json_body
from tests.fakes.openai_upstream import fixture, sse_blocks

HI = {"role": "user", "content": "hi there"}


def post(gateway, body, **kw):
    return requests.post(gateway.url + "/v1/chat/completions", json=body, stream=True, timeout=10, **kw)


def test_passthrough_stream_bytes_equal_the_upstream(gateway):
    cases = [({"stream_options": {"include_usage": True}}, "chat_stream_include_usage.sse"),
             ({"n": 3}, "chat_stream_n3_interleaved.sse"),
             ({"tools": [{"type": "function", "function": {"name": "a"}}]}, "chat_stream_tool_calls.sse")]
    usage = {"stream_options": {"include_usage": True}}  # these captures were recorded with it
    for extra, name in cases:
        r = post(gateway, {"model": "openai/gpt-4o-mini", "messages": [HI], "stream": True, **usage, **extra})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["x-accel-buffering"] == "no" and r.headers["cache-control"] == "no-cache"
        assert r.raw.read() == fixture(name), name


def test_usage_asked_for_the_log_never_reaches_a_client_that_did_not_ask(gateway, openai_fake):
    r = post(gateway, {"model": "openai/gpt-4o-mini", "messages": [HI], "stream": True})
    received = sse_blocks(r.raw.read())
    assert openai_fake.last.json()["stream_options"] == {"include_usage": True}
    sent = sse_blocks(fixture("chat_stream_include_usage.sse"))
    usage_chunk = sent[-2]
    assert b'"choices":[]' in usage_chunk
    expected = [block.replace(b',"usage":null', b"") for block in sent if block is not usage_chunk]
    assert received == expected
    for block in received[:-1]:
        chunk = json.loads(block.removeprefix(b"data: "))
        assert "usage" not in chunk and chunk["choices"]


def test_passthrough_json_bytes_equal_the_upstream(gateway):
    r = post(gateway, {"model": "openai/gpt-4o-mini", "messages": [HI]})
    assert r.raw.read() == fixture("chat_nonstream.json")


def test_unchanged_body_is_forwarded_byte_for_byte(gateway, openai_fake):
    raw = b'{"messages":[{"role":"user","content":"hi"}],  "model":"gpt-4o", "x_vendor":1}'
    r = requests.post(gateway.url + "/v1/chat/completions", data=raw,
                      headers={"content-type": "application/json", "X-Provider": "openai"}, timeout=10)
    assert r.status_code == 200
    assert openai_fake.last.body == raw


def test_gateway_json_layout_matches_python_json_dumps():
    for name in ("chat_nonstream.json", "chat_nonstream_tool_calls.json"):
        obj = json.loads(fixture(name))
        assert json_body(obj) == fixture(name)
        assert json_body(obj) == (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
    tricky = {"s": "naïve — ’quotes’ \u0001 \U0001F600 / \\", "f": 0.25, "big": 1e16, "e": [], "d": {}}
    assert json_body(tricky) == (json.dumps(tricky, indent=2, ensure_ascii=False) + "\n").encode()


def test_small_floats_are_written_as_openai_writes_them():
    # OpenAI's servers write 0.000015598027633743823 where Python writes 1.5598027633743823e-05
    # (WIRE-FORMAT.md 2.1); the gateway's encoder follows OpenAI.
    assert json_body({"x": 0.000015598027633743823}) == b'{\n  "x": 0.000015598027633743823\n}\n'


def test_echo_stream_layout(gateway):
    r = post(gateway, {"model": "echo", "messages": [HI], "stream": True,
                       "stream_options": {"include_usage": True}})
    body = r.raw.read()
    events = body.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    for event, chunk in zip(events, chunks):
        assert event == b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode()
        assert list(chunk)[:4] == ["id", "object", "created", "model"]
        assert list(chunk)[-2:] == ["choices", "usage"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[1]["choices"][0]["delta"] == {"content": "hi"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 11
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", chunks[0]["id"])
    assert len({c["id"] for c in chunks}) == 1


def test_echo_stream_without_include_usage_has_no_usage_key(gateway):
    body = post(gateway, {"model": "echo", "messages": [HI], "stream": True}).raw.read()
    assert b'"usage"' not in body and body.endswith(b"data: [DONE]\n\n")


def test_echo_json_layout(gateway):
    r = post(gateway, {"model": "echo", "messages": [HI]})
    body = r.raw.read()
    obj = json.loads(body)
    assert body == (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
    assert list(obj) == ["id", "object", "created", "model", "choices", "usage", "system_fingerprint"]
    assert list(obj["choices"][0]) == ["index", "message", "logprobs", "finish_reason"]
    assert list(obj["choices"][0]["message"]) == ["role", "content", "refusal", "annotations"]
    assert r.headers["content-type"] == "application/json"
