"""One error taxonomy, rendered in OpenAI's error shape.

Each class carries the HTTP status, OpenAI's error `type` and a default `code`;
`render()` is the only place an error body is written.
"""
from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, type: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.code
        self.status = status or self.status
        self.type = type or self.type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """The provider answered with a failure (5xx) or could not be reached."""
    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than this gateway accepts ({limit} bytes; "
                           "MAX_REQUEST_BYTES).")


def method_not_allowed(method: str, path: str, allowed) -> MethodNotAllowed:
    return MethodNotAllowed(f"Method {method} is not allowed on {path}.",
                            headers={"Allow": ", ".join(sorted(allowed))})


def unexpected() -> GatewayError:
    """What the client sees of a bug: the details go to the log, under the request id."""
    return GatewayError("The gateway failed to handle this request; the error is logged with its "
                        "request id.")


def render(error: GatewayError) -> bytes:
    """OpenAI's own 400 layout: two-space indent, no trailing newline."""
    return orjson.dumps(error.body(), option=orjson.OPT_INDENT_2)


def stream_event(error: GatewayError) -> bytes:
    """After the first streamed byte an error can only be an event (openai-python raises on it)."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"


# Upstream HTTP status -> (our status, error class). 4xx keep their status,
# 5xx become 502, an upstream gateway timeout stays a timeout.
_UPSTREAM_STATUS = {
    400: InvalidRequest, 401: AuthenticationError, 403: PermissionDenied, 404: NotFound,
    408: UpstreamTimeout, 413: PayloadTooLarge, 429: RateLimited, 504: UpstreamTimeout,
}
_UPSTREAM_DEFAULT_TYPE = {400: "invalid_request_error", 401: "invalid_request_error",
                          403: "invalid_request_error", 404: "invalid_request_error",
                          409: "invalid_request_error", 413: "invalid_request_error",
                          422: "invalid_request_error", 429: "rate_limit_error"}


def from_upstream(status: int, message: str, *, type: str | None = None, code: str | None = None,
                  param: str | None = None, provider: str = "upstream",
                  headers: dict | None = None) -> GatewayError:
    """Map an upstream failure by its status and structured fields (never by message text)."""
    cls = _UPSTREAM_STATUS.get(status)
    if cls is None:
        cls = GatewayError if 400 <= status < 500 else UpstreamError
    if cls in (UpstreamError, UpstreamTimeout):
        return cls(f"{provider} failed with status {status}: {message}", code=code or cls.code,
                   headers=headers)
    keep_status = status if 400 <= status < 500 else cls.status
    return cls(message, status=keep_status, param=param, code=code,
               type=type or _UPSTREAM_DEFAULT_TYPE.get(status, cls.type), headers=headers)


def relayed_from_upstream(status: int, message: str, *, type: str | None = None,
                          code: str | None = None, param: str | None = None,
                          provider: str = "upstream", headers: dict | None = None) -> GatewayError:
    """An OpenAI-compatible upstream's own error, as the client would have had it
    from that upstream: its status (500 stays 500, 503 stays 503) and its
    OpenAI-shaped fields. Retries and fallbacks still see a server error by its
    status; 502 and 504 stay for what the gateway itself could not do."""
    if status < 500:
        return from_upstream(status, message, type=type, code=code, param=param,
                             provider=provider, headers=headers)
    cls = UpstreamTimeout if status == 504 else UpstreamError
    return cls(message, status=status, param=param, code=code or cls.code,
               type=type or cls.type, headers=headers)


def openai_error_fields(body: bytes) -> dict:
    """message/type/code/param from an OpenAI-shaped error body (some compatible
    servers wrap it in a list or send plain text)."""
    import orjson as _orjson
    try:
        data = _orjson.loads(body)
    except _orjson.JSONDecodeError:
        return {"message": body[:500].decode("utf-8", "replace").strip() or "no details"}
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error", data) if isinstance(data, dict) else {}
    if isinstance(error, str):
        return {"message": error}
    if not isinstance(error, dict):
        return {"message": "no details"}
    code = error.get("code")
    return {"message": str(error.get("message") or "no details"),
            "type": error.get("type") if isinstance(error.get("type"), str) else None,
            "code": str(code) if code is not None else None,
            "param": error.get("param") if isinstance(error.get("param"), str) else None}
