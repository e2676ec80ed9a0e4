"""A body nested as deep as the JSON parser allows is served and still logged:
the log stores the messages whatever fields they carry."""
import json

import requests

from tests.log import poll_rows

DEEP = "[" * 1000 + "]" * 1000


def test_a_deeply_nested_message_field_is_served_and_logged(gateway):
    body = ('{"model": "echo", "messages": [{"role": "user", "content": "deep one", "x": %s}]}'
            % DEEP)
    r = requests.post(gateway.url + "/v1/chat/completions", data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "deep one"
    [row] = poll_rows(gateway, "SELECT * FROM completions WHERE request_id = ?",
                      (r.headers["x-request-id"],))
    assert row["status"] == 200 and row["prompt_tokens"]
