"""The dashboard in a real browser (Debian's chromium, Playwright), against a real
gateway that served known calls made with the `openai` SDK: every page loads with
no console error and no failed request, under the page's strict CSP; the figures
shown are the JSON APIs' figures; a key created in the page works and revoking it
in the page refuses the next call; the master key stays out of URLs and cookies."""
from __future__ import annotations

import openai
import pytest

from tests.browser import demo

# [[data-row, {data-col: text}], ...] in the table's order (an object would put
# numeric keys first, in their own order)
TABLE_ROWS = """card => [...card.querySelectorAll("tbody tr[data-row]")].map(
  tr => [tr.dataset.row, Object.fromEntries([...tr.querySelectorAll("td[data-col]")].map(
    td => [td.dataset.col, td.innerText.trim()]))])"""


def get(gw, path: str, **params) -> dict:
    response = demo.api(gw.url, "GET", path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def shown(text: str) -> tuple[float, float]:
    """A figure as the page shows it ("$0.000123", "1,204", "12.5 ms", "25.0%") ->
    (its value, half a unit of its last digit: how far rounding may have moved it)."""
    plain = text.replace("$", "").replace(",", "").replace("ms", "").replace("%", "").strip()
    decimals = len(plain.partition(".")[2])
    return float(plain), 0.5 * 10 ** -decimals


def assert_shows(text: str, value) -> None:
    if value is None:
        assert text == "–"
        return
    number, rounding = shown(text)
    assert abs(number - value) <= rounding + 1e-9, (text, value)


def figure(page, name: str) -> str:
    return page.inner_text(f'.page [data-figure="{name}"]')


def table_rows(page, title: str) -> dict[str, dict[str, str]]:
    """{data-row: {data-col: text}} of the table in the card titled `title`."""
    card = page.locator("section.card", has=page.locator("h2", has_text=title))
    return dict(card.evaluate(TABLE_ROWS))


def open_table(page, name: str, title: str) -> dict[str, dict[str, str]]:
    demo.open_page(page, name)
    return table_rows(page, title)


def screenshot(watched, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    watched.page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 0


# -- every page ---------------------------------------------------------------------------
def test_every_page_loads_clean_and_keeps_the_key_out_of_urls_and_cookies(gw, watched, tmp_path):
    page = watched.page
    demo.tour(page, gw.url, gw.traffic.sessions[0], lambda name: screenshot(watched, tmp_path, name))
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == sorted(
        ["sign-in", "session", *(name for name, _ in demo.PAGES)])
    assert watched.problems == []
    assert not any(demo.MASTER in url for url in watched.urls)
    assert page.context.cookies() == [] and page.evaluate("document.cookie") == ""
    assert page.evaluate("sessionStorage.getItem('switchboard.masterKey')") == demo.MASTER
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_wrong_key_is_refused_on_the_sign_in_form(gw, watched):
    page = watched.page
    page.goto(gw.url + "/dashboard/")
    page.fill("#master-key", "sk-not-the-master-key-000000")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in page.inner_text("#login-error")
    assert page.is_hidden("#nav")
    assert watched.problems and all("401" in p for p in watched.problems)  # the refusal only


def test_an_open_gateway_opens_without_signing_in(start_gateway, openai_fake, watched, tmp_path):
    gw = start_gateway(demo.env(openai_fake.url, master=None))
    page = watched.page
    page.goto(gw.url + "/dashboard/")
    demo.ready(page, "overview")
    assert page.is_hidden("#login") and page.is_hidden("#logout")
    demo.open_page(page, "keys")
    assert "GATEWAY_MASTER_KEY" in page.inner_text(".page")
    screenshot(watched, tmp_path, "open-keys")
    assert watched.problems == []


# -- the figures are the APIs' -------------------------------------------------------------
@pytest.fixture
def signed_in(gw, watched):
    demo.sign_in(watched.page, gw.url)
    return watched.page


def test_overview_shows_what_usage_and_status_return(gw, signed_in, watched, tmp_path):
    page = signed_in
    view = page.locator('.page[data-page="overview"]')
    span = {"from": view.get_attribute("data-from"), "to": view.get_attribute("data-to")}
    series = get(gw, "/v1/usage", group_by="hour", **span)
    totals = series["totals"]
    assert totals["requests"] == gw.traffic.requests
    for name, value in [("requests", totals["requests"]), ("errors", totals["errors"]),
                        ("cost_usd", totals["cost_usd"]), ("total_tokens", totals["total_tokens"]),
                        ("latency_p50", totals["latency_ms"]["p50"]),
                        ("latency_p95", totals["latency_ms"]["p95"]),
                        ("ttft_p50", totals["ttft_ms"]["p50"])]:
        assert_shows(figure(page, name), value)
    plotted = page.locator('[data-chart="Requests"]')
    assert float(plotted.get_attribute("data-sum-requests")) == totals["requests"]
    assert float(plotted.get_attribute("data-sum-errors")) == totals["errors"]
    spend = float(page.get_attribute('[data-chart="Spend"]', "data-sum-cost_usd"))
    assert spend == pytest.approx(totals["cost_usd"])
    assert page.locator(".uplot canvas").count() == 3
    _assert_group_table(page, "Per model", get(gw, "/v1/usage", group_by="model", **span))
    _assert_group_table(page, "Per provider", get(gw, "/v1/usage", group_by="provider", **span))
    status = get(gw, "/v1/status")
    for name in ("in_flight", "log_queue_depth", "workers"):
        assert_shows(figure(page, name), status[name])
    page.click('[data-range="7d"]')
    demo.ready(page, "overview")
    assert_shows(figure(page, "requests"), totals["requests"])
    screenshot(watched, tmp_path, "overview-7d")
    assert watched.problems == []


COLUMNS = {"requests": ("requests",), "errors": ("errors",), "attempts": ("attempts",),
           "total_tokens": ("total_tokens",), "cost_usd": ("cost_usd",),
           "latency_p50": ("latency_ms", "p50"), "latency_p95": ("latency_ms", "p95"),
           "ttft_p50": ("ttft_ms", "p50"), "ttft_p95": ("ttft_ms", "p95")}


def _assert_group_table(page, title: str, usage: dict) -> None:
    rows = table_rows(page, title)
    assert set(rows) == {g["group"] or "(none)" for g in usage["data"]}
    for group in usage["data"]:
        row = rows[group["group"] or "(none)"]
        for column, cell in row.items():
            if column in COLUMNS:
                value = group
                for step in COLUMNS[column]:
                    value = value[step]
                assert_shows(cell, value)
        if "error_rate" in row:
            assert_shows(row["error_rate"], 100 * group["errors"] / group["requests"])


def test_models_page_shows_providers_and_models_with_prices(gw, signed_in, watched):
    page = signed_in
    rows = open_table(page, "models", "Providers")
    providers = get(gw, "/v1/providers")["providers"]
    assert set(rows) == {p["name"] for p in providers}
    for p in providers:
        assert rows[p["name"]]["available"] == ("available" if p["available"] else "not configured")
        assert rows[p["name"]]["type"] == p["type"]
    models = get(gw, "/v1/models")["data"]
    rows = table_rows(page, "Models")
    assert set(rows) == {f"{m['provider']}/{m['id']}" for m in models}
    priced = [m for m in models if "price" in m]
    assert priced, "the catalog prices OpenAI's models"
    for m in priced:
        row = rows[f"{m['provider']}/{m['id']}"]
        assert_shows(row["price_input"], m["price"]["input"])
        assert_shows(row["price_output"], m["price"]["output"])
        assert_shows(row["context_length"], m.get("context_length"))
    assert watched.problems == []


def test_sessions_list_search_and_the_replayed_conversation(gw, signed_in, watched, tmp_path):
    page = signed_in
    rows = open_table(page, "sessions", "Newest first")
    listed = {s["id"]: s for s in get(gw, "/v1/sessions")["data"]}
    assert set(rows) == set(listed)
    for sid, session in listed.items():
        assert_shows(rows[sid]["message_count"], session["message_count"])
        assert_shows(rows[sid]["total_tokens"], session["total_tokens"])
        assert_shows(rows[sid]["total_cost_usd"], session["total_cost_usd"])
    page.fill('input[name="q"]', "BILLING")
    page.click(".search button")
    page.wait_for_selector('.page[data-page="sessions"][data-state="ready"] h2:has-text("matching")')
    found = {s["id"] for s in get(gw, "/v1/sessions", q="BILLING")["data"]}
    assert set(table_rows(page, "matching")) == found == {gw.traffic.sessions[1]}
    screenshot(watched, tmp_path, "sessions-search")
    for sid in gw.traffic.sessions:
        page.goto(gw.url + f"/dashboard/#/sessions/{sid}")
        demo.ready(page, "sessions", sid)
        _assert_conversation(page, get(gw, f"/v1/sessions/{sid}"))
    assert watched.problems == []


FACTS = ("cost_usd", "latency_ms", "ttft_ms")


def _assert_conversation(page, session: dict) -> None:
    assert_shows(figure(page, "total_tokens"), session["total_tokens"])
    assert_shows(figure(page, "total_cost_usd"), session["total_cost_usd"])
    shown_ids = page.eval_on_selector_all("li[data-message]",
                                          "items => items.map(i => i.dataset.message)")
    assert shown_ids == [str(m["id"]) for m in session["messages"]]
    for message in session["messages"]:
        item = page.locator(f'li[data-message="{message["id"]}"]')
        assert item.get_attribute("data-role") == message["role"]
        assert message["content"] in item.locator(".content").inner_text()
        for feedback in message["feedback"]:
            assert item.locator(f'[data-feedback="{feedback["id"]}"]').count() == 1
        if message["role"] != "assistant":
            continue
        fact = lambda name: item.locator(f'[data-fact="{name}"]').inner_text()  # noqa: E731
        assert_shows(fact("prompt_tokens"), message["usage"]["prompt_tokens"])
        assert_shows(fact("completion_tokens"), message["usage"]["completion_tokens"])
        for name in FACTS:
            assert_shows(fact(name), message[name])


def test_feedback_page_lists_what_the_api_lists(gw, signed_in, watched):
    page = signed_in
    rows = open_table(page, "feedback", "Newest first")
    listed = get(gw, "/v1/feedback")["data"]
    assert {f["id"] for f in listed} == set(gw.traffic.feedback)
    assert list(rows) == [str(f["id"]) for f in listed]  # newest first, as the API
    for item in listed:
        row = rows[str(item["id"])]
        assert row["comment"] == item["comment"]
        assert row["session_id"] == (item["session_id"] or "–")
        assert row["rating"] == (f"{item['rating']} / 5" if item["rating"] else "–")
    page.click('[data-type="thumbs_down"]')
    page.wait_for_selector('.page[data-state="ready"] [data-type="thumbs_down"].active')
    downs = get(gw, "/v1/feedback", feedback_type="thumbs_down")["data"]
    assert len(downs) == 1
    assert list(table_rows(page, "Newest first")) == [str(f["id"]) for f in downs]
    assert watched.problems == []


# -- keys ---------------------------------------------------------------------------------
def test_keys_show_spend_against_budget(gw, signed_in, watched):
    rows = open_table(signed_in, "keys", "Keys")
    assert set(rows) == {k["id"] for k in get(gw, "/v1/keys")["data"]}
    mobile = get(gw, f"/v1/keys/{gw.traffic.key_id}")  # the spend the budget check reads
    assert mobile["spend_this_month_usd"] > 0
    assert_shows(rows[mobile["id"]]["spend"], mobile["spend_this_month_usd"])
    assert_shows(rows[mobile["id"]]["budget"], mobile["monthly_budget_usd"])
    assert rows[mobile["id"]]["limits"] == "60 rpm"
    assert watched.problems == []


def test_a_key_created_in_the_page_works_and_revoking_it_refuses_the_next_call(gw, signed_in,
                                                                              watched, tmp_path):
    page = signed_in
    demo.open_page(page, "keys")
    page.fill('[data-form="new-key"] input[name="name"]', "made in the browser")
    page.fill('[data-form="new-key"] input[name="monthly_budget_usd"]', "2.5")
    page.fill('[data-form="new-key"] input[name="models"]', "echo, openai/gpt-4o-mini")
    page.click('[data-form="new-key"] button[type="submit"]')
    secret = page.wait_for_selector('[data-figure="new-key"]').inner_text()
    screenshot(watched, tmp_path, "key-created")
    made = next(k for k in get(gw, "/v1/keys")["data"] if k["name"] == "made in the browser")
    assert (made["monthly_budget_usd"], made["models"]) == (2.5, ["echo", "openai/gpt-4o-mini"])
    page.wait_for_selector(f'tr[data-row="{made["id"]}"]')
    client = demo.sdk(gw.url, secret)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hi"
    row = page.locator(f'tr[data-row="{made["id"]}"]')
    row.locator('[data-action="revoke"]').click()
    row.locator('[data-action="confirm-revoke"]').click()
    page.wait_for_selector(f'tr[data-row="{made["id"]}"] td[data-col="state"]:has-text("revoked")')
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert get(gw, f"/v1/keys/{made['id']}")["revoked"] is True
    assert watched.problems == []


def test_a_refused_key_form_says_why_and_creates_nothing(gw, signed_in, watched):
    page = signed_in
    demo.open_page(page, "keys")
    before = len(get(gw, "/v1/keys")["data"])
    page.fill('[data-form="new-key"] input[name="name"]', "too fast")
    page.fill('[data-form="new-key"] input[name="rpm_limit"]', "0")
    # the browser's own check (min=1) would stop this form: the API's must hold too
    page.eval_on_selector('[data-form="new-key"]', "form => form.noValidate = true")
    page.click('[data-form="new-key"] button[type="submit"]')
    problem = page.wait_for_selector('[data-form="new-key"] .error:not([hidden])').inner_text()
    assert "rpm_limit" in problem
    assert len(get(gw, "/v1/keys")["data"]) == before
    # the refusal only: its response, and chromium's console line for it
    assert watched.problems and all("/v1/keys" in p or "status of 400" in p
                                    for p in watched.problems)
