"""POST /v1/feedback by completion id and by message id; visible in the session
view and in usage."""
import uuid

import pytest

from tests.log import api, client, poll_rows, rows, start_module_gateway


@pytest.fixture(scope="module")
def gw(openai_fake, tmp_path_factory):
    gateway = start_module_gateway(openai_fake, tmp_path_factory, "feedback")
    yield gateway
    gateway.stop()


@pytest.fixture
def turn(gw):
    """A fresh session with one echo turn: (session id, the SDK's reply)."""
    sid = "fb-" + uuid.uuid4().hex[:12]
    reply = client(gw).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "rate this"}],
        extra_headers={"X-Session-Id": sid})
    return sid, reply


def post(gw, body):
    return api(gw, "POST", "/v1/feedback", json=body)


def messages(gw, sid):
    poll_rows(gw, "SELECT id FROM session_messages WHERE session_id = ?", (sid,), count=2)
    return api(gw, "GET", f"/v1/sessions/{sid}").json()["messages"]


def test_feedback_by_completion_id_right_after_the_completion(gw, turn):
    sid, reply = turn
    response = post(gw, {"completion_id": reply.id, "feedback_type": "thumbs_up", "rating": 5,
                         "comment": "spot on", "something_else": True})  # unknown fields ignored
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["object"] == "feedback" and body["completion_id"] == reply.id
    assert body["session_id"] == sid and body["message_id"] is None
    assert (body["feedback_type"], body["rating"], body["comment"]) == ("thumbs_up", 5, "spot on")
    completion = rows(gw, "SELECT id, request_id FROM completions WHERE completion_id = ?", (reply.id,))[0]
    assert body["request_id"] == completion["request_id"]
    row = rows(gw, "SELECT * FROM feedback WHERE id = ?", (body["id"],))[0]
    assert row["completion_row"] == completion["id"] and row["message_id"] is None
    assert (row["feedback_type"], row["rating"], row["comment"]) == ("thumbs_up", 5, "spot on")


def test_feedback_after_a_stream(gw):
    stream = client(gw).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "streamed answer"}], stream=True)
    chunk_ids = {chunk.id for chunk in stream}
    assert len(chunk_ids) == 1
    response = post(gw, {"completion_id": chunk_ids.pop(), "feedback_type": "thumbs_down"})
    assert response.status_code == 201 and response.json()["session_id"] is None


def test_feedback_by_message_id_and_in_the_session_view(gw, turn):
    sid, reply = turn
    user, answer = messages(gw, sid)
    assert (user["role"], answer["role"]) == ("user", "assistant")
    on_answer = post(gw, {"message_id": answer["id"], "feedback_type": "flag", "comment": "odd"})
    assert on_answer.status_code == 201 and on_answer.json()["message_id"] == answer["id"]
    assert on_answer.json()["completion_id"] == reply.id  # an answer's completion is known
    on_user = post(gw, {"message_id": str(user["id"]), "rating": 3})
    assert on_user.status_code == 201 and on_user.json()["completion_id"] is None
    on_completion = post(gw, {"completion_id": reply.id, "rating": 4}).json()

    answer_row = rows(gw, "SELECT * FROM feedback WHERE id = ?", (on_answer.json()["id"],))[0]
    assert answer_row["message_id"] == answer["id"] and answer_row["completion_row"] is not None
    user_row = rows(gw, "SELECT * FROM feedback WHERE id = ?", (on_user.json()["id"],))[0]
    assert user_row["message_id"] == user["id"] and user_row["completion_row"] is None

    user, answer = messages(gw, sid)
    assert [f["id"] for f in answer["feedback"]] == [on_answer.json()["id"], on_completion["id"]]
    assert [f["id"] for f in user["feedback"]] == [on_user.json()["id"]]
    assert answer["feedback"][0]["feedback_type"] == "flag" and answer["feedback"][1]["rating"] == 4


def test_feedback_counts_in_usage(gw, turn):
    sid, reply = turn
    for body in ({"feedback_type": "thumbs_up"}, {"feedback_type": "thumbs_down", "rating": 2},
                 {"rating": 5}, {"feedback_type": "flag"}):
        assert post(gw, {"completion_id": reply.id, **body}).status_code == 201
    answer = messages(gw, sid)[1]
    assert post(gw, {"message_id": answer["id"], "feedback_type": "thumbs_up"}).status_code == 201
    usage = api(gw, "GET", "/v1/usage", params={"group_by": "session"}).json()
    group = next(g for g in usage["data"] if g["group"] == sid)
    assert group["feedback"] == {"thumbs_up": 2, "thumbs_down": 1, "flag": 1, "ratings": 2,
                                 "rating_avg": 3.5}
    everything = rows(gw, "SELECT feedback_type, rating FROM feedback WHERE completion_row IS NOT NULL")
    totals = usage["totals"]["feedback"]
    assert totals["thumbs_up"] == sum(r["feedback_type"] == "thumbs_up" for r in everything)
    assert totals["ratings"] == sum(r["rating"] is not None for r in everything)


def test_unknown_ids_are_404_after_a_short_wait(gw):
    response = post(gw, {"completion_id": "chatcmpl-doesnotexist", "rating": 1})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "completion_id"
    assert post(gw, {"message_id": 987654, "rating": 1}).status_code == 404


@pytest.mark.parametrize("body, param", [
    ({"feedback_type": "thumbs_up"}, "completion_id"),
    ({"completion_id": "", "rating": 3}, "completion_id"),
    ({"completion_id": 12, "rating": 3}, "completion_id"),
    ({"completion_id": "chatcmpl-x", "message_id": 1, "rating": 3}, "message_id"),
    ({"message_id": "abc", "rating": 3}, "message_id"),
    ({"message_id": True, "rating": 3}, "message_id"),
    ({"completion_id": "chatcmpl-x"}, "feedback_type"),
    ({"completion_id": "chatcmpl-x", "comment": "no verdict"}, "feedback_type"),
    ({"completion_id": "chatcmpl-x", "feedback_type": "meh"}, "feedback_type"),
    ({"completion_id": "chatcmpl-x", "rating": 0}, "rating"),
    ({"completion_id": "chatcmpl-x", "rating": 6}, "rating"),
    ({"completion_id": "chatcmpl-x", "rating": "5"}, "rating"),
    ({"completion_id": "chatcmpl-x", "rating": 4.5}, "rating"),
    ({"completion_id": "chatcmpl-x", "rating": True}, "rating"),
    ({"completion_id": "chatcmpl-x", "rating": 3, "comment": 7}, "comment"),
])
def test_bad_values_are_400(gw, body, param):
    response = post(gw, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_not_json_is_400(gw):
    assert api(gw, "POST", "/v1/feedback", data=b"not json").status_code == 400


def test_feedback_found_when_another_worker_logged_the_completion(start_gateway, openai_fake):
    """Two workers: the completion may be queued in the other worker's writer; the
    lookup retries briefly instead of answering 404."""
    gw = start_gateway({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": openai_fake.url + "/v1"},
                       workers=2)
    sdk = client(gw)
    for i in range(6):
        reply = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"n{i}"}])
        assert post(gw, {"completion_id": reply.id, "rating": 4}).status_code == 201
    assert len(rows(gw, "SELECT id FROM feedback")) == 6
