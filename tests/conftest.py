import pytest

from tests.fakes import openai_upstream
from tests.gateway import Gateway


@pytest.fixture(scope="session")
def openai_fake():
    server = openai_upstream.start()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def gateway(openai_fake, tmp_path_factory):
    """One gateway for the session: echo by default, the fake OpenAI upstream as `openai`."""
    gw = Gateway({"OPENAI_API_KEY": "sk-test-gateway-key-0123456789",
                  "OPENAI_BASE_URL": openai_fake.url + "/v1",
                  "UPSTREAM_TIMEOUT": "3"})
    gw.start(tmp_path_factory.mktemp("gateway"))
    yield gw
    gw.stop()


@pytest.fixture
def start_gateway(tmp_path):
    """Start extra gateways with their own environment; all stopped after the test."""
    started = []

    def start(env: dict, workers: int = 1) -> Gateway:
        gw = Gateway(env, workers).start(tmp_path)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


SKIPPED = "browser tests skipped"


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright, for one test module: Playwright's sync API
    runs an asyncio loop in this thread while it lives, and later tests that start
    their own (asyncio.run) could not."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"{SKIPPED}: the playwright package is not installed "
                    "(make test installs tests/requirements.txt)")
    from tests.browser import demo
    if demo.chromium_path() is None:
        pytest.skip(f"{SKIPPED}: no chromium on PATH (Debian: apt-get install "
                    "chromium; .ci/run installs it; or set CHROMIUM=/path/to/chromium)")
    with sync_playwright() as playwright:
        chromium = demo.launch(playwright)
        yield chromium
        chromium.close()
