"""Scrub secrets out of text that leaves the gateway (error messages, debug logs)."""
from __future__ import annotations

import re

_PATTERNS = (
    # credentials inside URLs: scheme://user:secret@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
    # key-ish query parameters
    (re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig|signature|code)=)[^&\s\"']+"), r"\1***"),
    # bearer tokens
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1***"),
    # provider key formats: OpenAI, Anthropic, OpenRouter, Groq, Google, AWS access keys
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{6,}"), r"\1-***"),
    (re.compile(r"\bgsk_[A-Za-z0-9]{10,}"), "gsk_***"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), "AIza***"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1***"),
    # AWS account ids inside ARNs and bare 12-digit account numbers
    (re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:)\d{12}"), r"\1************"),
    (re.compile(r"(?<![\d.])\d{12}(?![\d.])"), "************"),
)


MIN_SECRET_LENGTH = 6  # shorter values would scrub ordinary words
_gateway_secrets: tuple[str, ...] = ()


def protect(secrets: tuple[str, ...]) -> None:
    """The gateway's own secrets (provider keys, the master key): `scrub` removes
    them from every text, whoever calls it."""
    global _gateway_secrets
    _gateway_secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)


def gateway_secrets() -> tuple[str, ...]:
    return _gateway_secrets


def scrub_bytes(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """`data` with each of `secrets` replaced: one byte search per secret, so cheap
    enough for every relayed event."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, b"***")
    return data


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in (*secrets, *_gateway_secrets):
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_SECRET_HEADERS = {"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie",
                   "x-amz-security-token"}


def safe_headers(headers) -> dict:
    return {k: ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in headers}
