"""Hedged requests (`hedge_after_ms`, `max_hedges`, issue 14): when the first token is
late, the next route races the first attempt; the first content token wins, the
loser's connection is closed and it is logged (estimated, priced) as a hedge loser;
the client gets exactly one well-formed answer."""
from types import SimpleNamespace

import gevent
import openai
import orjson
import pytest
import requests

from providers.base import Call, Finish, TextDelta
from proxy.errors import UpstreamError
from proxy.routing import hedge
from proxy.routing.breaker import Breaker
from proxy.routing.latency import LatencyPolicy
from proxy.routing.selection import Route
from tests.fakes import anthropic_upstream, openai_upstream
from tests.fakes.paced_upstream import PacedUpstream
from tests.gateway import Gateway

HI = [{"role": "user", "content": "say hi"}]
CONFIG = """
[providers.first]
type = "openai"
base_url = "{first}/v1"
retries = 0

[providers.second]
type = "openai"
base_url = "{second}/v1"
retries = 0

[providers.only]
type = "openai"
base_url = "{only}/v1"
retries = 0

[models."race"]
provider = "first"
model = "gpt-4o-mini"
fallbacks = ["second/gpt-4o-mini"]
hedge_after_ms = 150
max_hedges = 1

[models."race-claude"]
provider = "first"
model = "gpt-4o-mini"
fallbacks = ["anthropic/claude-sonnet-4-5"]
hedge_after_ms = 150

[models."race-failing"]
provider = "first"
model = "gpt-4o-mini"
fallbacks = ["second/error-500"]
hedge_after_ms = 150

[models."solo"]
provider = "only"
model = "gpt-4o-mini"
hedge_after_ms = 150
max_hedges = 2
"""


@pytest.fixture(scope="module")
def fakes():
    made = {name: PacedUpstream(openai_upstream.handle) for name in ("first", "second", "only")}
    made["anthropic"] = PacedUpstream(anthropic_upstream.handle)
    yield made
    for fake in made.values():
        fake.close()


def start(fakes, tmp, **env):
    (tmp / "gateway.toml").write_text(CONFIG.format(**{k: f.url for k, f in fakes.items()}))
    return Gateway({"GATEWAY_CONFIG": str(tmp / "gateway.toml"),
                    "ANTHROPIC_API_KEY": anthropic_upstream.API_KEY,
                    "ANTHROPIC_BASE_URL": fakes["anthropic"].url, **env}).start(tmp)


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory):
    gateway = start(fakes, tmp_path_factory.mktemp("hedging"))
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def one_stream(body: bytes) -> list[dict]:
    """The chunks of a raw SSE body that is one well-formed stream: `data:` events
    only, one id and one `created`, the role first, one finish, `[DONE]` last."""
    events = body.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") for e in events[:-1])
    chunks = [orjson.loads(e[6:]) for e in events[:-2]]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0].get("role") == "assistant" and sum("role" in d for d in deltas) == 1
    assert sum(1 for c in chunks for ch in c["choices"] if ch.get("finish_reason")) == 1
    return chunks


def text_of(chunks) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def post(gw, **body):
    return requests.post(gw.url + "/v1/chat/completions", timeout=20,
                         json={"messages": HI, **body})


def test_the_faster_route_wins_and_the_loser_is_closed_and_logged(gw, fakes):
    fakes["first"].pace(3.0)
    fakes["second"].pace(0.0)
    closed = fakes["first"].closed
    resp = post(gw, model="race", stream=True)
    assert resp.status_code == 200
    assert resp.headers["x-gateway-provider"] == "second"
    chunks = one_stream(resp.content)
    sent = fakes["second"].requests[-1].json()  # the gateway asks for usage on its own
    expected = openai_upstream.sse_blocks(openai_upstream.fixture(
        openai_upstream._stream_fixture(sent)))
    assert text_of(chunks) == text_of([orjson.loads(b[6:]) for b in expected[:-1]])
    assert fakes["first"].wait_closed(closed + 1) == closed + 1
    request_id = resp.headers["x-request-id"]
    rows = gw.rows(request_id, 2)
    assert [(r["request_id"], r["provider"], r["status"], r["error_type"]) for r in rows] == [
        (request_id, "second", 200, None), (f"{request_id}.1", "first", 499, "hedge_lost")]
    loser = rows[1]
    assert loser["prompt_tokens"] > 0 and loser["tokens_estimated"] == 1
    assert loser["cost_usd"] > 0  # its prompt was sent: billed, so counted in budgets


def test_no_hedge_when_the_first_token_is_in_time(gw, fakes):
    fakes["first"].pace(0.0)
    before = len(fakes["second"].requests)
    resp = post(gw, model="race", stream=True)
    assert resp.headers["x-gateway-provider"] == "first"
    one_stream(resp.content)
    assert len(fakes["second"].requests) == before
    assert len(gw.rows(resp.headers["x-request-id"], 1)) == 1


def test_the_only_route_races_itself(gw, fakes):
    only = fakes["only"].pace(3.0, 0.0)
    before, closed = len(only.requests), only.closed
    resp = post(gw, model="solo", stream=True)
    assert resp.headers["x-gateway-provider"] == "only"
    one_stream(resp.content)
    assert len(only.requests) == before + 2  # the second won before a third was due
    assert only.wait_closed(closed + 1) == closed + 1


def test_a_non_streaming_call_is_hedged(client, fakes):
    fakes["first"].pace(3.0)
    fakes["second"].pace(0.0)
    raw = client.chat.completions.with_raw_response.create(model="race", messages=HI)
    assert raw.headers["x-gateway-provider"] == "second"
    assert raw.parse().choices[0].message.content


def test_a_translated_provider_can_win(client, fakes):
    fakes["first"].pace(3.0)
    fakes["anthropic"].pace(0.0)
    raw = client.chat.completions.with_raw_response.create(model="race-claude", messages=HI,
                                                           stream=True)
    assert raw.headers["x-gateway-provider"] == "anthropic"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_an_error_never_wins_while_another_attempt_lives(gw, fakes):
    fakes["first"].pace(0.6)  # the hedge (a 500 at once) fails first; the first then answers
    resp = post(gw, model="race-failing", stream=True)
    assert resp.status_code == 200 and resp.headers["x-gateway-provider"] == "first"
    one_stream(resp.content)
    request_id = resp.headers["x-request-id"]
    rows = gw.rows(request_id, 2)
    assert [(r["provider"], r["status"]) for r in rows] == [("first", 200), ("second", 500)]


def test_the_openai_sdk_streams_a_hedged_answer(client, fakes):
    fakes["first"].pace(3.0)
    fakes["second"].pace(0.0)
    stream = client.chat.completions.create(model="race", messages=HI, stream=True)
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_hedges_count_against_the_rate_limit(fakes, tmp_path):
    gw = start(fakes, tmp_path, RATE_LIMIT="2rpm")
    try:
        fakes["first"].pace(3.0)
        fakes["second"].pace(0.0)
        assert post(gw, model="race").headers["x-gateway-provider"] == "second"  # 2 calls
        refused = post(gw, model="race")
        assert refused.status_code == 429
    finally:
        gw.stop()


def test_a_hedge_the_limit_refuses_is_not_started(fakes, tmp_path):
    gw = start(fakes, tmp_path, RATE_LIMIT="1rpm")
    try:
        fakes["first"].pace(0.5)
        before = len(fakes["second"].requests)
        resp = post(gw, model="race")
        assert resp.status_code == 200 and resp.headers["x-gateway-provider"] == "first"
        assert len(fakes["second"].requests) == before
    finally:
        gw.stop()


# -- the race's rules, with scripted providers (no HTTP: each yields events after a delay)
class Scripted:
    retries, first_token_timeout = 0, None

    def __init__(self, name, delay, *events):
        self.name, self.delay, self.events, self.started = name, delay, events, 0

    def execute(self, call):
        self.started += 1

        def answer():
            gevent.sleep(self.delay)
            yield from self.events
        return answer()


class Tracker:
    def __init__(self, admit=True):
        self.admit, self.lost, self.failures, self.chosen = admit, [], [], None

    def admit_hedge(self, call):
        return self.admit

    def hedge_lost(self, route, n, span=None):
        self.lost.append((route.provider.name, n))

    def race_started(self, route, call):
        return None

    def race_failed(self, span, error):
        pass

    def race_won(self, span):
        pass

    def failed(self, route, error, n):
        self.failures.append((route.provider.name, n, error.status))

    def chose(self, route, call=None):
        self.chosen = route.provider.name


def race(*providers, hedge_after=0.05, hedges=1, tracker=None):
    gateway = SimpleNamespace(router=SimpleNamespace(breaker=Breaker()))
    call = Call(body={"model": "m", "messages": HI}, raw=None, model="m", stream=True,
                include_usage=False, request_id="req_x")
    routes = [Route(p, "m") for p in providers]
    tracker = tracker or Tracker()
    reply, route, _ = hedge.run(gateway, routes, call, tracker,
                                LatencyPolicy(None, hedge_after, hedges))
    return list(reply), route.provider.name, tracker


def test_an_empty_answer_waits_for_a_live_attempt_with_content():
    slow = Scripted("slow", 0.3, TextDelta("hello"), Finish("stop"))
    empty = Scripted("empty", 0.0, Finish("stop"))
    events, winner, tracker = race(slow, empty)
    assert winner == "slow" and events[0] == TextDelta("hello")
    assert tracker.lost == [("empty", 2)]  # answered, so billed: logged like a loser


def test_an_empty_answer_is_the_answer_when_nothing_else_is_alive():
    empty = Scripted("empty", 0.0, Finish("stop"))
    failing = Scripted("failing", 0.0)
    failing.execute = lambda call: (_ for _ in ()).throw(UpstreamError("down"))
    events, winner, tracker = race(empty, failing, hedge_after=5)
    assert winner == "empty" and events == [Finish("stop")]


def test_every_attempt_failing_raises_the_last_error_and_logs_the_others():
    def failing(name):
        provider = Scripted(name, 0.0)
        provider.execute = lambda call: (_ for _ in ()).throw(UpstreamError(f"{name} down"))
        return provider
    tracker = Tracker()
    with pytest.raises(UpstreamError, match="b down"):
        race(failing("a"), failing("b"), tracker=tracker)
    assert tracker.failures == [("a", 1, 502)] and tracker.chosen == "b"


def test_a_refused_hedge_leaves_the_first_attempt_alone():
    slow = Scripted("slow", 0.2, TextDelta("hi"))
    other = Scripted("other", 0.0, TextDelta("fast"))
    events, winner, tracker = race(slow, other, tracker=Tracker(admit=False))
    assert winner == "slow" and other.started == 0 and tracker.lost == []


def test_max_hedges_bounds_the_parallel_attempts():
    providers = [Scripted(f"p{i}", 0.5, TextDelta("x")) for i in range(4)]
    events, winner, tracker = race(*providers, hedge_after=0.02, hedges=2)
    assert winner == "p0" and [p.started for p in providers] == [1, 1, 1, 0]
    assert sorted(tracker.lost) == [("p1", 2), ("p2", 3)]
