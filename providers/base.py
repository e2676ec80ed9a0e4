"""The provider contract.

`CompletionProvider.execute(call)` is the one entry point, streaming or not. It
returns either
  * a `Relay`: bytes from an OpenAI-compatible upstream, passed to the client
    unchanged (a whole body, or SSE event blocks as they arrive), or
  * an iterator of `Event`s, which the gateway assembles into OpenAI's JSON body
    or OpenAI's SSE chunks (proxy/assemble.py), so a translating provider never
    writes OpenAI's format itself.
Failures are raised as `proxy.errors.GatewayError`. A provider raises before it
returns (or before its first event) when it can, so the client gets a real
HTTP error rather than an error event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Mapping, Union

import orjson

from proxy.errors import InvalidRequest
from proxy.routing import latency
from proxy.upstream import Timeouts

# A warm connection idle this long is replaced: below the shortest idle limit common
# in front of APIs (AWS ALB 60 s, nginx 75 s, NAT gateways a few minutes), so the
# gateway closes it before a server or middlebox does, and never sends a request on
# a connection being closed or silently dropped.
WARM_IDLE_S = 30.0


# ---- events a translating provider yields ---------------------------------

@dataclass(slots=True)
class ResponseMeta:
    """Optional first event: the upstream's response id and the model that answered."""
    id: str | None = None
    model: str | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    """`index` counts tool calls within a choice (not content blocks). The first
    delta of a call carries `id` and `name`; later ones only argument fragments."""
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: str  # an OpenAI finish_reason: stop, length, tool_calls, content_filter
    choice: int = 0


@dataclass(slots=True)
class Usage:
    prompt_tokens: int  # including cached prompt tokens
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


Event = Union[ResponseMeta, TextDelta, ReasoningDelta, ToolCallDelta, Finish, Usage]


@dataclass
class Relay:
    """An OpenAI-format answer relayed as bytes. `chunks` yields the body (one
    piece for JSON, one SSE event block per item for streams); `close` must be
    called when the client is done or gone."""
    status: int
    content_type: str
    chunks: Iterator[bytes]
    close: Callable[[], None]
    headers: Mapping[str, str] = field(default_factory=dict)
    #: a whole JSON answer, already decoded by the relay's check (for its usage)
    answer: dict | None = None


Reply = Union[Relay, Iterator[Event]]


# ---- what a provider receives ---------------------------------------------

@dataclass
class Call:
    """One chat-completions call after validation and routing.

    `body` is the client's JSON object with gateway-only fields removed and
    `model` set to the upstream model id. `raw` is the client's original bytes
    while they are still an exact encoding of `body` (so a relay can forward
    them without re-serialising), else None.
    """
    body: dict
    raw: bytes | None
    model: str
    stream: bool
    include_usage: bool
    request_id: str
    session_id: str | None = None
    client_headers: Mapping[str, str] = field(default_factory=dict)
    #: bytes the log should see that the client does not (usage the gateway asked
    #: for on the client's behalf); the gateway reads them after the response
    capture: list[bytes] = field(default_factory=list)
    #: values no answer may carry back to the client or the log (the gateway's
    #: keys, the caller's own virtual key), as bytes for a relay's byte search
    secrets: tuple[bytes, ...] = ()
    #: W3C trace context for the upstream (`traceparent`, `tracestate`), when traced
    trace_headers: Mapping[str, str] | None = None

    def body_bytes(self) -> bytes:
        if self.raw is None:
            self.raw = encoded(self.body)
        return self.raw


def encoded(body: dict) -> bytes:
    """A request body the gateway changed, as JSON. orjson reads 1024 levels of
    nesting but writes only 254: a body deeper than that is refused, not a 500."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise InvalidRequest("The request's JSON is nested more than 254 levels deep: too deep "
                             "to forward once the gateway has changed it.",
                             code="invalid_value") from None


# ---- configuration a provider is built from -------------------------------

@dataclass(frozen=True)
class Preset:
    """A built-in provider instance described as data: which environment
    variables configure it and what it needs to be available."""
    name: str
    base_url: str | None = None
    base_url_env: str | None = None
    key_env: str | None = None
    required_env: tuple[str, ...] = ()
    default_model: str | None = None
    models: tuple[str, ...] = ()
    options_env: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderSpec:
    """A configured provider instance, resolved from a preset and/or the config file."""
    name: str
    type: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    available: bool = True
    missing: tuple[str, ...] = ()
    default_model: str | None = None
    models: tuple[str, ...] = ()
    #: True when the config file listed the models: others are then refused
    strict_models: bool = False
    aliases: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str | None] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: top-level request fields never forwarded upstream (config `drop_params`), and
    #: "openai" to forward only the fields OpenAI's spec defines (`forward_params`)
    drop_params: tuple[str, ...] = ()
    forward_params: str = "all"


class CompletionProvider:
    """Base class. Subclasses set `type_name` and `presets`, register with
    `providers.registry.register`, and implement `execute`."""

    type_name: ClassVar[str]
    presets: ClassVar[tuple[Preset, ...]] = ()
    #: True when the client's request body is forwarded upstream (so `drop_params` and
    #: `forward_params` apply); a translating provider reads only the fields it knows
    relays_request: ClassVar[bool] = False
    def __init__(self, spec: ProviderSpec, http):
        self.spec = spec
        self.http = http
        self.timeouts = Timeouts.from_options(spec.options, http.timeouts) if http else None
        #: how often a retryable failure is tried again on this provider (config `retries`)
        self.retries = int(spec.options.get("retries", 1) or 0)
        #: connections kept open to the upstream (config `warm_connections`; None: the
        #: default, see proxy/warm.py) and the idle seconds after which one is replaced
        warm = spec.options.get("warm_connections")
        self.warm_connections = None if warm is None else max(0, int(warm or 0))
        self.warm_idle_s = float(spec.options.get("warm_idle_s") or WARM_IDLE_S)
        #: seconds an attempt may wait for its first content token (None: no limit)
        self.first_token_timeout = latency.seconds(spec.options.get("first_token_timeout"),
                                                   f"providers.{spec.name}.first_token_timeout")
        if self.warm_idle_s <= 0:
            raise ValueError(f"provider {spec.name}: warm_idle_s must be positive")

    def warm_url(self) -> str | None:
        """A URL on the origin this provider's requests go to, whose connections the
        gateway keeps open (proxy/warm.py); None: none to keep (boto3, local)."""
        return self.spec.base_url

    @property
    def name(self) -> str:
        return self.spec.name

    def execute(self, call: Call) -> Reply:
        raise NotImplementedError

    def known_models(self) -> tuple[str, ...]:
        """Model ids to list in /v1/models."""
        return tuple(dict.fromkeys((*self.spec.models, *self.spec.aliases)))

    def accepts(self, model: str) -> bool:
        return not self.spec.strict_models or model in self.known_models()

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in anything sent back or logged."""
        return (self.spec.api_key,) if self.spec.api_key else ()

    def close(self) -> None:
        pass
