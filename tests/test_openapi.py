"""The OpenAPI document, /docs and /redoc (issue 13, item 2).

The document is built from the gateway's own schemas and check tables
(proxy/openapi), so these tests hold it to what the gateway serves: it is valid
OpenAPI 3.1; its operations are exactly the routes Flask and the chat endpoint
serve; each check's schema says what the check accepts; and a bounded,
deterministic schemathesis run from the served document against a real gateway
(with a master key) gets no 5xx, only documented statuses, headers and bodies,
and OpenAI's error shape for every 4xx. The pages, and every file they load,
come from the gateway without a key, and render in Chromium under their
Content-Security-Policy with nothing fetched from elsewhere."""
from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from proxy import openapi, params
from proxy.errors import InvalidRequest
from proxy.openapi.operations import OPERATIONS, PAGES
from proxy.policy import key_admin
from proxy.routes import chat, docs, feedback, sessions
from tests.gateway import Gateway
from tests.test_openai_spec import integers_as_integers

MASTER = "sk-master-openapi-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello there"}]
AUTH = {"Authorization": f"Bearer {MASTER}"}
REDOC = Path(docs.__file__).resolve().parent.parent / "static" / "vendor" / "redoc"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    gateway = Gateway({"GATEWAY_MASTER_KEY": MASTER}).start(tmp_path_factory.mktemp("openapi"))
    yield gateway
    gateway.stop()


# -- the document ------------------------------------------------------------------
@pytest.mark.parametrize("keys_enabled", [True, False], ids=["keys", "open"])
def test_the_document_is_valid_openapi_3_1(keys_enabled):
    document = openapi.document(keys_enabled)
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"
    assert ("security" in document) is keys_enabled


def test_the_served_document_is_the_generated_one_and_needs_no_key(gw):
    response = requests.get(gw.url + "/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi.document(True)
    OpenAPIV31SpecValidator(response.json()).validate()
    assert MASTER not in response.text


def test_an_open_gateway_documents_no_key(gateway):
    """Without GATEWAY_MASTER_KEY nothing needs a key, and the document says so."""
    response = requests.get(gateway.url + "/openapi.json", timeout=10)
    assert response.json() == openapi.document(False)


def served_routes() -> set[tuple[str, str]]:
    """(method, rule) of every route the app serves, the chat endpoint's included."""
    from proxy.app import create_app
    app = create_app()
    try:
        routes = {(method, rule.rule) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}}
    finally:
        app.extensions["switchboard"].close()
    return routes | {("POST", path) for path in chat.PATHS}


def test_the_document_describes_every_route_served_and_no_other(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'routes.db'}")
    served = served_routes()
    rules = {rule for _, rule in served}
    assert set(PAGES) <= rules, f"PAGES names routes no longer served: {set(PAGES) - rules}"
    api = {(method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)) for method, rule in served
           if rule not in PAGES}
    # every /v1 route is served bare too; the document names the /v1 one
    v1 = {(method, path) for method, path in api if path.startswith("/v1/")}
    missing_twins = {(m, p) for m, p in v1 if (m, p.removeprefix("/v1")) not in api}
    assert not missing_twins, f"/v1 routes not also served without /v1: {missing_twins}"
    described = api - {(m, p.removeprefix("/v1")) for m, p in v1}
    undocumented = sorted(described - set(OPERATIONS))
    assert not undocumented, ("routes served but missing from proxy/openapi/operations.py "
                              f"OPERATIONS (or PAGES, for a page): {undocumented}")
    unserved = sorted(set(OPERATIONS) - described)
    assert not unserved, f"OPERATIONS describes routes nobody serves: {unserved}"


# -- each check's schema says what the check accepts --------------------------------
SAMPLES = [True, False, 0, 1, -1, 5, 100, 101, 2**31, 2**63 - 1, 2**63, 10**12, 10**12 + 1,
           0.5, -0.5, 1e308, 5.0, "", "a", "thumbs_up", "flag", "x" * 200, "x" * 201, "x" * 256,
           "x" * 257, "sess_1.a:b-c", "sess 1", "\x00", "a\x85b", "a\nb", "²", "2026-01-31",
           "2026-01-31T12:00:00Z", "1700000000", "9999-12-31", "soon", [], ["a"], ["a"] * 257,
           ["x" * 257], [1], {}, {"a": [1, {"b": None}]}]
CHECKED = {**{f"keys.{k}": c for k, c in key_admin.CHECKS.items()},
           **{f"sessions.{k}": c for k, c in sessions.CHECKS.items()},
           **{f"feedback.{k}": c for k, c in feedback.CHECKS.items()},
           **{f"feedback list.{k}": c for k, c in feedback.LIST_ARGS.items()},
           "feedback.completion_id": feedback.COMPLETION_ID,
           "feedback.message_id": feedback.MESSAGE_ID, "sessions.q": sessions.SEARCH,
           "X-Session-Id": params.SESSION_HEADER}


def accepts(check, value) -> bool:
    try:
        check(value, "field")
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_a_checks_schema_accepts_what_the_check_accepts(name):
    """Where JSON schema cannot say what a check does (2.0 is an integer to JSON
    schema, not to the gateway; a time's text; a metadata object's depth and
    size), the schema is the looser one: it never refuses what the gateway takes."""
    check = CHECKED[name]
    schema = jsonschema_rs.validator_for(check.schema)
    for value in SAMPLES:
        documented, taken = schema.is_valid(value), accepts(check, value)
        if taken:
            assert documented, f"{name}: the gateway takes {value!r}; its schema refuses it"
        elif documented:
            unsayable = (isinstance(value, float) and value.is_integer()) or \
                check in (params.timestamp, params.json_object)
            assert unsayable, f"{name}: its schema takes {value!r}; the gateway refuses it"


# -- the pages and the files they load --------------------------------------------------
class References(HTMLParser):
    """Every src, href and spec-url of a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url")]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_page_and_every_file_it_loads_are_served_without_a_key(gw, page):
    response = requests.get(gw.url + page, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    parser = References()
    parser.feed(response.text)
    assert len(parser.urls) >= 2, parser.urls
    for url in (urljoin(response.url, ref) for ref in parser.urls):
        assert urlsplit(url).netloc == urlsplit(gw.url).netloc, f"{page} loads {url}"
        loaded = requests.get(url, timeout=10)
        assert loaded.status_code == 200, f"{page} loads {url}: {loaded.status_code}"
        assert len(loaded.content) > 0


@pytest.mark.parametrize("name", ["nope.js", "..%2F..%2Fapp.py", "../docs.html",
                                  "swagger-ui-bundle.js.map", "index.html"])
def test_only_the_files_of_the_table_are_served(gw, name):
    # with a key: a path that leaves /docs/assets/ is no docs route, and would be a 401
    response = requests.get(f"{gw.url}/docs/assets/{name}", headers=AUTH, timeout=10)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_the_vendored_redoc_is_the_file_its_source_names():
    source = (REDOC / "SOURCE.md").read_text()
    digest = hashlib.sha256((REDOC / "redoc.standalone.js").read_bytes()).hexdigest()
    assert f"`redoc.standalone.js` | `{digest}`" in source
    assert "MIT License" in (REDOC / "LICENSE").read_text()


# -- in a browser ----------------------------------------------------------------------
# what each page shows once it has rendered the document
RENDERED = {"/docs": "#operations-Chat-post_v1_chat_completions",
            "/redoc": "[data-section-id='tag/Chat/operation/post_v1_chat_completions']"}
# ReDoc 2 always shows Redocly's logo from its CDN: the policy refuses it (the link stays, as text)
REFUSED = {"/redoc": {"img-src https://cdn.redoc.ly/redoc/logo-mini.svg"}}
WATCH_CSP = ("document.addEventListener('securitypolicyviolation', e => "
             "window.__violations.push(e.effectiveDirective + ' ' + e.blockedURI)); "
             "window.__violations = [];")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_page_renders_the_document_in_a_browser_with_nothing_from_elsewhere(gw, browser, page):
    context = browser.new_context()
    tab, elsewhere, errors = context.new_page(), [], []

    def only_the_gateway(route):  # any other request is recorded and never sent
        if route.request.url.startswith(gw.url + "/"):
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    tab.route(re.compile(r"^https?://"), only_the_gateway)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.add_init_script(WATCH_CSP)
    try:
        tab.goto(gw.url + page)
        tab.wait_for_selector(RENDERED[page], timeout=20_000)
        if page == "/redoc":  # its search runs in a worker the policy must allow
            tab.fill("input[placeholder='Search...']", "virtual key")
            tab.wait_for_selector("[data-role='search:results']", timeout=10_000)
        violations = set(tab.evaluate("window.__violations"))
    finally:
        context.close()
    assert not elsewhere and not errors, (elsewhere, errors)
    assert violations == REFUSED.get(page, set())


# -- schemathesis, from the served document ------------------------------------------------
@pytest.fixture(scope="module")
def served(gw):
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    # JSON schema counts 2.0 as an integer, the gateway does not (README, "Choices made")
    schema.hook("map_body")(lambda context, body: integers_as_integers(body))
    return schema


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, ignored_auth]
BOUNDED = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
                   suppress_health_check=list(HealthCheck))
# negative cases only where there is input to get wrong
RUNS = [(method, path, mode) for (method, path), op in sorted(OPERATIONS.items())
        for mode in ("positive", "negative") if mode == "positive" or op.body or op.parameters]


def assert_openai_error(response: requests.Response) -> None:
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and isinstance(error["type"], str)


@pytest.mark.parametrize("method, path, mode", RUNS, ids=[f"{m} {p} {g}" for m, p, g in RUNS])
def test_the_gateway_answers_as_its_document_says(gw, served, method, path, mode):
    operation = served[path][method]

    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    def run(case):
        response = case.call(base_url=gw.url, headers=AUTH, timeout=30)
        assert_openai_error(response)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    run()


def documented(gw, served, method: str, path: str, status: int, **request) -> requests.Response:
    """One call, made and checked from the served document like the generated ones."""
    if "body" in request:
        request["media_type"] = "application/json"
    case = served[path][method].Case(**request)
    response = case.call(base_url=gw.url, headers=AUTH, timeout=30)
    assert response.status_code == status, response.text[:500]
    case.validate_response(response, checks=CHECKS, headers=AUTH)
    return response


def test_real_resources_and_streams_are_answered_as_documented(gw, served):
    """What random input seldom reaches: ids that exist, 2xx answers, streams."""
    def call(method, path, status=200, **request):
        return documented(gw, served, method, path, status, **request)

    key = call("POST", "/v1/keys", 201, body={"name": "tour", "expires_at": "2100-01-01",
                                              "metadata": {"team": "a"}}).json()
    by_key = {"path_parameters": {"key_id": key["id"]}}
    call("GET", "/v1/keys/{key_id}", **by_key)
    call("PATCH", "/v1/keys/{key_id}", body={"rpm_limit": 60, "models": None}, **by_key)
    call("DELETE", "/v1/keys/{key_id}", **by_key)
    session = {"session_id": call("POST", "/v1/sessions", 201, body={"model": "echo"}).json()["id"]}
    for stream in (False, True):
        call("POST", "/v1/sessions/{session_id}/messages", path_parameters=session,
             body={"content": "hello there", "stream": stream})
        for path, body in (("/v1/chat/completions", {"model": "echo", "messages": HELLO}),
                           ("/v1/compare", {"models": ["echo", "echo"], "messages": HELLO}),
                           ("/v1/chain", {"steps": [{"model": "echo"}] * 2, "messages": HELLO})):
            call("POST", path, body={**body, "stream": stream,
                                     "stream_options": {"include_usage": True}})
    messages = call("GET", "/v1/sessions/{session_id}", path_parameters=session).json()["messages"]
    answer = next(m for m in messages if m["role"] == "assistant")
    call("POST", "/v1/feedback", 201, body={"message_id": answer["id"], "rating": 5})
    call("POST", "/v1/feedback", 201, body={"completion_id": answer["completion_id"],
                                            "feedback_type": "thumbs_up"})
    call("GET", "/v1/feedback", query={"limit": 1})
    call("GET", "/v1/usage", query={"group_by": "model"})
    call("PATCH", "/v1/sessions/{session_id}", path_parameters=session, body={"title": "tour"})
    call("DELETE", "/v1/sessions/{session_id}", path_parameters=session)
    call("GET", "/metrics")
