"""Load generator for the bench, loopback only, bounded in time and count.

  throughput  closed loop: N keep-alive connections for D seconds, as fast as the
              target answers. Uses `wrk` (C, one thread) when installed, else the
              asyncio client below (costlier: then the client may be the limit).
  latency     open loop at a fixed rate: request i is sent at t0 + i/rate whatever
              the earlier ones are doing (a new connection is opened when none is
              idle), so a slow answer cannot delay the next sends (no coordinated
              omission). Records time to the first body byte (TTFB: for a stream,
              the first SSE chunk) and to the end of the body, from the send.
  serial      concurrency 1: one connection, each request sent the moment the
              previous answer has ended (no think time); the same records.

--pace FIRST_MS,GAP_MS (streams) asks bench/fake_upstream.py to pace the stream like
a model and records, besides, each SSE event as it completes: time to first token
(TTFT: from the send to the first chunk with content, not the role-only chunk), the
gap between consecutive events from that one on, and each event's trip from the
fake's write (its stamp) to this client.

Each prints one JSON object on stdout. Example:
    python bench/load.py latency http://127.0.0.1:9100/v1/chat/completions --rate 200 --stream
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

MODEL = "gpt-4o-mini"
_PARA = ("The quarterly report covers revenue, operating costs, hiring plans and the risks "
         "we see for the next two quarters, region by region, with the figures in tables. ")


def request_body(stream: bool, large: bool = False, pace: list[int] | None = None) -> bytes:
    content = "Tell me a joke about a scarecrow."
    if large:  # ~400 KB of prose, ~100k tokens
        content = (_PARA * (400_000 // len(_PARA) + 1))[:400_000]
    # the fake looks for the pace only at the start of the body
    body = {"bench_pace": pace} if pace else {}
    body.update(model=MODEL, messages=[{"role": "system", "content": "You are terse."},
                                       {"role": "user", "content": content}])
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def http_request(url: str, body: bytes) -> bytes:
    u = urlsplit(url)
    return (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-bench\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def summary(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    out = {f"p{p:g}": pct(ms, p) for p in (50, 90, 99, 99.9)}
    out.update(max=max(ms) if ms else None, mean=sum(ms) / len(ms) if ms else None)
    return {k: round(v, 3) if v is not None else None for k, v in out.items()}


# ---- a minimal HTTP/1.1 client connection --------------------------------------

CONTENT = re.compile(rb'"content":"[^"]')  # a delta with text (the role chunk's is "")
STAMP = re.compile(rb'"obfuscation":"(\d{20})"')  # the fake's send time, paced chunks only


class Events:
    """A paced stream's SSE events as they complete: (arrival, fake's send time or None,
    has content), cut at each blank line in the body received so far (the chunked
    framing's CRLFs never make one)."""
    __slots__ = ("seen", "scanned")

    def __init__(self):
        self.seen: list[tuple[float, float | None, bool]] = []
        self.scanned = 0

    def scan(self, body: bytearray, now: float) -> None:
        while (end := body.find(b"\n\n", self.scanned)) >= 0:
            event = bytes(body[self.scanned:end])
            stamp = STAMP.search(event)
            self.seen.append((now, int(stamp[1]) / 1e9 if stamp else None,
                              CONTENT.search(event) is not None))
            self.scanned = end + 2

    def timings(self, sent: float) -> tuple[float | None, list[float], list[float]]:
        """TTFT, the gaps between consecutive events from the first with content on,
        and each stamped event's trip from the fake."""
        first = next((i for i, (_, _, text) in enumerate(self.seen) if text), None)
        if first is None:
            return None, [], []
        times = [t for t, _, _ in self.seen[first:]]
        trips = [t - stamp for t, stamp, _ in self.seen if stamp is not None]
        return times[0] - sent, [b - a for a, b in zip(times, times[1:])], trips


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    track_events = False  # --pace: time each SSE event (Events)

    def __init__(self):
        self.transport = None
        self.fut = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((None, None, None, 0, False, None))

    def send(self, payload: bytes) -> asyncio.Future:
        self.fut = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.head = None
        self.first = None
        self.pos = 0
        self.events = Events() if self.track_events else None
        self.sent = time.perf_counter()
        self.transport.write(payload)
        return self.fut

    def data_received(self, data):
        now = time.perf_counter()
        if self.fut is None or self.fut.done():
            return
        self.buf += data
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            self.length = int(m.group(1)) if m else None
            self.keep = b"\r\nconnection: close" not in head
            self.head = head
            del self.buf[:end + 4]
        if self.first is None and self._body_started():
            self.first = now
        if self.events is not None:
            self.events.scan(self.buf, now)
        if self.length is not None:
            if len(self.buf) >= self.length:
                self._done(now, b'"choices"' in self.buf)
            return
        while True:  # chunked
            eol = self.buf.find(b"\r\n", self.pos)
            if eol < 0:
                return
            size = int(bytes(self.buf[self.pos:eol]).split(b";")[0], 16)
            if len(self.buf) < eol + 2 + size + 2:
                return
            self.pos = eol + 2 + size + 2
            if size == 0:
                self._done(now, b"data: [DONE]" in self.buf)
                return

    def _body_started(self) -> bool:
        if self.length is not None:
            return len(self.buf) > 0
        eol = self.buf.find(b"\r\n")  # chunked: past the first chunk-size line
        return eol >= 0 and len(self.buf) > eol + 2

    def _done(self, now, ok):
        ok = ok and self.status == 200
        self.fut.set_result((self.sent, self.first, now, self.status, ok, self.events))
        if not self.keep:
            self.transport.close()


async def connect(host, port) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port)
    return conn


# ---- open loop --------------------------------------------------------------

async def open_loop(url, payload, rate, duration, warmup, max_conns=256, drain=15.0) -> dict:
    loop = asyncio.get_running_loop()
    u = urlsplit(url)
    idle: asyncio.Queue = asyncio.Queue()
    conns = [await connect(u.hostname, u.port) for _ in range(min(8, max_conns))]
    for c in conns:
        idle.put_nowait(c)
    rows, lags, futs = [], [], []
    n = int(rate * (warmup + duration))
    t0 = loop.time() + 0.05

    def finished(conn, measured):
        def cb(fut):
            if measured:
                rows.append(fut.result())
            if not conn.closed:
                idle.put_nowait(conn)
        return cb

    unsent = 0
    for i in range(n):
        target = t0 + i / rate
        if loop.time() > t0 + warmup + duration + 2:  # the target cannot keep up: stop
            unsent = n - i
            break
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = None
        while conn is None or conn.closed:
            if not idle.empty():
                conn = idle.get_nowait()
            elif len(conns) < max_conns:
                conn = await connect(u.hostname, u.port)
                conns.append(conn)
            else:
                conn = await idle.get()
        measured = i >= rate * warmup
        if measured:
            lags.append(loop.time() - target)
        fut = conn.send(payload)
        fut.add_done_callback(finished(conn, measured))
        futs.append(fut)
    done, pending = await asyncio.wait(futs, timeout=drain) if futs else ((), ())
    for c in conns:
        if c.transport:
            c.transport.close()
    return {"mode": "latency", "rate": rate, "duration": duration, "sent": len(lags),
            **answered(rows), "errors": len(rows) - sum(r[4] for r in rows) + len(pending) + unsent,
            "unsent": unsent,
            "connections": len(conns),
            "send_lag_ms": {"p99": round(pct(lags, 99) * 1000, 3), "max": round(max(lags) * 1000, 3)}
            if lags else None}


def answered(rows: list[tuple]) -> dict:
    """The answered requests' count and latency summaries (ms); for paced streams also
    TTFT, the gaps between events and each event's trip from the fake."""
    ok = [r for r in rows if r[4]]
    out = {"ok": len(ok), "ttfb_ms": summary([r[1] - r[0] for r in ok if r[1] is not None]),
           "total_ms": summary([r[2] - r[0] for r in ok])}
    paced = [r[5].timings(r[0]) for r in ok if r[5] is not None]
    if paced:
        out.update(ttft_ms=summary([ttft for ttft, _, _ in paced if ttft is not None]),
                   gap_ms=summary([g for _, gaps, _ in paced for g in gaps]),
                   trip_ms=summary([t for _, _, trips in paced for t in trips]),
                   no_content=sum(ttft is None for ttft, _, _ in paced))
    return out


# ---- concurrency 1 ------------------------------------------------------------

async def serial(url, payload, duration, warmup) -> dict:
    """One connection, each request sent as soon as the last answer has ended."""
    u = urlsplit(url)
    conn = await connect(u.hostname, u.port)
    rows, start = [], time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration
    while (now := time.perf_counter()) < end:
        if conn.closed:
            conn = await connect(u.hostname, u.port)
        row = await conn.send(payload)
        if now >= measure_from:
            rows.append(row)
    conn.transport.close()
    out = answered(rows)
    return {"mode": "serial", "duration": duration, "sent": len(rows), **out,
            "requests": out["ok"], "errors": len(rows) - out["ok"],
            "rps": round(out["ok"] / duration, 1)}


# ---- closed loop ------------------------------------------------------------

async def closed_loop_asyncio(url, payload, conns, duration) -> dict:
    u = urlsplit(url)
    counts = {"ok": 0, "errors": 0}
    deadline = time.perf_counter() + duration

    async def worker():
        conn = await connect(u.hostname, u.port)
        while time.perf_counter() < deadline:
            if conn.closed:
                conn = await connect(u.hostname, u.port)
            r = await conn.send(payload)
            counts["ok" if r[4] else "errors"] += 1
        conn.transport.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - start
    return {"mode": "throughput", "tool": "asyncio", "conns": conns, "duration": elapsed,
            "requests": counts["ok"], "errors": counts["errors"],
            "rps": round(counts["ok"] / elapsed, 1)}


WRK_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
local f = io.open("%s", "rb"); wrk.body = f:read("*a"); f:close()
"""


def closed_loop_wrk(url, body, conns, duration) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        body_path, lua = os.path.join(tmp, "body.json"), os.path.join(tmp, "post.lua")
        with open(body_path, "wb") as fh:
            fh.write(body)
        with open(lua, "w") as fh:
            fh.write(WRK_LUA % body_path)
        out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
                              "-s", lua, url], capture_output=True, text=True,
                             timeout=duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"mode": "throughput", "tool": "wrk", "conns": conns, "duration": duration,
            "requests": int(total.group(1)) if total else 0, "errors": errors,
            "rps": float(rps.group(1)) if rps else 0.0, "raw": out.strip().splitlines()[-6:]}


def pace_arg(text: str) -> list[int]:
    first, gap = (int(v) for v in text.split(","))
    if not (0 <= first <= 60_000 and 0 <= gap <= 10_000):
        raise argparse.ArgumentTypeError("FIRST_MS,GAP_MS: 0-60000 and 0-10000")
    return [first, gap]


def new_loop():
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("throughput", "latency", "serial"))
    ap.add_argument("url")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--large", action="store_true", help="400 KB prompt")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--conns", type=int, default=64, help="throughput: connections")
    ap.add_argument("--rate", type=float, default=200, help="latency: requests/s")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="latency, serial: seconds not recorded")
    ap.add_argument("--pace", type=pace_arg, metavar="FIRST_MS,GAP_MS",
                    help="stream: ask the fake to pace it, and time every event")
    ap.add_argument("--tool", choices=("auto", "wrk", "asyncio"), default="auto")
    args = ap.parse_args()
    if args.pace and (args.mode == "throughput" or not args.stream):
        ap.error("--pace is for streams in latency or serial mode")
    body = request_body(args.stream, args.large, args.pace)
    payload = http_request(args.url, body)
    Conn.track_events = bool(args.pace)
    loop = new_loop()
    if args.mode == "latency":
        result = loop.run_until_complete(open_loop(
            args.url, payload, args.rate, args.duration, args.warmup))
    elif args.mode == "serial":
        result = loop.run_until_complete(serial(args.url, payload, args.duration, args.warmup))
    elif args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk")):
        result = closed_loop_wrk(args.url, body, args.conns, int(args.duration))
    else:
        result = loop.run_until_complete(closed_loop_asyncio(
            args.url, payload, args.conns, args.duration))
    result.update(stream=args.stream, large=args.large, pace=args.pace,
                  loop=type(loop).__module__.split(".")[0])
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
