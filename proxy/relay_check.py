"""What an OpenAI-compatible upstream answers is checked on its way through,
not trusted: a 200 body must be a JSON object, a stream must end (a
`finish_reason`, `[DONE]` or an error event), and no secret of the gateway's
leaves in either (an upstream may echo a key it was given, or one a prompt
carried). Each check is a byte search over what is relayed anyway."""
from __future__ import annotations

import re
from typing import Iterator

import orjson

from proxy.errors import UpstreamError
from proxy.redact import scrub_bytes

# a chunk that says the answer is over; quotes inside JSON strings are escaped,
# so `"finish_reason":"` can only be the field with a value that is not null
_ENDED = re.compile(rb'"finish_reason":\s*"|^data: ?(?:\[DONE\]|\{"error")', re.M)


def whole_body(body: bytes, provider: str, secrets: tuple[bytes, ...]) -> tuple[bytes, dict]:
    """(the body to relay, the answer it holds), or UpstreamError (502) when the
    upstream's 200 is not a JSON object."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise UpstreamError(f"{provider} answered with a body that is not a JSON object.")
    return scrub_bytes(body, secrets), answer


def stream(batches: Iterator[list[bytes]], provider: str,
           secrets: tuple[bytes, ...]) -> Iterator[list[bytes]]:
    """Batches of SSE event blocks, scrubbed; a stream that stops before its end
    raises `upstream_truncated` (the stream guard sends it as an error event and
    `[DONE]`, so the client never takes a cut answer for a whole one)."""
    ended = False
    for batch in batches:
        if not ended:
            ended = any(_ENDED.search(block) for block in batch)
        yield [scrub_bytes(block, secrets) for block in batch] if secrets else batch
    if not ended:
        raise UpstreamError(f"{provider} ended the stream before the answer was complete "
                            "(no finish_reason and no [DONE]).", code="upstream_truncated")
