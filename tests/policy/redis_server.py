"""Start a real `redis-server` on a free 127.0.0.1 port in a temporary
directory for tests, and stop it again.

    with RedisServer() as server:   # raises RedisServerMissing without redis-server on PATH
        url = server.url
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class RedisServerMissing(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self):
        self.port: int | None = None
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing("redis-server not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-redis-"))
        last = ""
        for _attempt in range(3):  # the free port may be taken before redis binds it
            self.port = _free_port()
            log = self.dir / f"redis-{self.port}.log"
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--protected-mode", "yes", "--logfile", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ping():
                    self.url = f"redis://127.0.0.1:{self.port}/0"
                    return self
                time.sleep(0.02)
            last = log.read_text(errors="replace") if log.exists() else ""
            self._kill()
        raise RuntimeError(f"redis-server did not start: {last[-2000:]}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
