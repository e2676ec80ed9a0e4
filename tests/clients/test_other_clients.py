"""Clients other than the Python SDK: curl and the official openai Node SDK."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def test_curl_streams_word_by_word(gateway):
    out = subprocess.run(
        ["curl", "-sN", f"{gateway.url}/v1/chat/completions", "-H", "content-type: application/json",
         "-d", '{"model":"echo","messages":[{"role":"user","content":"hi there"}],"stream":true}'],
        capture_output=True, timeout=30, check=True).stdout
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    deltas = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert deltas == ["hi", " there"]


def test_curl_without_content_type_still_works(gateway):
    # curl -d sends application/x-www-form-urlencoded unless told otherwise
    out = subprocess.run(["curl", "-s", f"{gateway.url}/v1/chat/completions", "-d",
                          '{"model":"echo","messages":[{"role":"user","content":"hello"}]}'],
                         capture_output=True, timeout=30, check=True).stdout
    assert json.loads(out)["choices"][0]["message"]["content"] == "hello"


@pytest.fixture(scope="module")
def node_client():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed on this machine")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                   capture_output=True, timeout=300)
        if installed.returncode != 0:
            pytest.skip("the openai Node SDK could not be installed (npm ci failed): "
                        + installed.stderr.decode(errors="replace")[-300:])
    return NODE_DIR / "client.mjs"


def test_node_sdk(gateway, node_client):
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "BASE_URL": gateway.url + "/v1",
           "STREAM_MODEL": "openai/gpt-4o-mini"}
    result = subprocess.run(["node", str(node_client)], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["text"] == "hi there" and out["usage"]["total_tokens"] == 11
    assert out["streamed"].startswith("Why did the scarecrow") and out["streamUsage"]["total_tokens"] == 30
    assert out["error"] == {"name": "BadRequestError", "status": 400, "param": "messages"}
