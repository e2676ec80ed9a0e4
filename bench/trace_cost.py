"""What OpenTelemetry tracing costs per chat request: the gateway's WSGI app driven
in one process (gevent-patched, like a worker) against bench/fake_upstream.py, CPU
time per request with tracing off (no OTEL variables: the SDK is not even
imported), on and exporting every span to a local OTLP/HTTP receiver, and on but
sampled out (OTEL_TRACES_SAMPLER=always_off: ids and propagation, no export).

    .venv/bin/python bench/trace_cost.py [--requests 2000] [--rounds 3] [--stream]
    .venv/bin/python bench/trace_cost.py --tree /tmp/old   # `off` only, of another checkout

Each variant is its own app (and log database) in the same process, measured in
turns; "on" includes the batch processor's export of the spans (flushed before the
clock stops). The receiver runs on core 1 with the fake: its decoding is not ours.
`--tree` measures a `git archive` of another commit (one without tracing, say) the
same way: `off` here against `off` there is what the hooks cost when tracing is off."""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# a receiver that takes OTLP/HTTP and throws it away (decoding is the collector's job)
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(create_app, config_class, tmp: str, name: str, otel: dict):
    """An app whose tracing is as `otel` says (the SDK reads the process environment
    when the app makes its provider, so the variables are there only meanwhile)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/{name}.db", **otel}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return create_app(config_class.from_env(env))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(app, body: bytes, requests: int) -> float:
    """CPU µs per request, the log written and the spans exported before the clock stops."""
    from werkzeug.test import EnvironBuilder
    gateway = app.extensions["switchboard"]
    environ = EnvironBuilder(method="POST", path="/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"}).get_environ()

    def one():
        answer = app(dict(environ, **{"wsgi.input": io.BytesIO(body)}), lambda *a: None)
        for _ in answer:
            pass
        answer.close()

    def settle():
        gateway.recorder.flush()
        tracer = getattr(gateway, "tracer", None)
        if tracer is not None:
            tracer.provider.force_flush()

    for _ in range(200):
        one()
    settle()
    start = time.process_time()
    for _ in range(requests):
        one()
    settle()
    gateway.metrics.tick()
    return (time.process_time() - start) / requests * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree))
    port, sink = free_port(), free_port()
    # like bench/run.py: the fake (and the receiver) on core 1, this process on core 0
    helpers = [subprocess.Popen(["taskset", "-c", "1", sys.executable,
                                 str(ROOT / "bench" / "fake_upstream.py"), "--port", str(port)]),
               subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", RECEIVER, str(sink)])]
    os.sched_setaffinity(0, {0})
    time.sleep(0.5)
    tmp = tempfile.mkdtemp(prefix="switchboard-tracecost-")
    os.environ.update({"PROVIDER_NAME": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                       "OPENAI_API_KEY": "sk-bench", "LOG_LEVEL": "WARNING"})
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    from proxy.app import create_app
    from proxy.config import Config
    exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}"}
    variants = {"off": {}}
    if (args.tree / "proxy" / "tracing").is_dir():
        variants.update({"on, exported": exporting,
                         "on, sampled out": {**exporting, "OTEL_TRACES_SAMPLER": "always_off"}})
    apps = {name: make_app(create_app, Config, tmp, str(i), otel)
            for i, (name, otel) in enumerate(variants.items())}
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]'
            + (b',"stream":true}' if args.stream else b"}"))
    best = dict.fromkeys(apps, float("inf"))
    try:
        for turn in range(args.rounds):  # interleaved, none always first: a busy machine skews runs
            names = list(apps)[turn % len(apps):] + list(apps)[:turn % len(apps)]
            for name in names:
                best[name] = min(best[name], measure(apps[name], body, args.requests))
    finally:
        for helper in helpers:
            helper.terminate()
    kind = "stream" if args.stream else "JSON"
    print(f"{kind} ({args.tree}): " + ", ".join(f"{us:.0f} us CPU per request with tracing {name}"
                                                 for name, us in best.items()))
    if "on, exported" in best:
        print(f"tracing costs {best['on, exported'] - best['off']:.0f} us per request exported, "
              f"{best['on, sampled out'] - best['off']:.0f} sampled out")


if __name__ == "__main__":
    main()
