"""Metric labels are bounded: model names, error types and statuses that come
from clients or upstreams, and that nothing configured names, fold into one
value, so /metrics stays the same size whatever clients send."""
import json
import uuid

import pytest
import requests

from tests.fakes.server import FakeServer, Reply
from tests.gateway import Gateway
from tests.log import poll
from tests.log.test_metrics_and_content import scrape, total

HI = [{"role": "user", "content": "hi there"}]
NAMES = 150  # random model names per provider

CONFIG = """
[providers.wild]                 # an upstream that fails as asked, with any status and code
type = "openai"
base_url = "{wild}/v1"
retries = 0
cooldown_after = 100000
"""


def _wild(request) -> Reply:
    """`fail-<status>-<code>`: that status, with `code` (and `type`) as the error."""
    _, status, code = request.json()["model"].split("-", 2)
    error = {"error": {"message": "failed as asked", "type": code, "param": None, "code": code}}
    return Reply(int(status), {"Content-Type": "application/json"}, json.dumps(error).encode())


@pytest.fixture(scope="module")
def wild():
    with FakeServer(_wild) as server:
        yield server


@pytest.fixture(scope="module")
def gw(openai_fake, wild, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    (tmp / "gateway.toml").write_text(CONFIG.format(wild=wild.url))
    gateway = Gateway({"OPENAI_API_KEY": "sk-labels-0123456789",
                       "OPENAI_BASE_URL": openai_fake.url + "/v1",
                       "GATEWAY_CONFIG": str(tmp / "gateway.toml")}, workers=2).start(tmp)
    yield gateway
    gateway.stop()


def chat(session: requests.Session, gw, model: str) -> int:
    return session.post(gw.url + "/v1/chat/completions", timeout=10,
                        json={"model": model, "messages": HI}).status_code


def label_values(samples: dict, name: str, label: str, **where) -> dict:
    """{label value: summed sample value} over the series of `name` matching `where`."""
    values: dict = {}
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample == name and all(labels.get(k) == v for k, v in where.items()):
            values[labels[label]] = values.get(labels[label], 0) + value
    return values


def settled(gw, minimums: dict, **where) -> dict:
    """A scrape once each metric of `minimums` (summed over `where`) reached its
    minimum: rows reach the metrics through the log writer, then each worker's pump."""
    return poll(lambda: scrape(gw), timeout=10, until=lambda samples: all(
        total(samples, name, **where) >= minimum for name, minimum in minimums.items()))


def test_random_model_names_share_one_label_and_configured_ones_keep_theirs(gw):
    with requests.Session() as session:
        for provider_prefix in ("", "openai/"):  # echo (the default) and openai accept any name
            for _ in range(NAMES):
                assert chat(session, gw, provider_prefix + "random-" + uuid.uuid4().hex) == 200
        assert chat(session, gw, "echo") == 200
        assert chat(session, gw, "openai/gpt-4o-mini") == 200
        for day in range(1, 6):  # snapshots of a priced model: labelled as its price entry
            assert chat(session, gw, f"openai/gpt-4o-mini-2099010{day}") == 200
    samples = settled(gw, {"switchboard_requests_total": 2 * NAMES + 7}, status="200")
    echo = label_values(samples, "switchboard_requests_total", "gen_ai_request_model",
                        gen_ai_provider_name="echo")
    openai = label_values(samples, "switchboard_requests_total", "gen_ai_request_model",
                          gen_ai_provider_name="openai")
    assert echo == {"echo": 1, "other": NAMES}
    assert openai == {"gpt-4o-mini": 6, "other": NAMES}
    # every metric labelled by model holds the same few names
    models = {dict(labels).get("gen_ai_request_model") for (_, labels) in samples}
    assert models - {None} <= {"echo", "gpt-4o-mini", "other"}


def test_upstream_error_types_and_statuses_are_folded(gw):
    sent = {"wild/fail-400-invalid_value": 400, "wild/fail-429-rate_limit_exceeded": 429}
    sent.update({f"wild/fail-{status}-{uuid.uuid4().hex}": status
                 for status in (400, 460, 599) for _ in range(20)})
    with requests.Session() as session:
        for model, status in sent.items():
            assert chat(session, gw, model) == status
    samples = settled(gw, dict.fromkeys(("switchboard_requests_total", "switchboard_upstream_errors_total",
                                         "gen_ai_client_operation_duration_seconds_count"), len(sent)),
                      gen_ai_provider_name="wild")
    errors = label_values(samples, "switchboard_upstream_errors_total", "error_type",
                          gen_ai_provider_name="wild")
    assert errors == {"invalid_value": 1, "rate_limit_exceeded": 1, "other": 60}
    statuses = label_values(samples, "switchboard_requests_total", "status",
                            gen_ai_provider_name="wild")
    assert statuses == {"400": 21, "429": 1, "4xx": 20, "5xx": 20}
    durations = label_values(samples, "gen_ai_client_operation_duration_seconds_count",
                             "error_type", gen_ai_provider_name="wild")
    assert set(durations) == {"invalid_value", "rate_limit_exceeded", "other"}
