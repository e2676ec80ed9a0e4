"""Fixtures for the dashboard's browser tests: Debian's chromium under Playwright
(skipped, saying why, where either is missing), a gateway that served known
calls, and pages whose console errors and failed requests are collected."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.browser import demo
from tests.gateway import Gateway


from tests.conftest import SKIPPED


def pytest_terminal_summary(terminalreporter):
    """Say why the browser tests were skipped, even under `pytest -q` (make test)."""
    reasons = {str(report.longrepr[2]).removeprefix("Skipped: ")
               for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and SKIPPED in str(report.longrepr[2])}
    for reason in sorted(reasons):
        terminalreporter.write_line(reason, yellow=True)


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    """A gateway with a master key that served `demo.serve_known_calls`."""
    gateway = Gateway(demo.env(openai_fake.url)).start(tmp_path_factory.mktemp("dashboard"))
    gateway.traffic = demo.serve_known_calls(gateway.url)
    yield gateway
    gateway.stop()


@dataclass
class Watched:
    """What went wrong in a page: console errors (CSP violations among them),
    uncaught exceptions, failed requests and responses of 400 or more; and the
    URL of every request it made."""
    page: object
    problems: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def __post_init__(self):
        page, note = self.page, self.problems.append
        page.on("console", lambda m: m.type == "error" and note(f"console: {m.text}"))
        page.on("pageerror", lambda e: note(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: note(f"failed: {r.method} {r.url} {r.failure}"))
        page.on("response",
                lambda r: r.status >= 400 and note(f"{r.status}: {r.request.method} {r.url}"))
        page.on("request", lambda r: self.urls.append(r.url))
        page.set_default_timeout(demo.TIMEOUT_MS)


@pytest.fixture
def watched(browser):
    """A page in a fresh browser context (its own session storage)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield Watched(context.new_page())
    context.close()
