"""OpenTelemetry tracing (issue 13, item 1), end to end: the real gateway under
gunicorn exports OTLP/HTTP to a receiver on 127.0.0.1 that decodes the protobuf
payloads (tests/fakes/otlp_receiver.py); the openai SDK is the client; the fake
upstreams show what the gateway propagated."""
import os
import subprocess
import sys
import time

import openai
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import flaky_upstream, openai_upstream, otlp_receiver
from tests.fakes.paced_upstream import PacedUpstream
from tests.fakes.otlp_receiver import tree
from tests.gateway import ROOT, free_port
from tests.log import poll_rows

HI = [{"role": "user", "content": "hi there"}]
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
CONFIG = """
[providers.flaky]
type = "openai"
base_url = "{flaky}/v1"
retries = 2
cooldown_after = 1000

[providers.slowpoke]
type = "openai"
base_url = "{slowpoke}/v1"
retries = 0

[models."raced"]
provider = "slowpoke"
model = "gpt-4o-mini"
fallbacks = ["openai/gpt-4o-mini"]
hedge_after_ms = 100
"""


def traced_env(receiver_url: str, openai_fake, **extra) -> dict:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url, "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "switchboard-test", "OPENAI_API_KEY": "sk-test-gateway-key-0123456789",
            "OPENAI_BASE_URL": openai_fake.url + "/v1", **extra}


@pytest.fixture(scope="module")
def receiver():
    server = otlp_receiver.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def flaky():
    server = flaky_upstream.start()
    yield server
    server.server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def slowpoke():
    server = PacedUpstream(openai_upstream.handle)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(receiver, flaky, slowpoke, openai_fake, tmp_path_factory):
    from tests.gateway import Gateway
    tmp = tmp_path_factory.mktemp("tracing")
    (tmp / "gateway.toml").write_text(CONFIG.format(flaky=flaky.server.url, slowpoke=slowpoke.url))
    gateway = Gateway(traced_env(receiver.url, openai_fake,
                                 GATEWAY_CONFIG=str(tmp / "gateway.toml"))).start(tmp)
    yield gateway
    gateway.stop()


def sdk(gw, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0,
                         default_headers=headers or None)


def upstream_with(fake, trace_id: str):
    """The upstream requests that carried a traceparent of this trace."""
    return [r for r in list(fake.requests) if r.headers.get("traceparent", "").split("-")[1:2] == [trace_id]]


def access_line(gw, request_id: str) -> str:
    """The access line of a request (written at the end of the loop turn that ends it)."""
    for _ in range(100):
        found = [line for line in gw.logs().splitlines()
                 if f'"request_id":"{request_id}"' in line and '"msg":"request"' in line]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def check_genai(span, model: str, provider: str) -> None:
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.provider.name"] == provider
    assert a["server.address"] == "127.0.0.1" and isinstance(a["server.port"], int)


def test_a_streamed_call_is_a_server_span_with_its_attempt(gw, receiver, openai_fake):
    with sdk(gw).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=HI, stream=True,
            stream_options={"include_usage": True}) as response:
        trace_id = response.headers["x-trace-id"]
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    root = tree(receiver.trace(trace_id, 2))
    assert (root.name, root.kind, root.parent_id, root.status) == ("chat gpt-4o-mini", "SERVER", "", "UNSET")
    check_genai(root, "gpt-4o-mini", "openai")
    a = root.attributes
    usage = chunks[-1].usage
    assert a["gen_ai.response.id"] == chunks[0].id
    assert a["gen_ai.response.model"] == chunks[0].model
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.request.stream"] is True and a["http.response.status_code"] == 200
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 10
    assert a["switchboard.request_id"] == request_id
    assert "gen_ai.input.messages" not in a  # content only when asked
    assert root.resource["service.name"] == "switchboard-test"
    [attempt] = root.children
    assert (attempt.name, attempt.kind) == ("chat gpt-4o-mini", "CLIENT")
    check_genai(attempt, "gpt-4o-mini", "openai")
    assert attempt.attributes["switchboard.attempt"] == 1
    assert "gen_ai.usage.output_tokens" not in attempt.attributes  # the answer's are the request's
    assert attempt.end_ns >= attempt.start_ns >= root.start_ns
    [seen] = upstream_with(openai_fake, trace_id)
    version, trace, parent, flags = seen.headers["traceparent"].split("-")
    assert (version, trace, parent) == ("00", trace_id, attempt.span_id)
    assert int(flags, 16) & 1  # sampled


def test_a_hedged_call_has_a_span_per_raced_attempt(gw, receiver, slowpoke):
    slowpoke.pace(3.0)
    raw = sdk(gw).chat.completions.with_raw_response.create(model="raced", messages=HI,
                                                          stream=True)
    trace_id = raw.headers["x-trace-id"]
    assert list(raw.parse())
    root = tree(receiver.trace(trace_id, 3))
    raced = {span.attributes["gen_ai.provider.name"]: span for span in root.children}
    assert set(raced) == {"slowpoke", "openai"}
    lost, won = raced["slowpoke"], raced["openai"]
    assert lost.status == "ERROR" and lost.attributes["error.type"] == "hedge_lost"
    assert won.status == "UNSET" and won.start_ns > lost.start_ns
    assert root.attributes["gen_ai.provider.name"] == "openai" and root.status == "UNSET"


def test_the_trace_id_is_in_the_header_the_row_and_the_access_line(gw):
    raw = sdk(gw).chat.completions.with_raw_response.create(model="echo", messages=HI)
    trace_id, request_id = raw.headers["x-trace-id"], raw.headers["x-request-id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    [row] = poll_rows(gw, "SELECT trace_id FROM completions WHERE request_id = ?", (request_id,))
    assert row["trace_id"] == trace_id
    assert f'"trace_id":"{trace_id}"' in access_line(gw, request_id)


def test_a_retried_call_has_one_span_per_attempt(gw, receiver, flaky):
    raw = sdk(gw).chat.completions.with_raw_response.create(model="flaky/flaky-1-traced",
                                                            messages=HI)
    trace_id, request_id = raw.headers["x-trace-id"], raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content
    root = tree(receiver.trace(trace_id, 3))
    assert root.name == "chat flaky/flaky-1-traced" and root.status == "UNSET"
    first, second = root.children
    assert [first.kind, second.kind] == ["CLIENT", "CLIENT"]
    for n, attempt in enumerate((first, second), 1):
        check_genai(attempt, "flaky-1-traced", "flaky")
        assert attempt.attributes["switchboard.attempt"] == n
    assert first.status == "ERROR" and first.attributes["http.response.status_code"] == 500
    assert first.attributes["error.type"]
    assert second.status == "UNSET" and "error.type" not in second.attributes
    assert first.end_ns <= second.start_ns  # the backoff lies between them
    sent = upstream_with(flaky.server, trace_id)
    assert [r.headers["traceparent"].split("-")[2] for r in sent] == [first.span_id, second.span_id]
    failed = poll_rows(gw, "SELECT trace_id FROM completions WHERE request_id = ?",
                       (f"{request_id}.1",))
    assert failed[0]["trace_id"] == trace_id  # the failed attempt's row is in the trace too


def test_a_stream_cut_after_its_first_byte_is_an_error_span(gw, receiver):
    with sdk(gw).chat.completions.with_streaming_response.create(
            model="flaky/reset", messages=HI, stream=True) as response:
        trace_id = response.headers["x-trace-id"]
        with pytest.raises(openai.APIError):
            list(response.parse())
    root = tree(receiver.trace(trace_id, 2))
    [attempt] = root.children
    assert root.status == attempt.status == "ERROR"
    assert root.attributes["error.type"] == attempt.attributes["error.type"] == "upstream_error"
    assert root.attributes["http.response.status_code"] == 200  # the answer had begun


def test_a_compare_is_a_span_per_model_call_and_attempt(gw, receiver):
    response = requests.post(gw.url + "/v1/compare", timeout=30,
                             json={"models": ["gpt-4o-mini", "echo"], "messages": HI})
    assert response.status_code == 200
    trace_id, request_id = response.headers["x-trace-id"], response.headers["x-request-id"]
    root = tree(receiver.trace(trace_id, 5))
    assert (root.name, root.kind) == ("POST /v1/compare", "SERVER")
    assert root.attributes["http.route"] == "/v1/compare"
    calls = sorted(root.children, key=lambda s: s.attributes["switchboard.request_id"])
    assert [c.attributes["switchboard.request_id"] for c in calls] == [f"{request_id}-0",
                                                                       f"{request_id}-1"]
    assert [(c.name, c.kind) for c in calls] == [("chat gpt-4o-mini", "INTERNAL"),
                                                 ("chat echo", "INTERNAL")]
    for call, provider in zip(calls, ("openai", "echo")):
        [attempt] = call.children
        assert (attempt.kind, attempt.attributes["gen_ai.provider.name"]) == ("CLIENT", provider)
        assert call.attributes["gen_ai.usage.output_tokens"] > 0
    check_genai(calls[0], "gpt-4o-mini", "openai")


def test_a_chain_is_a_span_per_step(gw, receiver):
    response = requests.post(gw.url + "/v1/chain", timeout=30, json={
        "steps": [{"model": "echo"}, {"model": "gpt-4o-mini"}], "messages": HI})
    assert response.status_code == 200
    root = tree(receiver.trace(response.headers["x-trace-id"], 5))
    assert root.name == "POST /v1/chain"
    assert sorted(c.name for c in root.children) == ["chat echo", "chat gpt-4o-mini"]
    assert all(len(c.children) == 1 for c in root.children)


def test_the_clients_traceparent_continues_its_trace_upstream(gw, receiver, openai_fake):
    client = sdk(gw, traceparent=f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01", tracestate="vendor=abc")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert raw.headers["x-trace-id"] == CLIENT_TRACE
    spans = receiver.trace(CLIENT_TRACE, 2)
    root = next(s for s in spans if s.kind == "SERVER" and s.attributes.get(
        "switchboard.request_id") == raw.headers["x-request-id"])
    assert root.parent_id == CLIENT_PARENT
    seen = [r for r in upstream_with(openai_fake, CLIENT_TRACE)
            if r.headers["traceparent"].split("-")[2] in {c.span_id for c in spans}]
    assert seen and seen[-1].headers["tracestate"] == "vendor=abc"


@pytest.mark.parametrize("traceparent", ["00-zz-yy-01", "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
                                         "ff-" + CLIENT_TRACE + "-" + CLIENT_PARENT + "-01"])
def test_a_bad_traceparent_starts_a_new_trace(gw, receiver, traceparent):
    raw = sdk(gw, traceparent=traceparent).chat.completions.with_raw_response.create(
        model="echo", messages=HI)
    trace_id = raw.headers["x-trace-id"]
    assert trace_id not in (CLIENT_TRACE, "0" * 32)
    assert tree(receiver.trace(trace_id, 2)).parent_id == ""


def test_client_values_in_spans_are_bounded(gw, receiver):
    model = "m" * 5000 + "\u00e9"
    raw = sdk(gw).chat.completions.with_raw_response.create(model=model, messages=HI)
    spans = receiver.trace(raw.headers["x-trace-id"], 2)
    assert spans and all(len(s.name) <= 300 for s in spans)
    for span in spans:
        assert all(len(v) <= 256 for v in span.attributes.values() if isinstance(v, str))
    assert spans[0].attributes["gen_ai.request.model"] == "m" * 256


def test_a_refused_call_is_traced_with_its_error(gw, receiver):
    response = requests.post(gw.url + "/v1/chat/completions", timeout=10, data=b"{not json")
    assert response.status_code == 400
    [root] = receiver.trace(response.headers["x-trace-id"], 1)
    assert root.attributes["error.type"] == "invalid_json"
    assert root.attributes["http.response.status_code"] == 400
    assert root.status == "UNSET"  # a client's mistake is not the gateway's error


# what a header value may hold (DEL is a control character the gateway refuses, with a 400)
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")


@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traceparent=st.text(HEADER_CHARS, max_size=80).map(str.lstrip),
       tracestate=st.text(HEADER_CHARS, max_size=600).map(str.lstrip))
def test_any_trace_headers_are_never_a_5xx(gw, traceparent, tracestate):
    response = requests.post(gw.url + "/v1/chat/completions", timeout=10,
                             json={"model": "echo", "messages": HI},
                             headers={"traceparent": traceparent.encode("latin-1"),
                                      "tracestate": tracestate.encode("latin-1")})
    assert response.status_code == 200 and len(response.headers["x-trace-id"]) == 32


def test_content_is_captured_only_when_asked_and_redacted(start_gateway, receiver, openai_fake):
    gw = start_gateway(traced_env(receiver.url, openai_fake,
                                  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"))
    secret = "mail me at someone@example.com, key sk-abcdefghijklmnop123456"
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": secret}])
    root = tree(receiver.trace(raw.headers["x-trace-id"], 2))
    said = root.attributes["gen_ai.input.messages"]
    assert "[email]" in said and "someone@example.com" not in said and "abcdefghijklmnop" not in said
    assert '"role":"user"' in said
    answer = raw.parse().choices[0].message.content
    assert answer[:20] in root.attributes["gen_ai.output.messages"]
    assert "gen_ai.input.messages" not in root.children[0].attributes


@pytest.mark.parametrize("collector", ["refused", "hanging"])
def test_a_dead_collector_neither_fails_nor_holds_requests(start_gateway, openai_fake, collector):
    hanging = otlp_receiver.hanging()
    url = hanging.url if collector == "hanging" else f"http://127.0.0.1:{free_port()}"
    try:
        # a batch per span and an export that would wait 30 s: were exports on the
        # request path, the client's 5 s limit would fail the calls below
        gw = start_gateway(traced_env(url, openai_fake, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1",
                                      OTEL_EXPORTER_OTLP_TIMEOUT="30"))
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=5)
        for _ in range(20):
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
            assert raw.parse().choices[0].message.content and raw.headers["x-trace-id"]
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        assert [c for c in stream if c.choices and c.choices[0].finish_reason]
    finally:
        hanging.close()


def test_spans_are_flushed_at_graceful_shutdown(start_gateway, receiver, openai_fake):
    gw = start_gateway(traced_env(receiver.url, openai_fake, OTEL_BSP_SCHEDULE_DELAY="600000",
                                  GRACEFUL_TIMEOUT="10"))
    with sdk(gw) as client:  # closed: the worker waits for no open connection
        trace_id = client.chat.completions.with_raw_response.create(
            model="echo", messages=HI).headers["x-trace-id"]
    gw.stop()
    assert "Worker exiting" in gw.log_path.read_text()  # it exited by itself, not killed
    assert len(receiver.trace(trace_id, 2)) == 2


def test_tracing_off_imports_no_sdk_and_adds_nothing(gateway, openai_fake, tmp_path):
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert "x-trace-id" not in raw.headers
    assert "traceparent" not in openai_fake.last.headers
    [row] = poll_rows(gateway, "SELECT trace_id FROM completions WHERE request_id = ?",
                      (raw.headers["x-request-id"],))
    assert row["trace_id"] is None
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = ("import sys; from proxy.app import create_app; create_app(); "
              "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "DATABASE_URL": f"sqlite:///{tmp_path}/off.db"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("env, message", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_an_unsupported_exporter_stops_the_gateway_at_start(env, message):
    from tests.gateway import Gateway
    gateway = Gateway(env)
    with pytest.raises(RuntimeError, match=message):
        gateway.start()
    gateway.stop()


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),  # another program's setting: not ours to refuse
])
def test_tracing_is_on_only_when_configured(env, on):
    from proxy import tracing
    assert tracing.wanted(env) is on
