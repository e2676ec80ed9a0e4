"""Run the real gateway (gunicorn, gevent workers) as a subprocess for a test."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")

# variables a developer's shell may carry that would change what a test sees
_SCRUBBED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "GEMINI_API_KEY",
             "GROQ_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
             "PROVIDER_NAME", "GATEWAY_CONFIG", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DATABASE_URL", "GATEWAY_MASTER_KEY",
             "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
             "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", "AWS_BEARER_TOKEN_BEDROCK", "AGENT_ID",
             "AGENT_ALIAS_ID", "PROMETHEUS_MULTIPROC_DIR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, env: dict, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = Path(tempfile.mkdtemp(prefix="switchboard-")) / "gateway.db"
        base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env = {**base, "PORT": str(self.port), "HOST": "127.0.0.1",
                    "WEB_CONCURRENCY": str(workers), "LOG_LEVEL": "INFO",
                    "GRACEFUL_TIMEOUT": "2",
                    "DATABASE_URL": f"sqlite:///{self.db_path}",
                    **env}
        self.log_path = None
        self.proc = None

    def start(self, tmp_path: Path | None = None) -> "Gateway":
        log_dir = tmp_path or Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = log_dir / f"gateway-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.logs()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start: {self.logs()}")

    def rows(self, request_id: str, count: int = 1, wait_s: float = 5.0) -> list[dict]:
        """The log rows of a request and its attempts (`<id>.<n>`), ordered by id, once
        there are `count` of them (the writer is off the request path) or after `wait_s`."""
        deadline = time.time() + wait_s
        while True:
            conn = sqlite3.connect(self.db_path)
            conn.row_factory = sqlite3.Row
            try:
                rows = [dict(r) for r in conn.execute(
                    "SELECT * FROM completions WHERE request_id = ? OR request_id LIKE ? "
                    "ORDER BY request_id", (request_id, request_id + ".%"))]
            finally:
                conn.close()
            if len(rows) >= count or time.time() > deadline:
                return rows
            time.sleep(0.05)

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
