"""CPU per request of the gateway's WSGI app alone, without gunicorn: the app is
called in-process with a small chat body by --concurrency greenlets, against
bench/fake_upstream.py on the other core (access lines to stderr: redirect it). What the server (gunicorn) adds is the rest
of a worker's cost under load; compare the two to see which side to work on.

    .venv/bin/python bench/app_cost.py [--stream] [--requests 5000]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

import gevent  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

BODY = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Tell me a joke about '
        b'farms."}]%s}')


def environ(body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/chat/completions", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "wrk", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def one(app, body: bytes) -> int:
    status = []
    out = app(environ(body), lambda s, h, exc=None: status.append(s))
    size = sum(len(piece) for piece in out)
    getattr(out, "close", lambda: None)()
    if not status[0].startswith("200"):
        raise SystemExit(f"unexpected status {status[0]}")
    return size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--port", type=int, default=9163)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    fake = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(BENCH / "fake_upstream.py"),
                             "--port", str(args.port)])
    run_dir = tempfile.mkdtemp(prefix="switchboard-app-cost-")
    os.environ.update(PROVIDER_NAME="openai", OPENAI_API_KEY="sk-bench",
                      OPENAI_BASE_URL=f"http://127.0.0.1:{args.port}/v1",
                      DATABASE_URL=f"sqlite:///{run_dir}/log.db",
                      PROMETHEUS_MULTIPROC_DIR=run_dir)
    os.sched_setaffinity(0, {0})
    try:
        time.sleep(0.5)
        from proxy.app import create_app
        app = create_app()
        body = BODY % (b',"stream":true' if args.stream else b"")
        for _ in range(200):
            one(app, body)
        start_cpu, start = time.process_time(), time.perf_counter()
        each = args.requests // args.concurrency
        gevent.joinall([gevent.spawn(lambda: [one(app, body) for _ in range(each)])
                        for _ in range(args.concurrency)], raise_error=True)
        cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
        app.extensions["switchboard"].close()
        print(f"{'stream' if args.stream else 'json'}: {cpu / args.requests * 1e6:.0f} µs CPU, "
              f"{wall / args.requests * 1e6:.0f} µs wall per request (all threads of this process)")
    finally:
        fake.terminate()


if __name__ == "__main__":
    main()
