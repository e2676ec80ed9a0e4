"""`bedrock-agent` (InvokeAgent through boto3) against the fake agent runtime,
through a real gateway with the official openai SDK."""
from __future__ import annotations

import json
import re

import openai
import pytest

from providers.base import Call
from providers.bedrock_agent import derived_session, session_id
from tests.fakes import bedrock_upstream as fake
from tests.gateway import Gateway

SESSION = re.compile(r"[0-9a-zA-Z._:-]{2,100}")
SYSTEM = {"role": "system", "content": "You are the booking line of Hotel Example."}


@pytest.fixture(scope="module")
def upstream():
    server = fake.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    gateway = Gateway({**fake.gateway_env(upstream), "LOG_LEVEL": "DEBUG"})
    gateway.start(tmp_path_factory.mktemp("bedrock-agent"))
    yield gateway
    gateway.stop()


def ask(client, messages, **kwargs):
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return client.chat.completions.create(model="bedrock-agent/agent", messages=messages, **kwargs)


def last_agent_call(upstream):
    return fake.agent_calls(upstream)[-1]


def test_answer_and_usage_from_traces(client, upstream, gw):
    reply = ask(client, [SYSTEM, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "Find the sum of 10 and 20"}])
    assert reply.choices[0].message.content == "The sum of 10 and 20 is 30."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "agent"
    # the sum over the two modelInvocationOutput traces
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (728 + 915, 165 + 56)
    call = last_agent_call(upstream)
    assert (call["agent"], call["alias"]) == ("FAKEAGENT1", "FAKEALIAS1")
    assert call["body"] == {"inputText": "Find the sum of 10 and 20", "enableTrace": True}
    assert SESSION.fullmatch(call["session"])


def test_traces_logged_at_debug_and_scrubbed(client, gw):
    ask(client, "Find the sum of 10 and 20")
    traces = [json.loads(line) for line in gw.logs().splitlines()
              if '"logger":"switchboard.bedrock_agent"' in line]
    assert traces and traces[0]["msg"] == "agent trace"
    assert any("orchestrationTrace" in t["trace"] for t in traces)
    assert "503561449716" not in gw.logs()  # the account id inside the captured ARNs


def test_streamed_in_word_sized_pieces_with_estimated_usage(client, upstream):
    stream = ask(client, "answer in many words", stream=True,
                 stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert text == ("The agent answers in several pieces: one two three four five "
                    "six seven eight nine ten. Caf\u00e9 au lait.")
    assert len(pieces) > 4 and max(len(p) for p in pieces) <= len(" pieces:")
    assert finish == "stop"
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0  # counted, never -1


def test_chunk_only_stream(client):
    reply = ask(client, "no trace please")
    assert reply.choices[0].message.content == \
        "Sorry, I don't have enough information to answer that."
    assert reply.usage.completion_tokens > 0


def test_session_stable_across_turns_without_session_header(client, upstream):
    first = [SYSTEM, {"role": "user", "content": "I want a room for Friday."}]
    ask(client, first)
    one = last_agent_call(upstream)["session"]
    ask(client, [*first, {"role": "assistant", "content": "For how many people?"},
                 {"role": "user", "content": "Two."}])
    two = last_agent_call(upstream)
    assert two["session"] == one and two["body"]["inputText"] == "Two."
    ask(client, [SYSTEM, {"role": "user", "content": "Cancel my booking."}])
    assert last_agent_call(upstream)["session"] != one


def test_x_session_id_honoured(client, upstream):
    ask(client, "hello", extra_headers={"X-Session-Id": "call-2024.05:abc_1"})
    assert last_agent_call(upstream)["session"] == "call-2024.05:abc_1"
    ask(client, "hello", extra_headers={"X-Session-Id": "not valid / for agents"})
    session = last_agent_call(upstream)["session"]
    assert SESSION.fullmatch(session) and session.startswith("sess-")


def test_session_rules_unit():
    def call(messages, session=None, user=None):
        body = {"model": "a", "messages": messages, **({"user": user} if user else {})}
        return Call(body=body, raw=None, model="a", stream=False, include_usage=False,
                    request_id="r", session_id=session)
    turn1 = [SYSTEM, {"role": "user", "content": "hi"}]
    turn2 = [*turn1, {"role": "assistant", "content": "yes?"}, {"role": "user", "content": "x"}]
    assert session_id(call(turn1)) == session_id(call(turn2)) == derived_session(call(turn1).body)
    assert session_id(call(turn1, user="caller-1")) != session_id(call(turn1, user="caller-2"))
    assert session_id(call(turn1, session="x" * 101)).startswith("sess-")
    assert SESSION.fullmatch(session_id(call(turn1)))


def test_throttled_agent_is_429(client):
    with pytest.raises(openai.RateLimitError):
        ask(client, "throttle me")
    with pytest.raises(openai.RateLimitError):
        ask(client, "throttle me", stream=True)


def test_exception_in_agent_stream(client):
    # the exception arrives before any text: still a real HTTP error, streaming or not
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "stream error")
    assert "rate is too high" in info.value.message
    with pytest.raises(openai.RateLimitError):
        ask(client, "stream error", stream=True)


def test_user_message_required(client):
    with pytest.raises(openai.BadRequestError):
        ask(client, [{"role": "user", "content": "   "}])


def test_model_name_alone_selects_the_agent(client, upstream):
    reply = client.chat.completions.create(model="bedrock-agent",
                                           messages=[{"role": "user", "content": "no trace"}])
    assert reply.model == "bedrock-agent"
    assert last_agent_call(upstream)["body"]["inputText"] == "no trace"
