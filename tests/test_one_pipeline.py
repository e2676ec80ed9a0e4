"""/v1/compare and /v1/chain run every model call through chat's own pipeline:
the same admission (rate and token limits, budgets, key access, system prompts)
and the same log. A compare of N models counts N requests; a chain of N steps, N."""
import openai
import requests

from tests.log import poll_rows

MASTER = "sk-master-pipeline-0123456789"
HI = [{"role": "user", "content": "hi there"}]


def post(gw, path: str, body: dict, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(gw.url + path, json=body, headers=headers, timeout=10)


def compare_answers(gw, key=None) -> list[dict]:
    r = post(gw, "/v1/compare", {"models": ["echo", "echo"], "messages": HI}, key)
    assert r.status_code == 200
    return r.json()["results"]


def chat_status(gw, key=None) -> int:
    return post(gw, "/v1/chat/completions", {"model": "echo", "messages": HI}, key).status_code


def test_compare_calls_count_against_the_rate_limit(start_gateway):
    gw = start_gateway({"RATE_LIMIT": "5rpm"})
    results = [entry for _ in range(6) for entry in compare_answers(gw)]
    served = [e for e in results if "completion" in e]
    refused = [e for e in results if "error" in e]
    assert len(served) == 5 and len(refused) == 7
    assert {e["error"]["code"] for e in refused} == {"rate_limit_exceeded"}
    assert chat_status(gw) == 429  # the compare calls used the minute's five


def test_chain_steps_count_against_the_rate_limit(start_gateway):
    gw = start_gateway({"RATE_LIMIT": "5rpm"})
    statuses = [post(gw, "/v1/chain", {"messages": HI, "steps": [{"model": "echo"},
                                                                 {"model": "echo"}]}).status_code
                for _ in range(6)]
    # two chains of two steps, then the fifth call passes and the sixth is refused
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert chat_status(gw) == 429


def test_a_key_that_used_its_limit_in_chat_gets_nothing_from_compare_or_chain(start_gateway):
    gw = start_gateway({"GATEWAY_MASTER_KEY": MASTER})
    key = post(gw, "/v1/keys", {"name": "limited", "rpm_limit": 3}, MASTER).json()["key"]
    assert [chat_status(gw, key) for _ in range(3)] == [200, 200, 200]
    assert {e["error"]["code"] for e in compare_answers(gw, key)} == {"rate_limit_exceeded"}
    r = post(gw, "/v1/chain", {"messages": HI, "steps": [{"model": "echo"}]}, key)
    assert r.status_code == 429 and r.json()["step"] == 0


def test_compare_counts_tokens_against_the_token_limit(start_gateway):
    gw = start_gateway({"RATE_LIMIT": "1000rpm,60tpm"})
    long = [{"role": "user", "content": "word " * 30}]
    r = post(gw, "/v1/compare", {"models": ["echo", "echo", "echo"], "messages": long})
    results = r.json()["results"]
    assert any(e.get("error", {}).get("code") == "rate_limit_exceeded" for e in results)


def test_a_spent_budget_refuses_compare_calls(start_gateway):
    gw = start_gateway({"GATEWAY_MASTER_KEY": MASTER})
    key = post(gw, "/v1/keys", {"name": "broke", "monthly_budget_usd": 0}, MASTER).json()["key"]
    results = compare_answers(gw, key)
    assert {e["error"]["code"] for e in results} == {"insufficient_quota"}


def test_each_compare_call_is_one_logged_request_with_the_keys_system_prompt(start_gateway,
                                                                                openai_fake):
    gw = start_gateway({"GATEWAY_MASTER_KEY": MASTER, "OPENAI_API_KEY": "sk-test-0123456789",
                        "OPENAI_BASE_URL": openai_fake.url + "/v1"})
    key = post(gw, "/v1/keys", {"name": "prompted", "system_prompt": "Be brief."},
               MASTER).json()
    before = len(openai_fake.requests)
    r = post(gw, "/v1/compare", {"models": ["openai/gpt-4o-mini", "openai/gpt-4o"],
                                 "messages": HI}, key["key"])
    assert r.status_code == 200
    sent = openai_fake.requests[before:]
    assert len(sent) == 2
    assert all(req.json()["messages"][0] == {"role": "system", "content": "Be brief."}
               for req in sent)
    request_id = r.headers["x-request-id"]
    rows = poll_rows(gw, "SELECT * FROM completions WHERE request_id LIKE ? ORDER BY request_id",
                     (f"{request_id}-%",), count=2)
    assert [row["api_key_id"] for row in rows] == [key["id"], key["id"]]
    assert all(row["prompt_tokens"] for row in rows)


def test_the_openai_sdk_sees_the_limit_after_compare(start_gateway):
    gw = start_gateway({"RATE_LIMIT": "2rpm"})
    compare_answers(gw)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    try:
        client.chat.completions.create(model="echo", messages=HI)
    except openai.RateLimitError as exc:
        assert exc.status_code == 429
    else:
        raise AssertionError("the compare's two calls should have used the limit")
