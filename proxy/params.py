"""Bounds for what clients send the admin and analytics routes.

Every number, time, string and JSON value a client stores or computes with is
checked here first, so bad input is a 400 naming its field: never a 500, and
never a stored row that breaks every later read (a key expiring in 1e308, an
integer SQLite cannot hold, metadata too deep to serialise again).

A check is `check(value, param) -> value`; `checked(body, checks)` runs a table
of them over a request body. `null` is never passed to a check: it means
"unset" and each route decides what that does. Each check carries `schema`, the
JSON schema of what it accepts, from which the OpenAPI document (proxy/openapi)
describes the route that runs it.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import orjson

from proxy.errors import InvalidRequest

SQLITE_INT_MAX = 2**63 - 1       # SQLite INTEGER is signed 64-bit
MAX_LIMIT = 10**12               # rate limits (requests, tokens per minute)
MAX_USD = 10**12                 # budgets
TIME_MIN = 0.0                   # 1970-01-01T00:00:00Z
TIME_MAX = 253402300799.0        # 9999-12-31T23:59:59Z, the last second `datetime` can show
MAX_JSON_DEPTH = 16              # nested objects and lists in stored metadata
MAX_JSON_BYTES = 16 * 1024       # stored metadata, encoded
MAX_NAME = 200                   # key names, session titles
MAX_ID = 256                     # model and provider names, completion ids
MAX_PROMPT = 200_000             # system prompts (about 50k tokens)
MAX_ITEMS = 256                  # entries of a key's model or provider list

Check = Callable[[Any, str], Any]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def described(schema: dict) -> Callable[[Callable], Callable]:
    """Attach `schema` (what the decorated check accepts, as JSON schema) to it."""
    def attach(check: Callable) -> Callable:
        check.schema = schema
        return check
    return attach


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def is_number(value) -> bool:
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def integer(low: int, high: int) -> Check:
    @described({"type": "integer", "minimum": low, "maximum": high})
    def check(value, param: str) -> int:
        if not is_int(value) or not low <= value <= high:
            raise invalid(param, f"`{param}` must be an integer from {low} to {high}.")
        return value
    return check


def number(low: float, high: float) -> Check:
    @described({"type": "number", "minimum": low, "maximum": high})
    def check(value, param: str) -> float:
        if not is_number(value) or not low <= value <= high:
            raise invalid(param, f"`{param}` must be a number from {low} to {high}.")
        return value
    return check


def text(max_chars: int, *, min_chars: int = 0) -> Check:
    @described({"type": "string", "minLength": min_chars, "maxLength": max_chars})
    def check(value, param: str) -> str:
        if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
            raise invalid(param, f"`{param}` must be a string of {min_chars} to {max_chars} "
                                 "characters.")
        return value
    return check


def matching(pattern: re.Pattern, what: str) -> Check:
    @described({"type": "string", "pattern": f"^(?:{pattern.pattern})$", "description": what})
    def check(value, param: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise invalid(param, f"`{param}` must be {what}.")
        return value
    return check


# C0 and C1 control characters and DEL: never part of an id or a model name (CR/LF
# would split a response header that names one). Escapes, not the characters, so the
# pattern reads the same in the OpenAPI document (JSON schema's regular expressions)
CONTROL = r"\x00-\x1f\x7f-\x9f"
HAS_CONTROL = re.compile(f"[{CONTROL}]")


def printable(max_chars: int, min_chars: int = 0) -> Check:
    return matching(re.compile(f"[^{CONTROL}]{{{min_chars},{max_chars}}}"),
                    f"{f'{min_chars}-' if min_chars else 'at most '}{max_chars} characters "
                    "without control characters")


SESSION_ID = matching(re.compile(r"[A-Za-z0-9._:-]{1,128}"), "1-128 letters, digits or . _ : -")
# a chat call's X-Session-Id: clients (voice platforms) bring ids of their own making,
# so any text fit for storage, not only the ids the session API hands out
SESSION_HEADER = printable(128, min_chars=1)


def one_of(choices: tuple[str, ...]) -> Check:
    @described({"type": "string", "enum": list(choices)})
    def check(value, param: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise invalid(param, f"`{param}` must be one of {', '.join(choices)}.")
        return value
    return check


def string_list(max_items: int = MAX_ITEMS, max_chars: int = MAX_ID) -> Check:
    item = text(max_chars)

    @described({"type": "array", "maxItems": max_items, "items": item.schema})
    def check(value, param: str) -> list[str]:
        if not isinstance(value, list) or len(value) > max_items:
            raise invalid(param, f"`{param}` must be a list of at most {max_items} strings.")
        return [item(entry, f"{param}[{i}]") for i, entry in enumerate(value)]
    return check


@described({"type": "object", "description": f"nested at most {MAX_JSON_DEPTH} levels deep, "
                                            f"at most {MAX_JSON_BYTES} bytes as JSON"})
def json_object(value, param: str) -> dict:
    """A JSON object that can be stored and served back: nested at most
    MAX_JSON_DEPTH levels, at most MAX_JSON_BYTES encoded."""
    if not isinstance(value, dict):
        raise invalid(param, f"`{param}` must be an object.")
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise invalid(param, f"`{param}` must be nested at most {MAX_JSON_DEPTH} levels deep.")
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer past 64 bits
        raise invalid(param, f"`{param}` holds a number out of range.") from None
    if size > MAX_JSON_BYTES:
        raise invalid(param, f"`{param}` must be at most {MAX_JSON_BYTES} bytes as JSON.")
    return value


def _depth(value, limit: int) -> int:
    """Nesting levels of `value`, counted no further than limit + 1 (so the
    recursion stays shallow whatever the client sent)."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return 0
    if limit < 0:
        return 1
    return 1 + max((_depth(child, limit - 1) for child in value), default=0)


TIME_TEXT = {"type": "string", "examples": ["2026-01-31", "2026-01-31T12:00:00Z"],
             "description": "an ISO 8601 date or datetime (UTC unless it says otherwise) or "
                            "unix seconds, 1970-01-01 to 9999-12-31"}


@described({"anyOf": [{"type": "number", "minimum": TIME_MIN, "maximum": TIME_MAX}, TIME_TEXT]})
def timestamp(value, param: str) -> float:
    """Unix seconds (a number) or an ISO 8601 string, within 1970..9999."""
    try:
        if is_number(value):
            return _bounded(float(value))
        if isinstance(value, str):
            return parse_time(value)
    except ValueError:
        pass
    raise bad_time(param)


@described(TIME_TEXT)
def parse_time(text: str, *, end: bool = False) -> float:
    """Unix seconds, an ISO date (UTC midnight; as an `end`, the end of that day)
    or an ISO datetime (UTC unless it says otherwise), within 1970..9999; else
    ValueError."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _iso_seconds(text) + (86400 if end and _DATE.fullmatch(text) else 0)
    return _bounded(seconds)


def _iso_seconds(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except OverflowError:  # year 1 in a timezone east of UTC
        raise ValueError(text) from None


def _bounded(seconds: float) -> float:
    """`seconds` if a time `datetime` can show back (1970..9999), else ValueError."""
    if not (math.isfinite(seconds) and TIME_MIN <= seconds <= TIME_MAX):
        raise ValueError(seconds)
    return seconds


def bad_time(param: str) -> InvalidRequest:
    return invalid(param, f"`{param}` must be an ISO 8601 date or datetime, or unix seconds, "
                          "between 1970-01-01 and 9999-12-31.")


def checked(body: Mapping, checks: Mapping[str, Check]) -> dict:
    """The fields of `body` that `checks` names, each through its check (null kept
    as null); other fields are left out."""
    return {name: None if body[name] is None else check(body[name], name)
            for name, check in checks.items() if name in body}
