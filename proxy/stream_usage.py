"""Usage for every stream, even when the client did not ask for it.

The gateway asks an OpenAI-compatible upstream for `include_usage`, then gives
the client exactly what it would have received: the `"usage":null` fields are
taken out of each chunk (a byte replace: quotes inside JSON strings are always
escaped, so the pattern can only be the field itself) and the usage chunk goes
to the log instead of the client."""
from __future__ import annotations

from typing import Iterator

from providers.base import Call

_ASK = b'{"stream_options":{"include_usage":true},'


def ask_upstream(call: Call) -> bool:
    """Make `call`'s body ask for stream usage; True when the client had not."""
    if not call.stream or call.include_usage:
        return False
    options = call.body.get("stream_options")
    if options is None and call.raw is not None and call.raw[:1] == b"{" and call.body:
        call.raw = _ASK + call.raw[1:]  # no re-serialisation of a large prompt
    else:
        call.raw = None
    call.body["stream_options"] = {**(options or {}), "include_usage": True}
    return True


def hide(batches: Iterator[list[bytes]], capture: list[bytes]) -> Iterator[list[bytes]]:
    """Batches of event blocks (see UpstreamResponse.event_batches), usage taken out."""
    for batch in batches:
        kept = []
        for block in batch:
            if b'"choices":[]' in block and b'"usage":{' in block:
                capture.append(block)  # the usage chunk: for the log only
            else:
                kept.append(_without_usage(block))
        yield kept


def _without_usage(block: bytes) -> bytes:
    if b'"usage":null' in block:
        return block.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
    return block
