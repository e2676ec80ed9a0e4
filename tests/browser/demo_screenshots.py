"""The README's screenshots of the dashboard: a demo run, one picture per page.

    .venv/bin/python -m tests.browser.demo_screenshots [output folder]

Starts the fake OpenAI upstream and a gateway with a master key (its own
temporary database), makes the known calls of `tests/browser/demo.py` with the
`openai` SDK, signs in with Debian's chromium and saves sign-in, overview,
models, keys, sessions, one session and feedback as PNG files (default:
tests/browser/screenshots/)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser import demo
from tests.fakes import openai_upstream
from tests.gateway import Gateway

HERE = Path(__file__).resolve().parent
VIEWPORT = {"width": 1400, "height": 900}


def shoot(page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    print(path)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if demo.chromium_path() is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium (or set CHROMIUM)")
    upstream = openai_upstream.start()
    gateway = Gateway(demo.env(upstream.url)).start(Path(tempfile.mkdtemp()))
    try:
        traffic = demo.serve_known_calls(gateway.url)
        with sync_playwright() as playwright:
            browser = demo.launch(playwright)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            demo.tour(page, gateway.url, traffic.sessions[0], lambda name: shoot(page, folder, name))
            browser.close()
    finally:
        gateway.stop()
        upstream.__exit__(None, None, None)

if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "screenshots")
