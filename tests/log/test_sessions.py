"""Sessions end to end: chat calls with X-Session-Id, the /v1/sessions API, and
POST /v1/sessions/{id}/messages, checked against the API and the SQLite rows."""
import json
import uuid

import pytest

from tests.log import api, client, poll, poll_rows, rows, start_module_gateway


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = start_module_gateway(openai_fake, tmp_path_factory, "sessions")
    yield gateway
    gateway.stop()


def new_id() -> str:
    return "test-" + uuid.uuid4().hex[:12]


def chat(gw, session_id, messages, model="echo", **kwargs):
    raw = client(gw).chat.completions.with_raw_response.create(
        model=model, messages=messages, extra_headers={"X-Session-Id": session_id}, **kwargs)
    return raw.parse(), raw.headers["x-request-id"]


def stored(gw, session_id):
    return rows(gw, "SELECT m.position, m.role, b.body FROM session_messages m JOIN contents b "
                    "ON b.hash = m.content_hash WHERE m.session_id = ? ORDER BY m.position",
                (session_id,))


def stored_texts(gw, session_id):
    return [(r["role"], json.loads(r["body"]).get("content")) for r in stored(gw, session_id)]


def assert_error(response, status, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param


def test_a_chat_call_creates_the_session_on_first_use(gw):
    sid = new_id()
    reply, request_id = chat(gw, sid, [{"role": "user", "content": "hello there"}])
    sessions = poll_rows(gw, "SELECT * FROM sessions WHERE id = ?", (sid,))
    assert sessions[0]["model"] == "echo"
    completion = poll_rows(gw, "SELECT * FROM completions WHERE request_id = ?", (request_id,))[0]
    assert completion["session_id"] == sid and completion["completion_id"] == reply.id
    assert stored_texts(gw, sid) == [("user", "hello there"), ("assistant", "hello there")]
    view = api(gw, "GET", f"/v1/sessions/{sid}").json()
    assert view["object"] == "session" and view["message_count"] == 2 and view["model"] == "echo"


def test_multi_turn_history_is_stored_once_and_viewed_in_order(gw):
    sid = new_id()
    history = [{"role": "system", "content": "be brief"}]
    replies = []
    for text in ("one", "two words", "three more words"):
        history.append({"role": "user", "content": text})
        reply, request_id = chat(gw, sid, history)
        replies.append((reply, request_id))
        # the client resends the answer as the SDK gives it back (refusal: null, ...)
        history.append(reply.choices[0].message.model_dump(exclude_none=True))
    poll_rows(gw, "SELECT id FROM session_messages WHERE session_id = ?", (sid,), count=7)
    assert stored_texts(gw, sid) == [
        ("system", "be brief"), ("user", "one"), ("assistant", "one"), ("user", "two words"),
        ("assistant", "two words"), ("user", "three more words"), ("assistant", "three more words")]
    view = api(gw, "GET", f"/v1/sessions/{sid}").json()
    messages = view["messages"]
    assert [m["position"] for m in messages] == list(range(7))
    assert [m["content"] for m in messages][1::2] == ["one", "two words", "three more words"]
    completions = {r["request_id"]: r for r in rows(
        gw, "SELECT * FROM completions WHERE session_id = ?", (sid,))}
    answers = [m for m in messages if m["role"] == "assistant"]
    for message, (reply, request_id) in zip(answers, replies):
        row = completions[request_id]
        assert message["request_id"] == request_id and message["completion_id"] == reply.id
        assert message["usage"]["prompt_tokens"] == reply.usage.prompt_tokens == row["prompt_tokens"]
        assert message["usage"]["completion_tokens"] == reply.usage.completion_tokens
        assert message["usage"]["total_tokens"] == reply.usage.total_tokens
        assert message["cost_usd"] == row["cost_usd"] == 0.0
        assert message["latency_ms"] == row["latency_ms"] > 0 and message["ttft_ms"] == row["ttft_ms"]
        assert message["model"] == "echo" and message["provider"] == "echo"
    assert all("usage" not in m for m in messages if m["role"] != "assistant")
    assert view["message_count"] == 7
    assert view["total_tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"]
                                       for r in completions.values())


def test_create_session_and_validation(gw):
    sid = new_id()
    created = api(gw, "POST", "/v1/sessions", json={
        "id": sid, "title": "Trip", "model": "echo", "system_prompt": "plan trips",
        "metadata": {"user": "u1", "tags": ["a"]}})
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == sid and body["object"] == "session" and body["title"] == "Trip"
    assert body["metadata"] == {"user": "u1", "tags": ["a"]} and body["message_count"] == 0
    assert body["total_tokens"] == 0 and body["total_cost_usd"] == 0
    row = rows(gw, "SELECT * FROM sessions WHERE id = ?", (sid,))[0]
    assert row["system_prompt"] == "plan trips" and json.loads(row["metadata"])["user"] == "u1"
    generated = api(gw, "POST", "/v1/sessions", json={}).json()
    assert generated["id"].startswith("sess_") and generated["metadata"] == {}
    assert_error(api(gw, "POST", "/v1/sessions", json={"id": sid}), 409, "id")
    assert_error(api(gw, "POST", "/v1/sessions", json={"metadata": ["x"]}), 400, "metadata")
    assert_error(api(gw, "POST", "/v1/sessions", json={"metadata": "x"}), 400, "metadata")
    assert_error(api(gw, "POST", "/v1/sessions", json={"title": 3}), 400, "title")
    assert_error(api(gw, "POST", "/v1/sessions", json={"id": "no spaces"}), 400, "id")
    assert_error(api(gw, "POST", "/v1/sessions", json={"titel": "typo"}), 400, "titel")
    assert_error(api(gw, "POST", "/v1/sessions", data=b"[1]"), 400)


def test_list_pages_newest_first_with_counts_and_totals(gw):
    ids = [new_id() for _ in range(3)]
    for sid in ids:
        assert api(gw, "POST", "/v1/sessions", json={"id": sid, "model": "echo"}).status_code == 201
    chat(gw, ids[0], [{"role": "user", "content": "priced"}], model="openai/gpt-4o-mini")
    chat(gw, ids[0], [{"role": "user", "content": "free"}], model="echo")
    poll_rows(gw, "SELECT id FROM completions WHERE session_id = ?", (ids[0],), count=2)
    first = api(gw, "GET", "/v1/sessions", params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [s["id"] for s in first["data"]] == [ids[0], ids[2]]  # the one just used, then the newest

    seen, cursor = [], None
    while True:
        page = api(gw, "GET", "/v1/sessions", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    db = {r["id"]: r for r in rows(gw, "SELECT * FROM sessions")}
    assert sorted(s["id"] for s in seen) == sorted(db)  # each session once
    updated = [db[s["id"]]["updated_at"] for s in seen]
    assert updated == sorted(updated, reverse=True)

    item = next(s for s in seen if s["id"] == ids[0])
    completions = rows(gw, "SELECT * FROM completions WHERE session_id = ?", (ids[0],))
    assert item["message_count"] == rows(gw, "SELECT count(*) AS n FROM session_messages "
                                             "WHERE session_id = ?", (ids[0],))[0]["n"] == 4
    assert item["total_tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in completions)
    assert item["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in completions))
    assert item["total_cost_usd"] > 0
    assert len(api(gw, "GET", "/v1/sessions").json()["data"]) == min(20, len(db))


@pytest.mark.parametrize("params, param", [({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                                           ({"limit": "ten"}, "limit"), ({"cursor": "nope"}, "cursor")])
def test_list_rejects_bad_paging(gw, params, param):
    assert_error(api(gw, "GET", "/v1/sessions", params=params), 400, param)


def test_patch_updates_title_metadata_and_system_prompt(gw):
    sid = api(gw, "POST", "/v1/sessions", json={"title": "old", "metadata": {"a": 1}}).json()["id"]
    before = rows(gw, "SELECT updated_at FROM sessions WHERE id = ?", (sid,))[0]["updated_at"]
    patched = api(gw, "PATCH", f"/v1/sessions/{sid}",
                  json={"title": "new", "metadata": {"b": 2}, "system_prompt": "speak French"})
    assert patched.status_code == 200
    assert patched.json()["title"] == "new" and patched.json()["metadata"] == {"b": 2}
    row = rows(gw, "SELECT * FROM sessions WHERE id = ?", (sid,))[0]
    assert row["system_prompt"] == "speak French" and json.loads(row["metadata"]) == {"b": 2}
    assert row["updated_at"] >= before
    # only the fields sent change; null clears one
    again = api(gw, "PATCH", f"/v1/sessions/{sid}", json={"title": None}).json()
    assert again["title"] is None and again["system_prompt"] == "speak French"
    assert_error(api(gw, "PATCH", f"/v1/sessions/{sid}", json={"metadata": [1]}), 400, "metadata")
    assert_error(api(gw, "PATCH", f"/v1/sessions/{sid}", json={"id": "other"}), 400, "id")
    assert api(gw, "GET", f"/v1/sessions/{sid}").json()["metadata"] == {"b": 2}


@pytest.mark.parametrize("method, suffix, body", [
    ("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None),
    ("POST", "/messages", {"content": "hi", "model": "echo"})])
def test_unknown_session_is_404(gw, method, suffix, body):
    response = api(gw, method, f"/v1/sessions/no-such-session{suffix}", json=body)
    assert_error(response, 404)
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_delete_cascades_to_completions_messages_and_feedback(gw):
    sid, other = new_id(), new_id()
    reply, _ = chat(gw, sid, [{"role": "user", "content": "forget me 7f3a"}])
    chat(gw, other, [{"role": "user", "content": "keep me"}])
    poll_rows(gw, "SELECT id FROM session_messages WHERE session_id = ?", (sid,), count=2)
    message_id = api(gw, "GET", f"/v1/sessions/{sid}").json()["messages"][1]["id"]
    assert api(gw, "POST", "/v1/feedback", json={"completion_id": reply.id, "rating": 2}).status_code == 201
    assert api(gw, "POST", "/v1/feedback", json={"message_id": message_id,
                                                 "feedback_type": "flag"}).status_code == 201
    rows_before = rows(gw, "SELECT id FROM completions WHERE session_id = ?", (sid,))
    assert len(rows(gw, "SELECT id FROM feedback")) >= 2

    deleted = api(gw, "DELETE", f"/v1/sessions/{sid}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": sid, "object": "session.deleted", "deleted": True}
    assert rows(gw, "SELECT * FROM sessions WHERE id = ?", (sid,)) == []
    assert rows(gw, "SELECT * FROM completions WHERE session_id = ?", (sid,)) == []
    assert rows(gw, "SELECT * FROM session_messages WHERE session_id = ?", (sid,)) == []
    gone = [r["id"] for r in rows_before]
    assert rows(gw, f"SELECT * FROM feedback WHERE completion_row IN ({','.join('?' * len(gone))}) "
                    "OR message_id = ?", (*gone, message_id)) == []
    assert rows(gw, "SELECT * FROM contents WHERE body LIKE ?", ("%forget me 7f3a%",)) == []
    assert len(stored(gw, other)) == 2  # another session is untouched
    assert_error(api(gw, "GET", f"/v1/sessions/{sid}"), 404)
    assert_error(api(gw, "DELETE", f"/v1/sessions/{sid}"), 404)


def test_post_messages_non_stream_keeps_the_conversation(gw):
    sid = api(gw, "POST", "/v1/sessions", json={"model": "echo", "system_prompt": "be kind"}).json()["id"]
    first = api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "first message"})
    assert first.status_code == 200, first.text
    assert first.json()["object"] == "chat.completion"
    assert first.json()["choices"][0]["message"]["content"] == "first message"
    # sent at once: the first turn is flushed before the history is read
    second = api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "second one"}).json()
    assert second["choices"][0]["message"]["content"] == "second one"
    # system + 3 history/new messages were prompted, more than the first turn's system + 1
    assert second["usage"]["prompt_tokens"] > first.json()["usage"]["prompt_tokens"]
    poll_rows(gw, "SELECT id FROM session_messages WHERE session_id = ?", (sid,), count=4)
    assert stored_texts(gw, sid) == [("user", "first message"), ("assistant", "first message"),
                                     ("user", "second one"), ("assistant", "second one")]
    completions = rows(gw, "SELECT * FROM completions WHERE session_id = ? ORDER BY id", (sid,))
    assert [c["completion_id"] for c in completions] == [first.json()["id"], second["id"]]


def test_post_messages_streams(gw):
    sid = api(gw, "POST", "/v1/sessions", json={"model": "echo"}).json()["id"]
    response = api(gw, "POST", f"/v1/sessions/{sid}/messages", stream=True,
                   json={"content": "stream these words", "stream": True,
                         "stream_options": {"include_usage": True}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.iter_lines(decode_unicode=True)
              if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "stream these words" and chunks[-1]["usage"]["completion_tokens"] == 3
    row = poll_rows(gw, "SELECT * FROM completions WHERE session_id = ?", (sid,))[0]
    assert row["streamed"] == 1 and row["completion_id"] == chunks[0]["id"]
    assert poll(lambda: stored_texts(gw, sid), until=lambda r: len(r) == 2) == [
        ("user", "stream these words"), ("assistant", "stream these words")]


def test_post_messages_sends_system_prompt_and_history_upstream(gw, openai_fake):
    sid = new_id()
    # history from plain chat calls, with a system message of their own
    chat(gw, sid, [{"role": "system", "content": "old rules"}, {"role": "user", "content": "alpha"}])
    poll_rows(gw, "SELECT id FROM session_messages WHERE session_id = ?", (sid,), count=3)
    api(gw, "PATCH", f"/v1/sessions/{sid}",
        json={"system_prompt": "You are terse.", "model": "openai/gpt-4o-mini"})
    reply = api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "beta", "temperature": 0.5})
    assert reply.status_code == 200, reply.text
    sent = openai_fake.last.json()
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.5
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "alpha"},
                                {"role": "assistant", "content": "alpha"},
                                {"role": "user", "content": "beta"}]
    answer = reply.json()["choices"][0]["message"]["content"]
    texts = poll(lambda: stored_texts(gw, sid), until=lambda r: len(r) == 5)
    assert texts == [("system", "old rules"), ("user", "alpha"), ("assistant", "alpha"),
                     ("user", "beta"), ("assistant", answer)]
    # a model given with the message overrides the session's
    api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "gamma", "model": "echo"})
    assert poll(lambda: stored_texts(gw, sid), until=lambda r: len(r) == 7)[-1] == ("assistant", "gamma")


def test_post_messages_validation(gw):
    sid = api(gw, "POST", "/v1/sessions", json={}).json()["id"]  # no model
    assert_error(api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "hi"}), 400, "model")
    ok = api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"content": "hi", "model": "echo"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "hi"
    assert_error(api(gw, "POST", f"/v1/sessions/{sid}/messages", json={"model": "echo"}), 400, "content")
    assert_error(api(gw, "POST", f"/v1/sessions/{sid}/messages",
                     json={"content": 5, "model": "echo"}), 400, "content")
    assert_error(api(gw, "POST", f"/v1/sessions/{sid}/messages",
                     json={"content": "x", "model": "echo", "messages": []}), 400, "messages")
    assert_error(api(gw, "POST", f"/v1/sessions/{sid}/messages",
                     json={"content": "x", "model": "echo", "temperature": 9}), 400, "temperature")
