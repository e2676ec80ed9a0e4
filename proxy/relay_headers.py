"""Which upstream response headers reach the client."""
from __future__ import annotations

_FORWARD_PREFIXES = ("x-ratelimit-", "openai-processing-ms", "openai-version", "retry-after",
                     "anthropic-ratelimit-")


def forwarded(headers: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(_FORWARD_PREFIXES):
            out[lower] = value
        elif lower in ("x-request-id", "request-id", "x-amzn-requestid"):
            out["x-upstream-request-id"] = value
    return out
