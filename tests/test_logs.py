"""LOG_FORMAT=json|text (issue 13, item 5): the access line and the application's
lines in either format, each line logged while a request is served carrying its
request id and trace id. The line logged inside a request here is the rate
limiter's warning about its store (a Redis nobody listens on)."""
import json
import re

import openai
import pytest

from tests.fakes import otlp_receiver
from tests.gateway import Gateway, free_port

HI = [{"role": "user", "content": "hi there"}]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE = re.compile(rf"^({STAMP}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (switchboard\.[a-z_.]+) (.*)$")
FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)')
STORE_FAILED = "rate limiter store failed"


@pytest.fixture(scope="module")
def receiver():
    server = otlp_receiver.start()
    yield server
    server.close()


def start(tmp_path, log_format: str | None, receiver=None) -> Gateway:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "RATE_LIMIT": "1000rpm"}
    if log_format:
        env["LOG_FORMAT"] = log_format
    if receiver is not None:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
    return Gateway(env).start(tmp_path)


def call(gw: Gateway, model: str = "echo"):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    return client.chat.completions.with_raw_response.create(model=model, messages=HI)


def fields(text: str) -> dict:
    """`key=value ...` as a dict, values JSON-decoded when quoted; the whole text
    must be such fields (nothing a value holds can make another one)."""
    found = FIELD.findall(text)
    assert " ".join(f"{k}={v}" for k, v in found) == text, text
    return {k: json.loads(v) if v.startswith('"') else v for k, v in found}


# each test reads a gateway's log once it has stopped: every line is written then

def text_lines(gw: Gateway) -> list[tuple[str, str, dict]]:
    """(level, logger, fields) of each of the gateway's own lines (gunicorn's are its own)."""
    parsed = []
    for line in gw.log_path.read_text().splitlines():
        if " switchboard." in line and not line.startswith("["):
            match = TEXT_LINE.match(line)
            assert match, line
            parsed.append((match[2], match[3], fields(match[4])))
    return parsed


def json_lines(gw: Gateway) -> list[dict]:
    return [json.loads(line) for line in gw.log_path.read_text().splitlines() if line.startswith("{")]


def test_text_lines_carry_the_request_and_trace_ids(tmp_path, receiver):
    gw = start(tmp_path, "text", receiver)
    try:
        raw = call(gw)
        request_id, trace_id = raw.headers["x-request-id"], raw.headers["x-trace-id"]
        gw.stop()
        lines = text_lines(gw)
    finally:
        gw.stop()
    [access] = [f for level, logger, f in lines
                if logger == "switchboard.access" and f.get("request_id") == request_id]
    assert access["msg"] == "request" and access["status"] == "200"
    assert access["trace_id"] == trace_id and access["path"] == "/v1/chat/completions"
    [warning] = [f for level, _, f in lines if f["msg"].startswith(STORE_FAILED)]
    assert (warning["request_id"], warning["trace_id"]) == (request_id, trace_id)
    assert any(f["msg"].startswith("GATEWAY_MASTER_KEY is not set") for _, _, f in lines)


def test_a_text_value_cannot_fake_a_field(tmp_path):
    gw = start(tmp_path, "text")
    try:
        raw = call(gw, model='evil model" status=500 level=ERROR')
        gw.stop()
        lines = text_lines(gw)
    finally:
        gw.stop()
    [access] = [f for _, logger, f in lines if f.get("request_id") == raw.headers["x-request-id"]
                and logger == "switchboard.access"]
    assert access["status"] == "200" and access["model"] == 'evil model" status=500 level=ERROR'


def test_json_lines_carry_the_request_id_and_the_trace_id_when_traced(tmp_path, receiver):
    traced = start(tmp_path, None, receiver)
    plain = start(tmp_path, "json")
    try:
        raws = [call(gw) for gw in (traced, plain)]
    finally:
        for gw in (traced, plain):
            gw.stop()
    for gw, raw in zip((traced, plain), raws):
        lines = json_lines(gw)
        [warning] = [line for line in lines if line["msg"].startswith(STORE_FAILED)]
        assert warning["request_id"] == raw.headers["x-request-id"]
        [access] = [line for line in lines if line["logger"] == "switchboard.access"
                    and line["path"] == "/v1/chat/completions"]
        for line in (warning, access):
            assert line["request_id"] == raw.headers["x-request-id"]
            assert line.get("trace_id") == raw.headers.get("x-trace-id")
    assert raws[0].headers["x-trace-id"] and "x-trace-id" not in raws[1].headers


def test_an_unknown_log_format_stops_the_gateway(tmp_path):
    gateway = Gateway({"LOG_FORMAT": "xml"})
    with pytest.raises(RuntimeError, match="LOG_FORMAT must be one of json, text"):
        gateway.start(tmp_path)
    gateway.stop()
