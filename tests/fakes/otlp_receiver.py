"""A small OTLP/HTTP trace receiver on 127.0.0.1 (the collector binary cannot be
installed here): POST /v1/traces with `application/x-protobuf`, decoded with
opentelemetry-proto's ExportTraceServiceRequest into plain `Span`s.

`hanging()` is a collector that accepts connections and never answers (its
socket listens but never accepts: the kernel completes the handshake)."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

from tests.fakes.server import FakeServer, Reply, Request

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    status: str
    attributes: dict
    resource: dict
    start_ns: int = 0
    end_ns: int = 0
    children: list = field(default_factory=list)


def value(any_value):
    """An OTLP AnyValue as Python."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(pairs) -> dict:
    return {kv.key: value(kv.value) for kv in pairs}


def decode(payload: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                spans.append(Span(s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                                  KINDS[s.kind], STATUS[s.status.code], _attributes(s.attributes),
                                  resource, s.start_time_unix_nano, s.end_time_unix_nano))
    return spans


class Receiver:
    def __init__(self):
        self.spans: list[Span] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)
        self.url = self.server.url

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != "/v1/traces":
            return Reply(404, {"Content-Type": "text/plain"}, b"not found")
        with self.lock:
            self.content_types.append(req.headers.get("content-type", ""))
            self.spans.extend(decode(req.body))
        return Reply(200, {"Content-Type": "application/x-protobuf"},
                     ExportTraceServiceResponse().SerializeToString())

    def trace(self, trace_id: str, count: int, timeout: float = 10.0) -> list[Span]:
        """The spans of one trace, once at least `count` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if s.trace_id == trace_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self.server.__exit__(None, None, None)


def start() -> Receiver:
    receiver = Receiver()
    receiver.server.__enter__()
    return receiver


def tree(spans: list[Span]) -> Span:
    """The root of `spans`, each span's `children` filled in (in start order)."""
    by_id = {s.span_id: s for s in spans}
    roots = []
    for s in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get(s.parent_id)
        (parent.children if parent is not None else roots).append(s)
    assert len(roots) == 1, [(s.name, s.parent_id) for s in roots]
    return roots[0]


class Hanging:
    """A collector that takes connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def hanging() -> Hanging:
    return Hanging()
