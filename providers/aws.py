"""What the boto3 providers (bedrock, bedrock-agent) share: one client per provider
instance, AWS failures mapped to the gateway's taxonomy, and event iterators
that release their HTTP stream however they end.

boto3 is imported when the first client is made, never at import. Region comes
from the provider's options (AWS_REGION, then AWS_DEFAULT_REGION); credentials
from the standard chain; endpoints from boto3's own AWS_ENDPOINT_URL_<SERVICE>.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Callable, ClassVar, Iterable, Iterator

from providers.base import CompletionProvider, Event
from proxy.errors import (GatewayError, InvalidRequest, ModelNotFound, PermissionDenied,
                          RateLimited, UpstreamError, UpstreamTimeout, from_upstream)
from proxy.redact import scrub

log = logging.getLogger("switchboard.aws")

#: options every AWS preset reads from the environment
REGION_OPTIONS = {"region": ("AWS_REGION", None), "default_region": ("AWS_DEFAULT_REGION", None)}
POOL_CONNECTIONS = 512  # one gevent worker serves many streams at once


def make_client(service: str, options, http):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError
    config = Config(
        connect_timeout=float(options.get("connect_timeout") or getattr(http, "connect_timeout", 10.0)),
        read_timeout=float(options.get("idle_timeout") or getattr(http, "read_timeout", 600.0)),
        retries={"total_max_attempts": 1, "mode": "standard"},  # the gateway owns retries
        max_pool_connections=POOL_CONNECTIONS, tcp_keepalive=True,
        user_agent_extra="switchboard")
    extra = {"endpoint_url": options["endpoint_url"]} if options.get("endpoint_url") else {}
    try:
        session = boto3.session.Session(profile_name=options.get("profile") or None)
        return session.client(service, region_name=options.get("region")
                              or options.get("default_region") or None, config=config, **extra)
    except BotoCoreError as exc:
        raise GatewayError(f"The {service} client could not be created: {scrub(str(exc))}",
                           code="provider_not_configured") from None


class Client:
    """The provider's boto3 client. Made with the provider (a worker pays the model
    loading before it serves) when the provider is configured, else on first use."""

    def __init__(self, service: str, spec, http):
        self.service, self.options, self.http = service, spec.options, http
        self._client = None
        self._lock = threading.Lock()
        if spec.available:
            try:
                self.get()
            except GatewayError as exc:
                log.warning("%s: %s", spec.name, exc.message)

    def get(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self.service, self.options, self.http)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK")


def env_secrets() -> tuple[str, ...]:
    """AWS credentials boto3 may read from the environment: never echoed back."""
    return tuple(v for v in map(os.environ.get, _SECRET_ENV) if v)


# ---- errors ------------------------------------------------------------------

_UNAVAILABLE = (UpstreamError, {"status": 503, "code": "service_unavailable"})
_FAILED = (UpstreamError, {})
# AWS refused the gateway's own identity: not the client's key, so not a 401
_AUTH = (UpstreamError, {"code": "upstream_auth_error"})

#: AWS error code (botocore's structured code, never message text) -> (class, overrides).
#: In-stream exceptions carry the lower-camel member name; codes are compared with
#: the first letter upper-cased.
ERRORS: dict[str, tuple[type[GatewayError], dict]] = {
    "ValidationException": (InvalidRequest, {}),
    "ThrottlingException": (RateLimited, {}),
    "ServiceQuotaExceededException": (RateLimited, {"code": "insufficient_quota"}),
    "AccessDeniedException": (PermissionDenied, {}),
    "ResourceNotFoundException": (ModelNotFound, {"param": "model"}),
    "ConflictException": (GatewayError, {"status": 409, "type": "invalid_request_error",
                                         "code": "conflict"}),
    "ModelTimeoutException": (UpstreamTimeout, {}),
    "ServiceUnavailableException": _UNAVAILABLE,
    "ModelNotReadyException": _UNAVAILABLE,
    "InternalServerException": _FAILED,
    "ModelErrorException": _FAILED,
    "ModelStreamErrorException": _FAILED,
    "BadGatewayException": _FAILED,
    "DependencyFailedException": _FAILED,
    "UnrecognizedClientException": _AUTH,
    "InvalidSignatureException": _AUTH,
    "ExpiredTokenException": _AUTH,
    "IncompleteSignature": _AUTH,
}


def _client_error(exc, provider: str, secrets: tuple[str, ...]) -> GatewayError:
    from botocore.exceptions import EventStreamError
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    code = code[:1].upper() + code[1:]
    message = scrub(str(error.get("Message") or code or "no details"), secrets)
    if code not in ERRORS:
        status = None if isinstance(exc, EventStreamError) else \
            (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return from_upstream(status or 502, message, code=code or None, provider=provider)
    cls, overrides = ERRORS[code]
    if issubclass(cls, (UpstreamError, UpstreamTimeout)):
        message = f"{provider} failed ({code}): {message}"
    return cls(message, **overrides)


def error_from(exc: BaseException, provider: str,
               secrets: tuple[str, ...] = ()) -> GatewayError | None:
    """The gateway error for a boto3/botocore/urllib3 failure; None for anything else."""
    import urllib3.exceptions as u3
    from botocore import exceptions as bx
    from botocore.eventstream import ParserError
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, provider, secrets)
    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError, u3.TimeoutError,
                        TimeoutError)):
        return UpstreamTimeout(f"{provider} did not answer in time")
    if isinstance(exc, bx.NoCredentialsError):
        return GatewayError(f"{provider}: no AWS credentials were found (environment, "
                            "profile or role)", code="provider_not_configured")
    if isinstance(exc, bx.ParamValidationError):
        return InvalidRequest(f"{provider} refused the request: {scrub(str(exc), secrets)}")
    if isinstance(exc, (bx.BotoCoreError, u3.HTTPError, ParserError, OSError)):
        return UpstreamError(f"could not reach {provider}: {type(exc).__name__}")
    return None


@contextmanager
def aws_errors(provider: str, secrets: tuple[str, ...] = ()):
    try:
        yield
    except Exception as exc:
        mapped = error_from(exc, provider, secrets)
        if mapped is None or mapped is exc:
            raise
        raise mapped from None


class Releasing:
    """Events read from an open boto3 event stream. The generator releases the
    stream in its own `finally`; `close()` (called by the gateway when the client
    is done or gone) also releases it when the generator never started."""

    def __init__(self, events: Iterator, release: Callable[[], None]):
        self._events, self._release = events, release

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._events)

    def close(self) -> None:
        try:
            self._events.close()
        finally:
            self._release()


class BotoProvider(CompletionProvider):
    """A provider backed by one boto3 client of `service`."""
    service: ClassVar[str]

    def __init__(self, spec, http):
        super().__init__(spec, http)
        self.client = Client(self.service, spec, http)

    def secrets(self) -> tuple[str, ...]:
        return (*super().secrets(), *env_secrets())

    def errors(self):
        return aws_errors(self.name, self.secrets())

    def relay(self, stream, head: Iterable[Event], translate: Callable[[dict], Iterable[Event]],
              tail: Callable[[], Iterable[Event]] = tuple) -> Releasing:
        """Events of an open boto3 event stream: `head`, each item translated, `tail()`."""
        return Releasing(self._read(stream, head, translate, tail), stream.close)

    def _read(self, stream, head, translate, tail) -> Iterator[Event]:
        try:
            yield from head
            with self.errors():
                for item in stream:
                    yield from translate(item)
            yield from tail()
        finally:
            stream.close()

    def close(self) -> None:
        self.client.close()
