"""What the dashboard added to the JSON APIs, and how its files are served:
`group_by=hour|minute` and time-to-first-token percentiles in /v1/usage,
GET /v1/feedback, GET /v1/status (summed over workers), `q` on /v1/sessions,
prices in /v1/models; /dashboard/ public files under a strict CSP, the data
behind the master key. (The pages themselves: tests/browser/.)"""
from __future__ import annotations

import hashlib
import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import openai
import pytest
import requests

from proxy.log.pricing import Pricing
from proxy.log.queries import percentile
from tests.gateway import Gateway
from tests.log import execute, poll

MASTER = "sk-master-dashboard-api-0123456789"
HI = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "proxy" / "dashboard"
VENDOR = ROOT / "proxy" / "static" / "vendor" / "uplot"

T0 = datetime(2001, 3, 4, 10, 5, 30, tzinfo=timezone.utc).timestamp()
# (seconds after T0, status, latency, ttft): 10:05:30, 10:05:50, 10:20:30, 11:59:30 UTC
KNOWN = [(0, 200, 40.0, 10.0), (20, 200, 60.0, None), (900, 502, 900.0, 5.0),
         (6840, 200, 80.0, 30.0)]


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_BASE_URL": openai_fake.url + "/v1",
                       "OPENAI_API_KEY": "sk-test-gateway-key-0123456789", "UPSTREAM_TIMEOUT": "5"})
    gateway.start(tmp_path_factory.mktemp("dashboard-api"))
    execute(gateway, "INSERT INTO completions (request_id, created_at, provider, model_requested, "
                     "model_answered, status, latency_ms, ttft_ms, streamed) "
                     "VALUES (?, ?, 'known', 'series', 'series', ?, ?, ?, 1)",
            [(f"known-{uuid.uuid4().hex}", T0 + dt, status, latency, ttft)
             for dt, status, latency, ttft in KNOWN])
    yield gateway
    gateway.stop()


def call(gw, method: str, path: str, key: str | None = MASTER, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, gw.url + path, headers=headers, timeout=10, **kwargs)


def ok(response: requests.Response) -> dict:
    assert response.status_code in (200, 201), response.text
    return response.json()


def assert_refused(response: requests.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param:
        assert error["param"] == param


def sdk(gw, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def virtual_key(gw) -> dict:
    return ok(call(gw, "POST", "/v1/keys", json={"name": "dashboard api"}))


# -- /v1/usage: time series, time to first token ------------------------------------------
def series(gw, group_by: str) -> list[tuple]:
    report = ok(call(gw, "GET", "/v1/usage", params={"group_by": group_by, "from": "2001-03-04",
                                                     "to": "2001-03-04"}))
    return [(g["group"], g["requests"], g["errors"]) for g in report["data"]]


def test_usage_by_hour_and_by_minute_are_utc_buckets_in_order(gw):
    assert series(gw, "hour") == [("2001-03-04T10:00:00Z", 3, 1), ("2001-03-04T11:00:00Z", 1, 0)]
    assert series(gw, "minute") == [("2001-03-04T10:05:00Z", 2, 0), ("2001-03-04T10:20:00Z", 1, 1),
                                    ("2001-03-04T11:59:00Z", 1, 0)]
    assert series(gw, "day") == [("2001-03-04", 4, 1)]


def test_usage_gives_time_to_first_token_percentiles_of_successful_calls(gw):
    report = ok(call(gw, "GET", "/v1/usage", params={"group_by": "hour", "from": "2001-03-04",
                                                     "to": "2001-03-04"}))
    ten, eleven = report["data"]
    # the error's 5 ms and the missing ttft are not counted; latency has its three
    assert ten["ttft_ms"] == {"p50": 10.0, "p95": 10.0, "count": 1}
    assert ten["latency_ms"] == {"p50": 40.0, "p95": 60.0, "count": 2}
    assert eleven["ttft_ms"] == {"p50": 30.0, "p95": 30.0, "count": 1}
    assert report["totals"]["ttft_ms"] == {"p50": percentile([10.0, 30.0], 50),
                                           "p95": percentile([10.0, 30.0], 95), "count": 2}


def test_live_calls_have_a_time_to_first_token(gw):
    start = datetime.now(timezone.utc).timestamp() - 1
    sdk(gw).chat.completions.create(model="echo", messages=HI)
    list(sdk(gw).chat.completions.create(model="echo", messages=HI, stream=True))
    span = {"from": str(start), "group_by": "minute"}
    report = poll(lambda: ok(call(gw, "GET", "/v1/usage", params=span)),
                  until=lambda r: r["totals"]["ttft_ms"]["count"] >= 2)
    totals = report["totals"]
    assert totals["ttft_ms"]["count"] == 2 and totals["ttft_ms"]["p50"] > 0
    assert totals["ttft_ms"]["p95"] <= totals["latency_ms"]["p95"]


# -- GET /v1/feedback ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def feedback(gw, virtual_key) -> dict:
    """Five pieces of feedback from the master key's calls, two from the virtual key's."""
    given: dict[str, list[int]] = {"master": [], "virtual": []}
    for who, key, count in (("master", MASTER, 5), ("virtual", virtual_key["key"], 2)):
        for n in range(count):
            reply = sdk(gw, key).chat.completions.create(model="echo", messages=[
                {"role": "user", "content": f"{who} {n}"}])
            kind = ("thumbs_up", "thumbs_down", "flag")[n % 3]
            body = {"completion_id": reply.id, "feedback_type": kind, "comment": f"{who} {n}"}
            given[who].append(ok(call(gw, "POST", "/v1/feedback", key, json=body))["id"])
    return given


def listing(gw, key=MASTER, **params) -> dict:
    return ok(call(gw, "GET", "/v1/feedback", key, params=params))


def test_feedback_is_listed_newest_first_a_page_at_a_time(gw, feedback):
    everything = sorted(feedback["master"] + feedback["virtual"], reverse=True)
    seen, cursor = [], None
    while True:
        page = listing(gw, limit=3, **({"cursor": cursor} if cursor else {}))
        assert page["object"] == "list" and len(page["data"]) <= 3
        seen += [f["id"] for f in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == everything
    first = listing(gw, limit=1)["data"][0]
    assert first["object"] == "feedback" and first["comment"] == "virtual 1"
    assert first["completion_id"].startswith("chatcmpl") and first["request_id"]


def test_feedback_can_be_filtered_by_type(gw, feedback):
    flags = listing(gw, feedback_type="flag")["data"]
    assert [f["comment"] for f in flags] == ["master 2"]
    ups = listing(gw, feedback_type="thumbs_up")["data"]
    assert ups and {f["feedback_type"] for f in ups} == {"thumbs_up"}


def test_a_virtual_key_sees_only_the_feedback_on_its_own_answers(gw, feedback, virtual_key):
    mine = listing(gw, virtual_key["key"])["data"]
    assert [f["id"] for f in mine] == sorted(feedback["virtual"], reverse=True)
    other = ok(call(gw, "POST", "/v1/keys", json={"name": "no answers"}))["key"]
    assert listing(gw, other)["data"] == []


@pytest.mark.parametrize("params, param", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "²"}, "limit"), ({"limit": "1.5"}, "limit"), ({"limit": "9" * 30}, "limit"),
    ({"cursor": "-1"}, "cursor"), ({"cursor": "abc"}, "cursor"), ({"cursor": "0"}, "cursor"),
    ({"cursor": "99999999999999999999"}, "cursor"), ({"feedback_type": "love"}, "feedback_type"),
])
def test_bad_feedback_list_parameters_are_400(gw, params, param):
    assert_refused(call(gw, "GET", "/v1/feedback", params=params), 400, param)


# -- GET /v1/status -------------------------------------------------------------------------
def test_status_is_for_the_master_key_only(gw, virtual_key):
    status = ok(call(gw, "GET", "/v1/status"))
    assert status["object"] == "status" and status["keys_enabled"] is True
    assert (status["in_flight"], status["log_queue_depth"], status["workers"]) == (0, 0, 1)
    assert_refused(call(gw, "GET", "/v1/status", virtual_key["key"]), 403)
    assert_refused(call(gw, "GET", "/v1/status", None), 401)
    assert ok(call(gw, "GET", "/status"))["object"] == "status"  # bare path, as every route


def hang(gw, seconds: float) -> threading.Thread:
    """A chat call the fake upstream holds for `seconds`, in a thread."""
    def run():
        sdk(gw).chat.completions.create(model="openai/hang", messages=HI,
                                        extra_body={"hang_seconds": seconds})
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_status_adds_up_the_calls_in_flight_on_every_worker(start_gateway, openai_fake):
    gw = start_gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_API_KEY": "sk-test-0123456789",
                        "OPENAI_BASE_URL": openai_fake.url + "/v1"}, workers=2)
    assert poll(lambda: ok(call(gw, "GET", "/v1/status"))["workers"], until=lambda n: n == 2) == 2
    calls = [hang(gw, 6) for _ in range(3)]  # held upstream long past the look below
    busy = poll(lambda: ok(call(gw, "GET", "/v1/status")), until=lambda s: s["in_flight"] == 3,
                timeout=4)
    assert busy["in_flight"] == 3
    for thread in calls:
        thread.join()
    idle = poll(lambda: ok(call(gw, "GET", "/v1/status")), until=lambda s: s["in_flight"] == 0)
    assert idle["in_flight"] == 0 and idle["workers"] == 2


# -- GET /v1/sessions?q= --------------------------------------------------------------------
@pytest.fixture(scope="module")
def sessions(gw, virtual_key) -> dict:
    made = {}
    for name, body, key in (("trip", {"title": "Trip to LISBON", "model": "echo"}, MASTER),
                            ("pct", {"title": "100% sure_thing", "model": "gpt-4o"}, MASTER),
                            ("own", {"title": "lisbon too", "model": "echo"}, virtual_key["key"])):
        made[name] = ok(call(gw, "POST", "/v1/sessions", key, json=body))["id"]
    return made


def found(gw, q: str, key: str = MASTER) -> set[str]:
    return {s["id"] for s in ok(call(gw, "GET", "/v1/sessions", key, params={"q": q}))["data"]}


def test_sessions_search_matches_id_title_or_model_ignoring_case(gw, sessions, virtual_key):
    assert found(gw, "lisbon") == {sessions["trip"], sessions["own"]}
    assert found(gw, "LisBon", virtual_key["key"]) == {sessions["own"]}  # its own only
    assert found(gw, sessions["pct"][5:15]) == {sessions["pct"]}  # a piece of the id
    assert sessions["pct"] in found(gw, "GPT-4O")
    # no wildcards: % and _ are themselves
    assert found(gw, "%") == {sessions["pct"]} and found(gw, "_thing") == {sessions["pct"]}
    assert found(gw, "nothing like this") == set()
    listed = lambda **q: {s["id"] for s in ok(call(gw, "GET", "/v1/sessions", params=q))["data"]}  # noqa: E731
    assert listed(q="", limit=100) == listed(limit=100)  # an empty search is no search


@pytest.mark.parametrize("q", ["x" * 201, "a\nb", "\x00", "\x7f"])
def test_bad_session_searches_are_400(gw, q):
    assert_refused(call(gw, "GET", "/v1/sessions", params={"q": q}), 400, "q")


# -- prices in /v1/models -----------------------------------------------------------------------
def test_models_carry_the_price_the_log_charges(gw):
    models = {(m["provider"], m["id"]): m for m in ok(call(gw, "GET", "/v1/models"))["data"]}
    price = Pricing.load().price("gpt-4o-mini")
    assert models[("openai", "gpt-4o-mini")]["price"] == {
        "input": price.input, "cached_input": price.cached_rate, "output": price.output,
        "reasoning": price.reasoning_rate}
    assert all("price" not in m or set(m["price"]) == {"input", "cached_input", "output", "reasoning"}
               for m in models.values())


# -- /dashboard/: the files ------------------------------------------------------------------------
PAGE_FILES = ["/dashboard", "/dashboard/", "/dashboard/dashboard.css", "/dashboard/js/app.js",
              "/dashboard/js/pages/overview.js", "/dashboard/favicon.svg",
              "/dashboard/vendor/uplot/uPlot.iife.min.js", "/dashboard/vendor/uplot/uPlot.min.css"]


@pytest.mark.parametrize("path", PAGE_FILES)
def test_the_pages_are_public_files_under_a_strict_policy(gw, path):
    response = call(gw, "GET", path, None)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'self';") and "frame-ancestors 'none'" in policy
    assert "form-action 'none'" in policy and "unsafe" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "set-cookie" not in response.headers


def test_the_data_needs_the_master_key_and_auth_says_so(gw):
    assert ok(call(gw, "GET", "/dashboard/auth.json", None)) == {"master_key_required": True}
    for path in ("/v1/status", "/v1/usage", "/v1/feedback", "/v1/keys", "/v1/sessions"):
        assert_refused(call(gw, "GET", path, None), 401)


@pytest.mark.parametrize("path", ["/dashboard/../proxy/app.py", "/dashboard/%2e%2e/wsgi.py",
                                  "/dashboard/js/../../routes/dashboard.js",
                                  "/dashboard/vendor/uplot/SOURCE.md",
                                  "/dashboard/vendor/uplot/LICENSE", "/dashboard//etc/passwd.js",
                                  "/dashboard/vendor/../dashboard/index.html.bak",
                                  "/dashboard/nothing.js", "/dashboardx"])
def test_nothing_else_is_served(gw, path):
    response = call(gw, "GET", path, None)
    assert response.status_code in (401, 404), response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_the_pages_hold_no_inline_script_or_style_and_no_eval():
    html = (DASHBOARD / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html
    assert not re.search(r"\sstyle=|\son[a-z]+=|javascript:", html)
    for script in DASHBOARD.rglob("*.js"):
        text = script.read_text()
        for banned in ("eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML",
                       "document.write", "setAttribute(\"style\"", "localStorage", "document.cookie"):
            assert banned not in text, (script.name, banned)


def test_the_chart_library_is_the_one_source_md_names():
    source = (VENDOR / "SOURCE.md").read_text()
    listed = dict(re.findall(r"\| `([\w.]+)` \| `([0-9a-f]{64})` \|", source))
    assert set(listed) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    version = re.search(r"uPlot (\d+\.\d+\.\d+)", source).group(1)
    banner = f"/*! https://github.com/leeoniya/uPlot (v{version})"
    assert (VENDOR / "uPlot.iife.min.js").read_text().startswith(banner)
