"""The bench's own tools: the paced fake, the load generator's event timing, the byte
relay, and what run.py and report.py make of the new scenarios.

    .venv/bin/python -m pytest -q bench/test_tools.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fake_upstream  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402

PACE = (30, 5)  # short: a test, not a measurement
CONTEXT = {"date": "d", "commit": "c", "quick": True, "machine": "m", "python": "3",
           "versions": "v", "load_loop": "uvloop"}
DURATIONS = {"conns": 64, "repeat": 1, "throughput": 3, "latency": 3, "warmup": 0.5}


def test_events_are_cut_at_blank_lines_whatever_the_reads():
    # the fake's own chunk-framed events, stamped 1 µs apart
    body = b"".join(e.replace(fake_upstream.STAMP, b"%020d" % (i * 1000))
                    for i, e in enumerate(fake_upstream.PACED_EVENTS))
    seen, received = load.Events(), bytearray()
    for n, start in enumerate(range(0, len(body), 97)):  # reads that split events anywhere
        received += body[start:start + 97]
        seen.scan(received, float(n))
    count = len(fake_upstream.PACED_EVENTS)
    assert len(seen.seen) == count
    assert [text for _, _, text in seen.seen][:3] == [False, True, True]  # role chunk: no text
    assert [stamp for _, stamp, _ in seen.seen][-1] is None  # [DONE] carries no stamp
    ttft, gaps, trips = seen.timings(sent=0.0)
    assert ttft == seen.seen[1][0] and len(gaps) == count - 2 and len(trips) == count - 1


def test_the_fake_paces_only_when_asked_at_the_start_of_the_body():
    head_end = 0
    paced = load.request_body(True, pace=[200, 20])
    assert fake_upstream.PACE.match(paced, head_end, head_end + fake_upstream.PACE_WINDOW)
    plain = load.request_body(True)
    assert not fake_upstream.PACE.match(plain, head_end, head_end + fake_upstream.PACE_WINDOW)
    schedule = fake_upstream.pace_schedule(200, 20)
    assert [at for at, _ in schedule][:3] == [0.2, 0.22, 0.24]
    assert sum(len(pieces) for _, pieces in schedule) == len(fake_upstream.PACED_EVENTS) + 1


@pytest.fixture(scope="module")
def fake():
    port = run.free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        run.wait_ready(url, proc, 10)
        yield port, url
    finally:
        proc.terminate()
        proc.wait()


def load_json(url: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCH / "load.py"), *args[:1], url, *args[1:]],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def relay(fake):
    port = run.free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "tcp_relay.py"), "--port", str(port),
                             "--upstream-port", str(fake[0])], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        run.wait_ready(url, proc, 10)
        yield url
    finally:
        proc.terminate()
        proc.wait()


@pytest.mark.parametrize("through", ["fake", "relay"])
def test_a_paced_stream_is_timed_event_by_event(fake, relay, through):
    url = fake[1] if through == "fake" else relay
    result = load_json(url, "latency", "--rate", "20", "--duration", "0.5", "--warmup", "0",
                       "--stream", "--pace", "%d,%d" % PACE)
    assert result["errors"] == 0 and result["ok"] == result["sent"] == 10
    assert result["no_content"] == 0
    # the fake cannot send the first token before it is due: a bound, not a timing
    assert result["ttft_ms"]["p50"] >= PACE[0] and result["trip_ms"]["p50"] >= 0


def test_concurrency_one_sends_one_request_after_another(fake):
    result = load_json(fake[1], "serial", "--duration", "0.3", "--warmup", "0.1", "--stream")
    assert result["errors"] == 0 and result["ok"] == result["requests"] == result["sent"] > 10
    assert result["ttfb_ms"]["p50"] <= result["total_ms"]["p50"]


def test_low_rate_runs_last_long_enough_and_the_others_are_unchanged():
    full = {"latency": 15, "warmup": 1, "samples": run.MIN_SAMPLES}
    quick = {"latency": 3, "warmup": 0.5, "samples": 0}
    assert run.load_args("latency", 200, full)[:2] == ["--duration", "15"]
    assert run.load_args("latency", 50, full)[:2] == ["--duration", "15"]
    assert run.load_args("latency", 20, full)[:2] == ["--duration", "30"]
    assert run.load_args("latency", 20, quick)[:2] == ["--duration", "3"]
    assert run.load_args("serial", None, full) == ["--duration", "15", "--warmup", "1"]
    assert run.load_args("latency", 20, quick, (200, 20))[-2:] == ["--pace", "200,20"]


def test_unknown_scenarios_are_refused():
    assert run.scenario_names("json_20,paced_stream_20") == ["json_20", "paced_stream_20"]
    with pytest.raises(Exception, match="json_2000"):
        run.scenario_names("json_20,json_2000")


def fig(p50, p99) -> dict:
    return {"p50": p50, "p99": p99}


def test_the_report_marks_the_new_goals_against_direct():
    results = {"direct": {"json_c1": {"total_ms": fig(0.1, 0.2)},
                          "paced_stream_20": {"ttft_ms": fig(200.1, 200.5),
                                              "gap_ms": fig(20.0, 21.0), "trip_ms": fig(0.1, 0.2)}},
               "gw1": {"json_c1": {"total_ms": fig(0.5, 1.7)},
                       "paced_stream_20": {"ttft_ms": fig(200.4, 202.0),
                                           "gap_ms": fig(20.0, 21.5), "trip_ms": fig(0.2, 0.5)}}}
    text = report.markdown(CONTEXT, DURATIONS, results, {})
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["JSON, concurrency 1: **added latency** p50 / p99 ms"].endswith(
        "(baseline) | +0.40 / +1.50 ✗ |")
    assert rows["paced stream @20/s: **added TTFT** p50 / p99 ms"].endswith(
        "(baseline) | +0.30 / +1.50 ✓ ✓ |")
    assert rows["paced stream @20/s: **added gap between events** p50 / p99 ms"].endswith(
        "(baseline) | +0.00 / +0.50 ✓ |")


def test_a_target_that_did_not_pass_the_pace_on_is_not_compared():
    paced = {"ttft_ms": fig(200.1, 200.5), "gap_ms": fig(20.0, 21.0), "trip_ms": fig(0.1, 0.2)}
    unpaced = {"ttft_ms": fig(0.3, 0.5), "gap_ms": fig(0.0, 0.1), "trip_ms": fig(None, None)}
    text = report.markdown(CONTEXT, DURATIONS, {"direct": {"paced_stream_20": paced},
                                                "litellm": {"paced_stream_20": unpaced}}, {})
    ttft = next(line for line in text.splitlines() if line.startswith("| paced stream @20/s: TTFT"))
    added = next(line for line in text.splitlines()
                 if line.startswith("| paced stream @20/s: **added TTFT**"))
    assert ttft.endswith("| not paced (bench_pace not forwarded) |")
    assert added.endswith("| (baseline) | — |")
