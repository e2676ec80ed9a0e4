"""The checker's HTTP side: one call, streamed or not, read as its bytes arrive and
timed with a monotonic clock from the moment the request has been sent."""
from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

CHAT_PATH = "/chat/completions"
READ_SIZE = 65536


class CheckError(Exception):
    """Nothing could be checked (bad usage, no connection, no answer): exit 2."""


@dataclass(frozen=True)
class Target:
    """Where to call: `base` is the path that `/chat/completions` and `/models` follow."""
    scheme: str
    netloc: str
    host: str
    port: int
    base: str
    query: str

    @classmethod
    def parse(cls, url: str) -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CheckError("URL must be http(s)://host[:port]/path: a chat-completions URL "
                             "(.../v1/chat/completions) or its base (.../v1)")
        if parts.username or parts.password:
            # a key in the URL would be printed with it; only --key carries a key
            raise CheckError("credentials in the URL are refused: pass the key with --key "
                             "or CHECK_API_KEY")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise CheckError("the URL's port is not a number from 0 to 65535") from None
        base = parts.path.rstrip("/").removesuffix(CHAT_PATH)
        return cls(parts.scheme, parts.netloc, parts.hostname, port, base, parts.query)

    def path(self, suffix: str) -> str:
        return self.base + suffix + (f"?{self.query}" if self.query else "")

    def url(self, suffix: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.path(suffix)}"

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout)


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the request was sent
    data: bytes


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    first_byte: float  # seconds after the request was sent
    pieces: tuple[Arrival, ...]

    @property
    def body(self) -> bytes:
        return b"".join(piece.data for piece in self.pieces)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


# transport failures, most specific first (all are OSErrors but the last two)
_TRANSPORT = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host not found"),
    (TimeoutError, "no answer in time (see --timeout)"),
    (ssl.SSLError, "TLS failed"),
    (OSError, "connection failed"),
    (http.client.HTTPException, "not a valid HTTP answer"),
)


@contextlib.contextmanager
def transport_errors(url: str):
    """Any transport failure becomes a CheckError naming the URL and what went wrong."""
    try:
        yield
    except tuple(kind for kind, _ in _TRANSPORT) as exc:
        reason = next(text for kind, text in _TRANSPORT if isinstance(exc, kind))
        raise CheckError(f"cannot check {url}: {reason} ({type(exc).__name__})") from None


def headers(key: str | None, body: bytes | None) -> dict:
    sent = {"Accept": "application/json, text/event-stream", "User-Agent": "switchboard-check"}
    if body is not None:
        sent["Content-Type"] = "application/json"
    if key:
        sent["Authorization"] = f"Bearer {key}"
    return sent


def call(target: Target, suffix: str, body: dict | None, key: str | None,
         timeout: float) -> Response:
    """One request (POST with a JSON body, else GET), its answer read piece by piece
    as it arrives. `timeout` bounds the whole call, not only each read."""
    payload = None if body is None else json.dumps(body).encode()
    with transport_errors(target.url(suffix)):
        conn = target.connection(timeout)
        try:
            conn.connect()
            return _exchange(conn, target.path(suffix), payload, key, timeout)
        finally:
            conn.close()


def _exchange(conn, path: str, payload: bytes | None, key: str | None,
              timeout: float) -> Response:
    sent = time.monotonic()
    conn.request("GET" if payload is None else "POST", path, body=payload,
                 headers=headers(key, payload))
    # the first byte is when the socket turns readable, before the head is parsed
    if not select.select([conn.sock], [], [], timeout)[0]:
        raise TimeoutError
    first_byte = time.monotonic() - sent
    answer = conn.getresponse()
    pieces = []
    while piece := answer.read1(READ_SIZE):
        at = time.monotonic() - sent
        pieces.append(Arrival(at, piece))
        if at > timeout:
            raise TimeoutError
    return Response(answer.status, answer.getheader("Content-Type", ""), first_byte,
                    tuple(pieces))


def first_model(target: Target, key: str | None, timeout: float) -> str | None:
    """The first model `GET {base}/models` lists, or None when it lists none."""
    answer = call(target, "/models", None, key, timeout)
    listed = answer.json() if answer.status == 200 else None
    models = listed.get("data") if isinstance(listed, dict) else None
    if isinstance(models, list) and models and isinstance(models[0], dict):
        model = models[0].get("id")
        return model if isinstance(model, str) and model else None
    return None


def error_message(answer: Response) -> str:
    """What an error answer says: OpenAI's error message, else the start of the body."""
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return answer.body[:200].decode("utf-8", "replace")
