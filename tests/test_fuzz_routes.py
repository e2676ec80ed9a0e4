"""Every route the gateway serves, fuzzed (issue 12, item 6): hypothesis-made JSON
bodies (huge integers, 1e308, "²", control characters, deep nesting, not JSON at
all) and query strings, sent with the master key, a virtual key and no key to one
gateway under gunicorn. Never a 5xx; every error is OpenAI-shaped JSON.

Bounded and deterministic: derandomized, 50 examples a route, no example database."""
import itertools
import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway import Gateway
from tests.test_openapi import served_routes

MASTER = "sk-master-fuzz-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]

# (method, path) of every view under /v1 (each also served without the prefix)
V1_ROUTES = [
    ("POST", "/chat/completions"),
    ("GET", "/models"), ("GET", "/providers"),
    ("POST", "/keys"), ("GET", "/keys"), ("GET", "/keys/<key_id>"),
    ("PATCH", "/keys/<key_id>"), ("DELETE", "/keys/<key_id>"),
    ("POST", "/sessions"), ("GET", "/sessions"), ("GET", "/sessions/<session_id>"),
    ("PATCH", "/sessions/<session_id>"), ("DELETE", "/sessions/<session_id>"),
    ("POST", "/sessions/<session_id>/messages"),
    ("POST", "/feedback"), ("GET", "/feedback"), ("GET", "/usage"), ("GET", "/status"),
    ("POST", "/compare"), ("POST", "/chain"),
]
# served only as they are
BARE_ROUTES = [("GET", "/"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"),
               ("GET", "/static/<path:filename>"), ("GET", "/dashboard"), ("GET", "/dashboard/"),
               ("GET", "/dashboard/auth.json"), ("GET", "/dashboard/<path:filename>"),
               ("GET", "/dashboard/vendor/<path:filename>"), ("GET", "/openapi.json"),
               ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/docs/assets/<path:filename>")]

KEY_FIELDS = ["name", "models", "providers", "rpm_limit", "tpm_limit", "monthly_budget_usd",
              "expires_at", "system_prompt", "metadata"]
SESSION_FIELDS = ["id", "title", "model", "system_prompt", "metadata"]
FEEDBACK_FIELDS = ["completion_id", "message_id", "feedback_type", "rating", "comment"]
CHAT_FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "n", "temperature",
               "tools", "tool_choice", "response_format", "user", "stop", "provider", "metadata"]
# per route: a valid body (so that a changed field or two gets past the first
# check), the body fields it reads and its query parameters
SHAPES = {
    "/chat/completions": ({"model": "echo", "messages": HI}, CHAT_FIELDS, []),
    "/keys": ({"name": "fuzz"}, KEY_FIELDS, []),
    "/keys/<key_id>": ({}, KEY_FIELDS, []),
    "/sessions": ({"title": "fuzz"}, SESSION_FIELDS, ["limit", "cursor", "q"]),
    "/sessions/<session_id>": ({"title": "fuzz"}, SESSION_FIELDS, []),
    "/sessions/<session_id>/messages": ({"content": "hi", "model": "echo"},
                                        ["content"] + CHAT_FIELDS, []),
    "/feedback": ({"feedback_type": "thumbs_up"}, FEEDBACK_FIELDS,
                  ["limit", "cursor", "feedback_type"]),
    "/usage": ({}, [], ["from", "to", "group_by"]),
    "/compare": ({"models": ["echo", "echo"], "messages": HI},
                 ["models", "system_prompt"] + CHAT_FIELDS, []),
    "/chain": ({"steps": [{"model": "echo"}, {"model": "echo"}], "messages": HI},
               ["steps"] + CHAT_FIELDS, []),
}
NO_SHAPE = ({}, [], [])
ALL_FIELDS = sorted({f for _, fields, _ in SHAPES.values() for f in fields})

EDGE_NUMBERS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63 - 1,
                10**30, 1e308, -1e308, 5e-324, -0.0, 1.5]
EDGE_TEXT = ["", "²", "١٢", "\x00", "\r\n", "\u202e", "\ufeff", "💥", "9999-12-31",
             "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1e308", "-1e20", "nan",
             "inf", "18446744073709551615", "9" * 300]
# in bodies only: a request line past 8 KiB is the HTTP server's own 414, without a body
LONG_TEXTS = ["9" * 5000, "x" * 70_000]
DEEP = "__deep_%d__"  # a string in the body replaced by `n` nested lists after encoding
DEPTHS = (16, 17, 300, 1000, 1100)  # 1,100: past what orjson parses

edges = st.sampled_from([None, True, False, *EDGE_NUMBERS, *EDGE_TEXT, *LONG_TEXTS,
                         *(DEEP % n for n in DEPTHS)])
scalars = st.one_of(edges, st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(codec="utf-8"), max_size=20))
keys_anywhere = st.one_of(st.sampled_from(ALL_FIELDS), st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys_anywhere, inner, max_size=4)),
    max_leaves=12)


def encode(value, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    for n in DEPTHS:
        text = text.replace(json.dumps(DEEP % n), "[" * n + "]" * n)
    return text.encode()


@st.composite
def names(draw, own: list[str], others: list[str]) -> str:
    """Mostly a name the route reads, sometimes another route's or any text
    (weighed by repetition: hypothesis' one_of does not weigh its branches)."""
    name = draw(st.sampled_from(own * 8 + others + [None] * 2))
    return draw(st.text(max_size=6)) if name is None else name


@st.composite
def values(draw):
    """Mostly an edge value, else any JSON."""
    return draw(edges if draw(st.sampled_from([True] * 3 + [False])) else json_values)


@st.composite
def bodies(draw, template: str) -> bytes:
    base, fields, _ = SHAPES.get(template, NO_SHAPE)
    kind = draw(st.sampled_from(["route"] * 8 + ["any", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=40))
    if kind == "any":
        return encode(draw(json_values), draw(st.booleans()))
    base = dict(base)
    if base and draw(st.sampled_from([False] * 4 + [True])):  # a required field left out
        del base[draw(st.sampled_from(sorted(base)))]
    changes = draw(st.dictionaries(names(fields, ALL_FIELDS), values(), min_size=1, max_size=2))
    return encode({**base, **changes}, draw(st.booleans()))


def queries(template: str):
    _, _, params = SHAPES.get(template, NO_SHAPE)
    value = st.one_of(st.sampled_from(EDGE_TEXT), st.sampled_from(EDGE_NUMBERS).map(str),
                      st.text(max_size=20))
    others = ["limit", "cursor", "from", "to", "group_by", "q", "feedback_type"]
    return st.lists(st.tuples(names(params, others), value), max_size=3)


path_text = st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=20))


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER}).start(tmp_path_factory.mktemp("fuzz"))
    yield gateway
    gateway.stop()


def _post(gw, path, body, key=MASTER):
    response = requests.post(gw.url + path, json=body, timeout=10,
                             headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def keys(gw):
    """Who calls: the master key, a virtual key, nobody; and a key id the fuzzer
    may change or revoke (never the calling virtual key's)."""
    caller = _post(gw, "/v1/keys", {"name": "fuzz caller"})["key"]
    target = _post(gw, "/v1/keys", {"name": "fuzz target"})["id"]
    return {"auth": {"master": {"Authorization": f"Bearer {MASTER}"},
                     "virtual": {"Authorization": f"Bearer {caller}"}, "none": {}},
            "caller": caller, "target": target}


@pytest.fixture
def session_id(gw, keys):
    """A fresh session of the virtual key's (the master key sees it too) per route."""
    return _post(gw, "/v1/sessions", {"model": "echo", "title": "fuzz"}, keys["caller"])["id"]


def test_the_fuzzed_routes_are_every_route_the_app_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'routes.db'}")
    listed = {(m, prefix + p) for m, p in V1_ROUTES for prefix in ("/v1", "")} | set(BARE_ROUTES)
    assert served_routes() == listed


def fill(template: str, draw, real_ids: dict) -> str:
    """The path with its parameters: mostly a real id, else any text."""
    for placeholder, real in real_ids.items():
        if placeholder in template:
            value = draw(st.sampled_from([real, real, None]))
            value = draw(path_text) if value is None else value
            template = template.replace(placeholder, quote(value, safe=""))
    return template


def assert_no_server_error(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)


ALL_ROUTES = [(m, p, ("/v1", "")) for m, p in V1_ROUTES] + [(m, p, ("",)) for m, p in BARE_ROUTES]


@pytest.mark.parametrize("method, template, prefixes", ALL_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ALL_ROUTES])
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_input_breaks_a_route(gw, keys, session_id, method, template, prefixes, data):
    # mostly the master key: it is the one that gets past auth on every route
    who = data.draw(st.sampled_from(["master"] * 3 + ["virtual"] * 2 + ["none"]), label="key")
    prefix = data.draw(st.sampled_from(prefixes), label="prefix")
    path = fill(template, data.draw, {"<key_id>": keys["target"], "<session_id>": session_id,
                                      "<path:filename>": None})
    response = requests.request(method, gw.url + prefix + path, data=data.draw(bodies(template)),
                                params=data.draw(queries(template), label="query"), timeout=30,
                                headers={"Content-Type": "application/json", **keys["auth"][who]})
    assert_no_server_error(response)


# orjson parses up to 1,024 levels; a body this deep must be a 400 or handled
DEEPEST = 1000
WRITES = [pytest.param(m, p) for m, p in V1_ROUTES if m in ("POST", "PATCH")]


@pytest.mark.parametrize("method, template", WRITES, ids=[f"{p.values[0]} {p.values[1]}"
                                                          for p in WRITES])
def test_deep_nesting_in_any_field(gw, keys, session_id, method, template):
    """Every field a route reads (and one it does not) nested 1,000 levels deep, as a
    list and inside an object."""
    base, fields, _ = SHAPES.get(template, NO_SHAPE)
    path = template.replace("<key_id>", keys["target"]).replace("<session_id>", session_id)
    for field, deep in itertools.product([*fields, "metadata", "not_a_field"],
                                         [DEEP % DEEPEST, {"a": DEEP % DEEPEST}]):
        body = encode({**base, field: deep}, True)
        response = requests.request(method, gw.url + "/v1" + path, data=body, timeout=30,
                                    headers=keys["auth"]["master"])
        assert_no_server_error(response)
