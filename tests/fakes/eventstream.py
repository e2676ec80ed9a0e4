"""Encoder for AWS's binary event-stream framing (application/vnd.amazon.eventstream),
as Bedrock sends it (WIRE-FORMAT.md 5.4):

    frame   = prelude(12) + headers + payload + message_crc(4)
    prelude = total_length u32be | headers_length u32be | CRC32(first 8 bytes) u32be
    header  = name_len u8 | name | type u8 (7 = string) | value_len u16be | value
    message_crc = CRC32(frame without its last 4 bytes)

Headers are written in the order AWS sends them. Only string headers are
needed for Bedrock; `frames()` splits a captured body into its frames.
"""
from __future__ import annotations

import json
import struct
import zlib

STRING = 7


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("ascii"), value.encode("utf-8")
    return (struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", STRING, len(raw_value))
            + raw_value)


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    raw_headers = b"".join(header(name, value) for name, value in headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", _crc(body))


def payload(obj) -> bytes:
    """Compact JSON with sorted keys, as Bedrock's payloads are."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def event(event_type: str, body) -> bytes:
    return frame([(":event-type", event_type), (":content-type", "application/json"),
                  (":message-type", "event")], payload(body))


def exception(exception_type: str, message: str) -> bytes:
    """A modeled exception (`throttlingException`, `serviceUnavailableException`, ...)."""
    return frame([(":exception-type", exception_type), (":content-type", "application/json"),
                  (":message-type", "exception")], payload({"message": message}))


def error(code: str, message: str) -> bytes:
    """An unmodeled error: code and message travel in headers, the payload is empty."""
    return frame([(":error-code", code), (":error-message", message), (":message-type", "error")],
                 b"")


def frames(data: bytes) -> list[bytes]:
    """A captured body split into its frames (lengths from each prelude)."""
    out, offset = [], 0
    while offset < len(data):
        (total,) = struct.unpack_from(">I", data, offset)
        out.append(data[offset:offset + total])
        offset += total
    return out
