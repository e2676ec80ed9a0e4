"""What the sidecar log costs per request: the gateway's WSGI app driven in one
process (gevent-patched, like a worker) against bench/fake_upstream.py, CPU time
per request with the log on, then with rows not recorded (the writer idle).

    .venv/bin/python bench/log_cost.py [--requests 3000] [--stream]

Both runs include everything else (validation, routing, relay, access line); the
difference is the log's share: queueing, the writer thread's parsing, pricing and
SQLite batch, and the metrics fed from written rows."""
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
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args()
    port = free_port()
    # like bench/run.py: the fake on core 1, the gateway's process on core 0
    fake = subprocess.Popen(["taskset", "-c", "1", sys.executable,
                             str(ROOT / "bench" / "fake_upstream.py"), "--port", str(port)])
    os.sched_setaffinity(0, {0})
    time.sleep(0.5)
    tmp = tempfile.mkdtemp(prefix="switchboard-logcost-")
    os.environ.update({"PROVIDER_NAME": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                       "OPENAI_API_KEY": "sk-bench", "DATABASE_URL": f"sqlite:///{tmp}/gateway.db",
                       "LOG_LEVEL": "WARNING"})
    from werkzeug.test import EnvironBuilder

    from proxy.app import create_app
    app = create_app()
    gateway = app.extensions["switchboard"]
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]'
            + (b',"stream":true}' if args.stream else b"}"))
    environ = EnvironBuilder(method="POST", path="/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"}).get_environ()

    def one():
        env = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        answer = app(env, lambda *a: None)
        for _ in answer:
            pass
        answer.close()

    def cpu_per_request() -> float:
        for _ in range(200):
            one()
        gateway.recorder.flush()
        start = time.process_time()
        for _ in range(args.requests):
            one()
        gateway.recorder.flush()
        gateway.metrics.tick()
        return (time.process_time() - start) / args.requests * 1e6

    try:
        with_log = cpu_per_request()
        record = gateway.recorder.record
        gateway.recorder.record = lambda entry: None
        without_log = cpu_per_request()
        gateway.recorder.record = record
    finally:
        fake.terminate()
    kind = "stream" if args.stream else "JSON"
    print(f"{kind}: {with_log:.0f} us CPU per request with the log, {without_log:.0f} without: "
          f"the log costs {with_log - without_log:.0f} us per request")


if __name__ == "__main__":
    main()
