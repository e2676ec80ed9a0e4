"""The stream checker (`python -m proxy.check`) over real HTTP: clean against the
gateway (echo, and relaying the fake OpenAI upstream), each rule failing alone against
a fake that breaks it (tests/fakes/check_upstream.py), and exit 2 when nothing can be
checked. The key never appears in what it prints."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from proxy.check.__main__ import main
from proxy.check.rules import RULES
from tests.fakes import check_upstream
from tests.gateway import ROOT, free_port

# no known key format: only the checker's own scrubbing of its key can hide it
KEY = "house-key-0123456789abcdef"


@pytest.fixture(scope="module")
def breaking_fake():
    server = check_upstream.start()
    yield server
    server.__exit__(None, None, None)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out, err


def failed(report: dict) -> set[str]:
    return {row["name"] for row in report["checks"] if not row["passed"]}


def test_module_against_echo_is_clean_and_picks_the_model(gateway):
    """As an integrator runs it: a subprocess, the base URL, no --model (GET /models)."""
    done = subprocess.run([sys.executable, "-m", "proxy.check", gateway.url + "/v1", "--exact",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["model"] == "echo" and report["compare"] == "exact"
    assert [row["name"] for row in report["checks"]] == [rule.name for rule in RULES]
    assert failed(report) == set()


def test_table_against_echo_with_timings_over_runs(gateway, capsys):
    code, out, _ = run(capsys, gateway.url + "/v1/chat/completions", "--model", "echo",
                       "--runs", 3, "--key", KEY)
    assert code == 0
    lines = out.splitlines()
    for rule in RULES:
        assert any(line.startswith(f"| {rule.name} ") and "| pass " in line for line in lines)
    assert "all checks pass" in out
    code, out, _ = run(capsys, gateway.url + "/v1/chat/completions", "--model", "echo",
                       "--runs", 3, "--json")
    timings = json.loads(out)["timings_ms"]
    assert [timings[name]["count"] for name in ("ttfb", "first_chunk", "first_token")] == [3, 3, 3]
    assert timings["chunk_gap"]["count"] > 0


def test_gateway_relaying_openai_is_clean(gateway, capsys):
    """The fake upstream's whole answer is another capture than its stream: the shape
    matches, the text is not compared without --exact."""
    code, out, _ = run(capsys, gateway.url + "/v1", "--model", "openai/gpt-4o-mini", "--json")
    report = json.loads(out)
    assert code == 0 and failed(report) == set()
    comparison = next(row for row in report["checks"] if row["name"] == "json_matches_stream")
    assert "text differs" in comparison["detail"]


def test_the_fake_passes_when_nothing_is_broken(breaking_fake, capsys):
    code, out, _ = run(capsys, breaking_fake.url + "/v1", "--model", "good", "--exact", "--json")
    assert code == 0 and failed(json.loads(out)) == set()


@pytest.mark.parametrize("rule", [rule.name for rule in RULES])
def test_each_broken_rule_fails_alone(breaking_fake, capsys, rule):
    code, out, _ = run(capsys, breaking_fake.url + "/v1", "--model", f"break-{rule}",
                       "--key", KEY, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert failed(report) == {rule}


def test_an_error_event_is_told_without_the_key(breaking_fake, capsys):
    code, out, _ = run(capsys, breaking_fake.url + "/v1", "--model", "break-no_error_event",
                       "--key", KEY)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("| no_error_event "))
    assert "upstream failed for key ***" in row and "FAIL" in row
    assert "FAILED: no_error_event" in out


def test_another_text_fails_only_with_exact(breaking_fake, capsys):
    url = breaking_fake.url + "/v1/chat/completions"
    code, out, _ = run(capsys, url, "--model", "break-json_text", "--exact", "--json")
    assert code == 1 and failed(json.loads(out)) == {"json_matches_stream"}
    code, out, _ = run(capsys, url, "--model", "break-json_text", "--json")
    assert code == 0 and failed(json.loads(out)) == set()


@pytest.mark.parametrize("compare", [["--exact"], []])
def test_streamed_tool_calls_are_compared(breaking_fake, capsys, compare):
    url = breaking_fake.url + "/v1"
    code, out, _ = run(capsys, url, "--model", "tools", "--json", *compare)
    comparison = json.loads(out)["checks"][-1]
    assert code == 0 and "1 tool call(s) and finish 'tool_calls'" in comparison["detail"]
    code, out, _ = run(capsys, url, "--model", "tools-renamed", "--json", *compare)
    comparison = json.loads(out)["checks"][-1]
    assert code == 1 and failed(json.loads(out)) == {"json_matches_stream"}
    assert "tool" in comparison["detail"]


def test_a_hostile_answer_is_reported_not_obeyed(breaking_fake, capsys):
    """Wrong types fail their rules without a traceback; a terminal escape sent by the
    server is printed escaped."""
    code, out, _ = run(capsys, breaking_fake.url + "/v1", "--model", "break-hostile")
    assert code == 1 and "\x1b" not in out and "\\x1b[2J" in out
    for rule in ("first_chunk_role", "chunk_shape", "no_error_event", "json_answer"):
        assert any(line.startswith(f"| {rule} ") and "| FAIL " in line for line in out.splitlines())


def test_connection_refused_is_exit_2(capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, out, err = run(capsys, url, "--model", "m", "--key", KEY)
    assert code == 2 and out == ""
    assert f"cannot check {url}/chat/completions: connection refused" in err


def test_no_model_and_no_model_list_is_exit_2(breaking_fake, capsys):
    code, _, err = run(capsys, breaking_fake.url + "/v1")
    assert code == 2 and "no --model given" in err


def test_an_error_answer_is_exit_2_without_the_key(breaking_fake, capsys, monkeypatch):
    """The key comes from CHECK_API_KEY; a server that echoes it back is not repeated."""
    monkeypatch.setenv("CHECK_API_KEY", KEY)
    code, _, err = run(capsys, breaking_fake.url + "/v1", "--model", "leak-key")
    assert code == 2 and "answered HTTP 401: Incorrect API key ***" in err


@pytest.mark.parametrize("url, says", [
    ("ftp://127.0.0.1/v1", "URL must be http(s)://"),
    (f"http://user:{KEY}@127.0.0.1/v1", "credentials in the URL are refused"),
    ("http://127.0.0.1:99999/v1", "port"),
])
def test_a_bad_url_is_exit_2(capsys, url, says):
    code, _, err = run(capsys, url, "--model", "m")
    assert code == 2 and says in err
