"""The Flask application: `create_app(config)`."""
from __future__ import annotations

import logging

from flask import Flask, current_app, g, request
from werkzeug.exceptions import HTTPException

from providers import registry
from proxy import access_log, errors, metrics, model_facts, redact, tokens, tracing, warm
from proxy.access_log import RequestLog
from proxy.config import Config
from proxy.log.costs import usage_cost
from proxy.log.pricing import Pricing
from proxy.log.recorder import Recorder
from proxy.log.retention import Retention
from proxy.policy.budget import Budgets
from proxy.policy.gate import RateGate
from proxy.policy.keys import MASTER, KeyStore
from proxy.respond import error_response, failure_answer, flask_response
from proxy.routes import (catalog, chain, chat, compare, dashboard, docs, feedback, health,
                          keys, sessions, status, usage)
from proxy.routing import breaker
from proxy.routing.auto import AutoRouter
from proxy.routing.selection import Router
from proxy.upstream import HttpPool

log = logging.getLogger("switchboard.app")

# Werkzeug's HTTP errors -> our taxonomy (same status, OpenAI's body)
_HTTP_ERRORS = {
    404: lambda exc: errors.NotFound(f"Unknown request URL: {request.method} {request.path}."),
    405: lambda exc: errors.method_not_allowed(request.method, request.path, exc.valid_methods),
    413: lambda exc: errors.body_too_large(request.max_content_length),
    415: lambda exc: errors.UnsupportedMediaType(exc.description),
}


class Gateway:
    """What the views share: config, providers, router, upstream pool."""

    def __init__(self, config: Config):
        self.config = config
        self.http = HttpPool(config.connect_timeout, config.read_timeout,
                             config.max_stream_event_bytes)
        self.providers = {name: registry.build(spec, self.http)
                          for name, spec in config.providers.items()}
        self.warmer = warm.start(self.providers, self.http)  # greenlets: start-up does not wait
        self.secrets = config.secrets()
        redact.protect(self.secrets)
        self.secret_bytes = tuple(s.encode() for s in redact.gateway_secrets())
        self.pricing = Pricing.load(config.pricing)
        self.model_facts = model_facts.merged(config.model_facts)
        self.feed = metrics.Feed(metrics.LabelValues.configured(
            self.providers, config.models, self.model_facts, self.pricing))
        self.recorder = Recorder(config.database_url, self.pricing, content_mode=config.log_content,
                                 max_queue=config.log_queue_max,
                                 retention=Retention(config.log_retention_days, config.log_max_rows),
                                 feed=self.feed.push)
        self.metrics = metrics.Pump(self.feed, self.recorder.writer)
        self.metrics.start()
        self.keys = KeyStore(self.recorder.connection, config.master_key)
        auto = AutoRouter(self.providers, self.model_facts, self.pricing, self.keys.connection,
                          allowed=config.auto_models)
        self.router = Router(self.providers, config.models, config.default_provider, auto=auto,
                             breaker=breaker.from_specs(config.providers.values()))
        self.budgets = Budgets(self.keys.connection, config.monthly_cost_limit)
        self.rate_gate = RateGate.from_config(config, self.recorder.path, self.model_facts)
        self.tracer = tracing.start(config)  # None when tracing is off

    def cost_of(self, model: str | None, usage: dict | None) -> float | None:
        return usage_cost(self.pricing, model, usage)

    def record(self, entry) -> None:
        metrics.InFlight.dec()
        self.recorder.record(entry)

    def close(self) -> None:
        self.recorder.close()
        self.metrics.tick()
        self.warmer.stop()
        self.http.close()
        if self.tracer is not None:
            self.tracer.shutdown()


class Switchboard(Flask):
    def ensure_sync(self, func):
        """Every view and hook here is synchronous (gevent does the waiting), so
        skip Flask's per-call coroutine check."""
        return func


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    access_log.configure(config.log_level, config.log_format)
    app = Switchboard("switchboard")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    gateway = Gateway(config)
    app.extensions["switchboard"] = gateway
    default = gateway.providers.get(config.default_provider)
    if default is not None and default.spec.type == "echo":
        tokens.encoding_for("")  # echo counts every request: load the tokenizer now, not on one

    for blueprint in (catalog.bp, keys.bp, sessions.bp, feedback.bp, usage.bp, compare.bp,
                      chain.bp, status.bp):
        app.register_blueprint(blueprint, url_prefix="/v1")
        # full-path clients (a voice agent's "think" URL) may omit /v1
        app.register_blueprint(blueprint, url_prefix="", name=f"{blueprint.name}_bare")
    app.register_blueprint(health.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(docs.bp)

    app.before_request(_start)
    app.after_request(_finish)
    app.register_error_handler(errors.GatewayError, _failure)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _failure)
    app.wsgi_app = chat.ChatEndpoint(app.wsgi_app, gateway, config.max_body_bytes)
    _warn_unavailable_default(gateway)
    _warn_if_open(gateway)
    return app


_PUBLIC = frozenset(("/", "/health", "/ready"))
# files and the API's description only: the data needs a key
_PUBLIC_BLUEPRINTS = frozenset((dashboard.bp.name, docs.bp.name))


def _start() -> None:
    # request and g are context-local proxies: each look-up costs, so once each
    headers, path = request.headers, request.path
    record = RequestLog(access_log.new_request_id(), path, access_log.client_request_id(headers))
    g.request_id, g.record = record.request_id, record
    access_log.serving(record)
    _trace(record, headers, path)
    if path not in _PUBLIC and request.blueprint not in _PUBLIC_BLUEPRINTS:
        keys = current_app.extensions["switchboard"].keys
        principal = keys.authenticate(headers)
        g.principal, record.api_key_id = principal, principal.key_id
        if path == "/metrics" and keys.enabled and principal is not MASTER:
            raise errors.PermissionDenied("Only the master key can read /metrics.")


_UNTRACED = frozenset(("/health", "/ready", "/metrics"))  # probes and scrapes


def _trace(record: RequestLog, headers, path: str) -> None:
    tracer = current_app.extensions["switchboard"].tracer
    if tracer is not None and path not in _UNTRACED:
        rule = request.url_rule
        tracer.request(record, headers, request.method, rule.rule if rule else None)


def _finish(response):
    record = g.get("record")
    if record is not None:
        response.headers["x-request-id"] = record.request_id
        if record.client_request_id:
            response.headers["x-client-request-id"] = record.client_request_id
        if record.trace_id:
            response.headers["x-trace-id"] = record.trace_id
        record.status = response.status_code
        response.call_on_close(record.finish)
    return response


def _failure(exc: Exception):
    return flask_response(failure_answer(exc, g.get("record")))


def _http_error(exc: HTTPException):
    build = _HTTP_ERRORS.get(exc.code)
    return error_response(build(exc) if build else
                          errors.InvalidRequest(exc.description or exc.name, status=exc.code))


def _warn_if_open(gateway: Gateway) -> None:
    if not gateway.keys.enabled:
        log.warning("GATEWAY_MASTER_KEY is not set: the gateway is OPEN, anyone who can reach it "
                    "can spend its providers' credits. Set GATEWAY_MASTER_KEY before exposing it.")


def _warn_unavailable_default(gateway: Gateway) -> None:
    default = gateway.providers.get(gateway.config.default_provider)
    if default is None:
        log.error("PROVIDER_NAME=%s is not a known provider", gateway.config.default_provider)
    elif not default.spec.available:
        log.error("default provider %s is not configured: set %s", default.name,
                  ", ".join(default.spec.missing))
