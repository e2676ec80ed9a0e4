"""What the browser tests and the README's screenshots share: known calls made
with the `openai` SDK against a gateway, Debian's chromium driven by Playwright,
signing in, and the dashboard's pages."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

import openai
import requests

MASTER = "sk-master-dashboard-0123456789abcdef"
# (name, hash of the page): every page of the dashboard
PAGES = [("overview", "#/overview"), ("models", "#/models"), ("keys", "#/keys"),
         ("sessions", "#/sessions"), ("feedback", "#/feedback")]
TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser download is not possible here)."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    # --no-sandbox: the tests and CI run as root, where chromium's sandbox cannot start
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])


def env(openai_url: str, master: str | None = MASTER) -> dict:
    """A gateway with echo by default and a fake OpenAI upstream as `openai`."""
    return {"OPENAI_API_KEY": "sk-test-gateway-key-0123456789",
            "OPENAI_BASE_URL": openai_url + "/v1", "UPSTREAM_TIMEOUT": "5",
            **({"GATEWAY_MASTER_KEY": master} if master else {})}


def api(url: str, method: str, path: str, key: str | None = MASTER, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, url + path, headers=headers, timeout=10, **kwargs)


def sdk(url: str, key: str | None = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key or "unused", max_retries=0)


@dataclass
class Traffic:
    """What the known calls left behind, for the tests to look up."""
    requests: int = 0
    sessions: list[str] = field(default_factory=list)
    key_id: str | None = None
    feedback: list[int] = field(default_factory=list)


TRIP = ["Plan three days in Lisbon for two", "Add a day trip to Sintra on the second day",
        "Where should we eat near Alfama?"]
SUPPORT = ["My invoice shows two charges this month", "It was on the 3rd and the 4th"]
# (answer: 0-2 the trip's, 3-4 support's; feedback). The fake OpenAI answers every
# call with one captured id (and every stream with another): the streamed 4 names one.
FEEDBACK = [(0, {"feedback_type": "thumbs_up", "rating": 5, "comment": "Great plan"}),
            (2, {"feedback_type": "flag", "comment": "Check the opening hours"}),
            (4, {"feedback_type": "thumbs_down", "rating": 2, "comment": "Did not answer"})]


def serve_known_calls(url: str, master: str = MASTER) -> Traffic:
    """Chat calls with the SDK: a three-turn echo session, a priced two-turn session
    on the fake OpenAI (one streamed), a call with a virtual key, one refused call,
    and feedback on three answers. Returns once every row is written."""
    traffic = Traffic()
    trip = _session(url, "Trip planning", "echo", "You are a friendly travel agent.")
    answers = _conversation(url, trip, "echo", TRIP, traffic)
    support = _session(url, "Billing support", "openai/gpt-4o-mini", "Answer billing questions.")
    answers += _conversation(url, support, "openai/gpt-4o-mini", SUPPORT, traffic, stream_last=True)
    key = api(url, "POST", "/v1/keys", json={"name": "mobile-app", "monthly_budget_usd": 5,
                                                "rpm_limit": 60}).json()
    traffic.key_id = key["id"]
    sdk(url, key["key"]).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello from the app"}])
    traffic.requests += 1
    try:
        sdk(url).chat.completions.create(model="openai/error-400",
                                         messages=[{"role": "user", "content": "x"}])
    except openai.BadRequestError:
        traffic.requests += 1
    for answer, body in FEEDBACK:
        traffic.feedback.append(api(url, "POST", "/v1/feedback",
                                    json={"completion_id": answers[answer], **body}).json()["id"])
    _wait_for_rows(url, traffic.requests)
    return traffic


def _session(url: str, title: str, model: str, system_prompt: str) -> str:
    body = {"title": title, "model": model, "system_prompt": system_prompt}
    return api(url, "POST", "/v1/sessions", json=body).json()["id"]


def _conversation(url, session_id, model, turns, traffic: Traffic, stream_last=False) -> list[str]:
    """The turns as a client sends them (the whole history every time); the answers' ids."""
    messages, ids = [], []
    for n, text in enumerate(turns):
        messages.append({"role": "user", "content": text})
        stream = stream_last and n == len(turns) - 1
        reply = sdk(url).chat.completions.create(
            model=model, messages=messages, stream=stream,
            extra_headers={"X-Session-Id": session_id},
            **({"stream_options": {"include_usage": True}} if stream else {}))
        if stream:
            chunks = list(reply)
            completion_id = chunks[0].id
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion_id, content = reply.id, reply.choices[0].message.content
        messages.append({"role": "assistant", "content": content})
        ids.append(completion_id)
        traffic.requests += 1
    traffic.sessions.append(session_id)
    return ids


def _wait_for_rows(url: str, count: int, timeout: float = 10.0) -> None:
    """Rows are written asynchronously (~50 ms): wait until usage counts them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api(url, "GET", "/v1/usage").json()["totals"]["requests"] >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the log did not reach {count} requests")


def ready(page, name: str, arg: str | None = None):
    """The page's view once it has rendered its data."""
    selector = f'.page[data-page="{name}"][data-state="ready"]'
    if arg is not None:
        selector += f'[data-arg="{arg}"]'
    return page.wait_for_selector(selector, timeout=TIMEOUT_MS)


def sign_in(page, url: str, key: str = MASTER) -> None:
    page.goto(url + "/dashboard/")
    page.fill("#master-key", key)
    page.click("#login button[type=submit]")
    ready(page, "overview")


def open_page(page, name: str) -> None:
    """Through the navigation bar, as an operator would."""
    page.click(f'[data-nav="{name}"]')
    ready(page, name)


def open_session(page, session_id: str) -> None:
    """From the sessions list, by its link."""
    open_page(page, "sessions")
    page.click(f'tr[data-row="{session_id}"] a')
    ready(page, "sessions", session_id)


def tour(page, url: str, session_id: str, shoot) -> None:
    """Sign in and open every page, as an operator would, calling `shoot(name)` on
    each once it shows its data: sign-in, the pages, then one session."""
    page.goto(url + "/dashboard/")
    page.wait_for_selector("#login:not([hidden])")
    shoot("sign-in")
    sign_in(page, url)
    for name, _ in PAGES:
        open_page(page, name)
        shoot(name)
    open_session(page, session_id)
    shoot("session")
