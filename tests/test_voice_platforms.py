"""Voice platforms' requests work unchanged (issue 14, item 3).

The request shapes of Vapi (custom LLM), Pipecat (OpenAI LLM service), LiveKit Agents
(openai plugin) and Deepgram's Voice Agent (think endpoint, with the headers it is
configured with) are in tests/fixtures/voice (sources in tests/fixtures/SOURCES.md).
Each goes through a real gateway, sent by the openai SDK (the platform's own fields as
`extra_body`), streamed and not, to every provider type: relayed as it came; with
`drop_params` (the named fields gone, the rest the client's bytes); with
`forward_params = "openai"` (only OpenAI's fields); to Azure; translated for Anthropic
and Bedrock, which ignore the platforms' fields and refuse, naming it, a field that
would change the answer; and to echo. Then the settings' start-up checks, the
translators' declared handling of every OpenAI field, and a bounded fuzz of extra
top-level fields."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import openai
import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import anthropic, bedrock, bedrock_agent, translate
from providers.base import Call
from proxy import forwarding
from proxy.config import Config
from proxy.forwarding import OPENAI_CHAT_FIELDS
from tests.fakes import anthropic_upstream, azure_upstream, bedrock_upstream, openai_upstream
from tests.gateway import Gateway
from tests.test_fuzz_routes import assert_no_server_error, json_values

FIXTURES = Path(__file__).parent / "fixtures"
MASTER = "sk-master-voice-0123456789abcdef"
OPENAI_KEY = "sk-test-voice-upstream-0123456789"
HI = [{"role": "user", "content": "hi"}]


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / "voice" / f"{name}.json").read_text())


DEEPGRAM = fixture("deepgram_think")
PLATFORMS = {"vapi": fixture("vapi_custom_llm"), "pipecat": fixture("pipecat_openai_llm"),
             "livekit": fixture("livekit_openai_llm"), "deepgram": DEEPGRAM["body"]}
CASES = [(platform, stream) for platform in PLATFORMS for stream in (True, False)]
VAPI_FIELDS = ("call", "phoneNumber", "customer", "metadata")
DROPPED = (*VAPI_FIELDS, "service_tier")  # the `dropping` provider's drop_params
# relayed providers: (the fake that receives their requests, the fields it must not get)
RELAYS = {"openai": ("openai", lambda name: False),
          "dropping": ("openai", set(DROPPED).__contains__),
          "spec-only": ("openai", lambda name: name not in OPENAI_CHAT_FIELDS),
          "azure": ("azure", lambda name: name not in OPENAI_CHAT_FIELDS)}
ASK_USAGE = b'{"stream_options":{"include_usage":true},'


def request(platform: str, stream: bool) -> dict:
    """The platform's request, streamed or not (not streamed as Pipecat's one-shot
    `run_inference` sends it: `stream: false` and no `stream_options`)."""
    body = {**PLATFORMS[platform], "stream": stream}
    if not stream:
        body.pop("stream_options", None)
    return body


# ---- the gateway and its upstreams -------------------------------------------------

@pytest.fixture(scope="module")
def fakes():
    servers = {"openai": openai_upstream.start(), "azure": azure_upstream.start(),
               "anthropic": anthropic_upstream.start(), "bedrock": bedrock_upstream.start()}
    yield servers
    for server in servers.values():
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("voice")
    upstream = fakes["openai"].url + "/v1"
    config = folder / "gateway.toml"
    config.write_text(f'[providers.azure]\nforward_params = "openai"\n\n'
                      f'[providers.dropping]\ntype = "openai"\nbase_url = "{upstream}"\n'
                      f"drop_params = {json.dumps(list(DROPPED))}\n\n"
                      f'[providers.spec-only]\ntype = "openai"\nbase_url = "{upstream}"\n'
                      f'forward_params = "openai"\n')
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": upstream, "GATEWAY_MASTER_KEY": MASTER,
           "GATEWAY_CONFIG": str(config), **azure_upstream.gateway_env(fakes["azure"]),
           "AZURE_OPENAI_DEPLOYED_MODELS": "",  # every model is its own deployment
           **anthropic_upstream.gateway_env(fakes["anthropic"]),
           **bedrock_upstream.gateway_env(fakes["bedrock"])}
    gateway = Gateway(env).start(folder)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw) -> str:
    """A virtual key of the gateway's: what a platform is configured with."""
    made = requests.post(gw.url + "/v1/keys", json={"name": "voice platform"}, timeout=10,
                         headers={"Authorization": f"Bearer {MASTER}"})
    assert made.status_code == 201, made.text
    return made.json()["key"]


@pytest.fixture(scope="module")
def client(gw, key):
    """The openai SDK, and every request body it sent (`sent`), byte for byte."""
    sent: list[bytes] = []
    hooks = {"request": [lambda req: sent.append(req.content)]}
    with openai.DefaultHttpxClient(event_hooks=hooks) as http:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0,
                           http_client=http) as sdk:
            yield SimpleNamespace(sdk=sdk, sent=sent)


def ask(client, body: dict, provider: str):
    """`body` through the SDK to `provider`: (the answer, the bytes the SDK sent)."""
    own = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    reply = client.sdk.chat.completions.create(
        model=body["model"], messages=body["messages"], stream=body["stream"], extra_body=own,
        extra_headers={"X-Provider": provider})
    return (streamed(reply) if body["stream"] else whole(reply)), client.sent[-1]


def streamed(chunks) -> SimpleNamespace:
    answer = SimpleNamespace(text="", calls=0, finish=None)
    for chunk in chunks:
        for choice in chunk.choices:
            answer.text += choice.delta.content or ""
            answer.calls += len(choice.delta.tool_calls or ())
            answer.finish = choice.finish_reason or answer.finish
    return answer


def whole(reply) -> SimpleNamespace:
    message = reply.choices[0].message
    return SimpleNamespace(text=message.content or "", calls=len(message.tool_calls or ()),
                           finish=reply.choices[0].finish_reason)


def assert_answered(answer) -> None:
    assert answer.finish in ("stop", "tool_calls", "length")
    assert answer.text or answer.calls


def last_body(fake) -> bytes:
    return fake.requests[-1].body


def as_relayed(sent: bytes) -> tuple[bytes, dict]:
    """What a relay holds for the client's bytes before any filter: those bytes, and
    the body; a stream that did not ask for usage asks for it (proxy/stream_usage.py,
    the body's field added last)."""
    body = json.loads(sent)
    if body.get("stream") and "stream_options" not in body:
        return ASK_USAGE + sent[1:], {**body, "stream_options": {"include_usage": True}}
    return sent, body


def expected_upstream(sent: bytes, unwanted) -> bytes:
    """The client's bytes when nothing is removed, else the fields kept, encoded once."""
    raw, body = as_relayed(sent)
    kept = {k: v for k, v in body.items() if not unwanted(k)}
    return raw if len(kept) == len(body) else orjson.dumps(kept)


# ---- relayed providers ---------------------------------------------------------------

@pytest.mark.parametrize("provider", RELAYS)
@pytest.mark.parametrize("platform, stream", CASES)
def test_relayed_providers_forward_what_their_settings_allow(client, fakes, provider, platform,
                                                            stream):
    fake_name, unwanted = RELAYS[provider]
    answer, sent = ask(client, request(platform, stream), provider)
    assert_answered(answer)
    # the SDK writes compact JSON, as orjson does: so a body re-encoded without some
    # fields holds every other field byte for byte as the client sent it
    assert orjson.dumps(json.loads(sent)) == sent
    got = last_body(fakes[fake_name])
    assert got == expected_upstream(sent, unwanted)
    assert not [name for name in json.loads(got) if unwanted(name)]


@pytest.mark.parametrize("platform, stream", CASES)
def test_without_settings_the_clients_bytes_go_upstream(client, fakes, platform, stream):
    _, sent = ask(client, request(platform, stream), "openai")
    got = last_body(fakes["openai"])
    asked_usage = stream and "stream_options" not in PLATFORMS[platform]
    assert got == (ASK_USAGE + sent[1:] if asked_usage else sent)
    if platform == "vapi":
        assert set(VAPI_FIELDS) <= json.loads(got).keys()


def test_drop_params_keeps_the_client_bytes_when_nothing_is_dropped(client, fakes):
    """LiveKit sends none of the dropped fields: its bytes go as they are."""
    _, sent = ask(client, request("livekit", stream=True), "dropping")
    assert last_body(fakes["openai"]) == sent


def test_usage_is_still_asked_for_when_fields_are_dropped(client, fakes):
    """Vapi streams without `stream_options`: the gateway asks for usage for its log and
    the client still gets exactly the chunks it would have had."""
    answer, sent = ask(client, request("vapi", stream=True), "dropping")
    assert_answered(answer)
    got = json.loads(last_body(fakes["openai"]))
    assert got["stream_options"] == {"include_usage": True}
    assert not set(DROPPED) & got.keys()


@pytest.mark.parametrize("model, provider", [("gpt-4o-mini", "dropping"),  # a field dropped
                                             ("openai/gpt-4o-mini", "openai")])  # model changed
def test_a_body_too_deep_to_encode_again_is_a_400(gw, key, fakes, model, provider):
    deep = b"[" * 300 + b"]" * 300  # orjson reads 1024 levels, writes 254
    body = b'{"model":"%s","messages":[{"role":"user","content":"hi"}],"call":{},"extra":%s}' % (
        model.encode(), deep)
    before = len(fakes["openai"].requests)
    reply = requests.post(gw.url + "/v1/chat/completions", data=body, timeout=10,
                          headers={"Authorization": f"Bearer {key}", "X-Provider": provider,
                                   "Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_value"
    assert len(fakes["openai"].requests) == before


# ---- translated providers and echo ---------------------------------------------------

@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "echo"])
@pytest.mark.parametrize("platform, stream", CASES)
def test_translated_providers_ignore_the_platform_fields(client, provider, platform, stream):
    answer, _ = ask(client, request(platform, stream), provider)
    assert_answered(answer)


def anthropic_request(fakes) -> dict:
    return fakes["anthropic"].requests[-1].json()


def converse_request(fakes) -> dict:
    return bedrock_upstream.converse_calls(fakes["bedrock"])[-1][2]


def test_livekit_reasoning_effort_becomes_anthropic_thinking(client, fakes):
    """`reasoning_effort` maps to an extended-thinking budget; `user` to metadata."""
    answer, _ = ask(client, request("livekit", stream=True), "anthropic")
    assert_answered(answer)
    sent = anthropic_request(fakes)
    assert sent["thinking"] == {"type": "enabled",
                                "budget_tokens": anthropic.THINKING_BUDGET["low"]}
    assert sent["metadata"] == {"user_id": PLATFORMS["livekit"]["user"]}
    assert not {"safety_identifier", "prompt_cache_retention", "reasoning_effort"} & sent.keys()


@pytest.mark.parametrize("provider, first_turn", [
    ("anthropic", lambda fakes: anthropic_request(fakes)["messages"][:2]),
    ("bedrock", lambda fakes: converse_request(fakes)["messages"][:2])])
def test_a_call_opened_by_the_assistant_gets_a_user_turn_first(client, fakes, provider,
                                                               first_turn):
    """Vapi's conversation starts with the assistant's greeting; Anthropic and Bedrock
    refuse a conversation that does not start with a user turn (the fakes too)."""
    ask(client, request("vapi", stream=False), provider)
    opening, greeting = first_turn(fakes)
    assert opening["role"] == "user" and greeting["role"] == "assistant"
    assert translate.OPENING_USER_TEXT in json.dumps(opening["content"])
    assert PLATFORMS["vapi"]["messages"][1]["content"] in json.dumps(greeting["content"])


MEANINGFUL = [({"n": 2}, "n"), ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
              ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
               "audio"),
              ({"modalities": ["text", "audio"]}, "modalities"),
              ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
              ({"functions": [{"name": "hang_up", "parameters": {"type": "object"}}]},
               "functions")]


@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
@pytest.mark.parametrize("extra, param", MEANINGFUL, ids=[p for _, p in MEANINGFUL])
def test_a_field_that_changes_the_answer_is_a_400_naming_it(client, fakes, provider, extra,
                                                           param):
    before = len(fakes[provider].requests)
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, {**request("pipecat", stream=True), **extra}, provider)
    assert refused.value.body["param"] == param
    assert refused.value.body["code"] == "unsupported_parameter"
    assert len(fakes[provider].requests) == before  # refused before the upstream


@pytest.mark.parametrize("module", [anthropic, bedrock, bedrock_agent],
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_translator_declares_every_openai_field_once(module):
    policy = module.POLICY
    groups = [policy.translated, policy.ignored, frozenset(policy.rejected)]
    assert frozenset().union(*groups) == OPENAI_CHAT_FIELDS
    assert sum(map(len, groups)) == len(OPENAI_CHAT_FIELDS)


# ---- Deepgram's configured headers ------------------------------------------------------

OTHER_HEADERS = {"OpenAI-Organization": "org-voice", "OpenAI-Project": "proj_voice",
                 "X-Forwarded-For": "203.0.113.7", "Cookie": "session=abc",
                 "X-Custom-Trace": "call=42; leg=a"}


def deepgram_headers(token: str) -> dict:
    return {name: value.replace("{{token}}", token) for name, value in DEEPGRAM["headers"].items()}


@pytest.mark.parametrize("provider, fake_name", [("openai", "openai"), ("azure", "azure"),
                                                 ("anthropic", "anthropic")])
def test_deepgram_headers_authenticate_and_stay_at_the_gateway(gw, key, fakes, provider,
                                                               fake_name):
    headers = {**deepgram_headers(key), **OTHER_HEADERS, "X-Provider": provider}
    reply = requests.post(gw.url + "/v1/chat/completions", json=DEEPGRAM["body"], headers=headers,
                          timeout=10)
    assert reply.status_code == 200, reply.text
    assert b"data: [DONE]" in reply.content
    upstream = fakes[fake_name].requests[-1]
    client_only = {name.lower() for name in (*DEEPGRAM["headers"], *OTHER_HEADERS)}
    assert not client_only & (set(upstream.headers) - {"authorization"})
    assert key not in json.dumps(upstream.headers) and key.encode() not in upstream.body
    assert upstream.headers.get("authorization") in (None, f"Bearer {OPENAI_KEY}")


def test_a_wrong_key_in_deepgram_headers_is_refused_as_usual(gw, fakes):
    before = len(fakes["openai"].requests)
    reply = requests.post(gw.url + "/v1/chat/completions", json=DEEPGRAM["body"], timeout=10,
                          headers={**deepgram_headers("sk-not-a-key-0123456789"),
                                   "X-Provider": "openai"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert len(fakes["openai"].requests) == before


# ---- the settings -----------------------------------------------------------------------

def config_with(tmp_path, table: str) -> Config:
    path = tmp_path / "gateway.toml"
    path.write_text(table)
    return Config.from_env({"GATEWAY_CONFIG": str(path)})


LOCAL = '[providers.x]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'


@pytest.mark.parametrize("line, named", [
    ('drop_params = "call"', "providers.x.drop_params"),
    ("drop_params = [1]", "providers.x.drop_params"),
    ('drop_params = [""]', "providers.x.drop_params"),
    ('drop_params = ["call", "messages"]', "providers.x.drop_params"),
    ('drop_params = { call = true }', "providers.x.drop_params"),
    ('forward_params = "spec"', "providers.x.forward_params"),
    ("forward_params = true", "providers.x.forward_params"),
    ('forward_params = ["openai"]', "providers.x.forward_params")])
def test_a_wrong_setting_is_a_startup_error_naming_it(tmp_path, line, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        config_with(tmp_path, f"{LOCAL}{line}\n")


@pytest.mark.parametrize("table", ['[providers.openai]\ndrop_params = "call"\n',
                                   '[providers.azure]\nforward_params = "none"\n'])
def test_a_presets_settings_are_checked_too(tmp_path, table):
    with pytest.raises(ValueError, match=r"providers\.(openai|azure)\."):
        config_with(tmp_path, table)


@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "bedrock-agent", "echo"])
def test_translated_providers_refuse_the_settings(tmp_path, provider):
    """They read only the fields they know: a filter there would be a silent no-op."""
    with pytest.raises(ValueError, match=f"providers.{provider}: drop_params"):
        config_with(tmp_path, f'[providers.{provider}]\ndrop_params = ["call"]\n')


def test_settings_reach_the_provider_spec(tmp_path):
    config = config_with(tmp_path, f'{LOCAL}drop_params = ["call", "customer"]\n'
                                   'forward_params = "openai"\n')
    spec = config.providers["x"]
    assert (spec.drop_params, spec.forward_params) == (("call", "customer"), "openai")
    assert (config.providers["openai"].drop_params,
            config.providers["openai"].forward_params) == ((), "all")


def test_a_wrong_setting_stops_the_gateway(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(f"{LOCAL}drop_params = \"call\"\n")
    with pytest.raises(RuntimeError, match=r"providers\.x\.drop_params"):
        Gateway({"GATEWAY_CONFIG": str(path)}).start(tmp_path)


def test_without_settings_a_provider_sends_the_clients_bytes_as_they_are():
    """The hot path: no filter object, the provider calls `Call.body_bytes` itself."""
    assert forwarding.writer((), "all") is Call.body_bytes
    raw = b'{"model":"m","messages":[],"call":{}}'
    call = Call(body=json.loads(raw), raw=raw, model="m", stream=False, include_usage=False,
                request_id="req_1")
    assert forwarding.writer(("customer",), "all")(call) is raw  # nothing to drop
    assert forwarding.writer(("call",), "all")(call) == b'{"model":"m","messages":[]}'
    assert call.body == json.loads(raw)  # a fallback to another provider sees it all


# ---- the list of OpenAI's fields -----------------------------------------------------

def properties(schemas: dict, schema: dict) -> set[str]:
    """Top-level property names of an OpenAPI schema, through `allOf` and `$ref`."""
    if "$ref" in schema:
        return properties(schemas, schemas[schema["$ref"].rsplit("/", 1)[-1]])
    names = set(schema.get("properties", ()))
    for part in schema.get("allOf", ()):
        names |= properties(schemas, part)
    return names


def test_the_field_list_is_openais_chat_completion_request():
    schemas = json.loads((FIXTURES / "openai-openapi" / "openapi.chat.json").read_text())[
        "components"]["schemas"]
    assert OPENAI_CHAT_FIELDS == properties(schemas, schemas["CreateChatCompletionRequest"])


# ---- fuzz: extra top-level fields -----------------------------------------------------------

# vendor fields the platforms send, OpenAI fields no translator reads, and any name
VENDOR_NAMES = sorted({*VAPI_FIELDS, "top_k", "think", "extra_content", "assistant", "timestamp",
                       *translate.SERVICE_HINTS})
extra_names = st.one_of(st.sampled_from(VENDOR_NAMES), st.text(min_size=1, max_size=8)).filter(
    lambda name: name not in OPENAI_CHAT_FIELDS - set(translate.SERVICE_HINTS)
    and name != "provider")
FUZZED = ["openai", "dropping", "spec-only", "anthropic", "bedrock", "echo"]


@pytest.mark.parametrize("provider", FUZZED)
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(extra=st.dictionaries(extra_names, json_values, min_size=1, max_size=3),
       stream=st.booleans(), ascii_only=st.booleans())
def test_extra_fields_never_cause_a_server_error(gw, key, fakes, provider, extra, stream,
                                                 ascii_only):
    body = {"model": "gpt-4o-mini", "messages": HI, "stream": stream, **extra}
    reply = requests.post(gw.url + "/v1/chat/completions", timeout=10,
                          data=json.dumps(body, ensure_ascii=ascii_only).encode(),
                          headers={"Authorization": f"Bearer {key}", "X-Provider": provider,
                                   "Content-Type": "application/json"})
    assert_no_server_error(reply)
    if provider in RELAYS and reply.status_code == 200:
        fake_name, unwanted = RELAYS[provider]
        assert not [name for name in json.loads(last_body(fakes[fake_name])) if unwanted(name)]
