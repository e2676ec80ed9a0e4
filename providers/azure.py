"""Azure OpenAI: deployment URLs, `api-key` header, and Azure's content-filter
annotations removed so clients see OpenAI's shape."""
from __future__ import annotations

from urllib.parse import quote

import orjson

from providers.base import Call, Preset
from providers.openai_compat import OpenAICompatible
from providers.registry import register
from proxy.assemble import json_body
from proxy.errors import ModelNotFound
from proxy.sse import encode, parse_event

_FILTER_KEYS = ("prompt_filter_results", "prompt_annotations")
_CHOICE_FILTER_KEYS = ("content_filter_results", "content_filter_offsets")
# OpenAI's key order (Azure sorts keys alphabetically)
_ORDER = {
    "body": ("id", "object", "created", "model", "choices", "usage", "service_tier",
             "system_fingerprint"),
    "chunk": ("id", "object", "created", "model", "service_tier", "system_fingerprint", "choices",
              "usage"),
    "choice": ("index", "message", "delta", "logprobs", "finish_reason"),
    "message": ("role", "content", "tool_calls", "refusal", "annotations"),
    "usage": ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
              "completion_tokens_details"),
    "prompt_tokens_details": ("cached_tokens", "audio_tokens"),
    "completion_tokens_details": ("reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
                                  "rejected_prediction_tokens"),
}


def deployments(value: str | None) -> dict[str, str]:
    """`gpt-4o=prod-4o,gpt-4o-mini` -> {"gpt-4o": "prod-4o", "gpt-4o-mini": "gpt-4o-mini"}."""
    table = {}
    for item in (value or "").split(","):
        model, _, deployment = item.strip().partition("=")
        if model:
            table[model] = deployment.strip() or model
    return table


def _ordered(obj: dict, kind: str) -> dict:
    ordered = {k: obj[k] for k in _ORDER[kind] if k in obj}
    ordered.update((k, v) for k, v in obj.items() if k not in ordered)
    return ordered


def _openai_order(obj: dict, streaming: bool) -> dict:
    for i, choice in enumerate(obj["choices"]):
        for inner in ("message", "delta"):
            if isinstance(choice.get(inner), dict):
                choice[inner] = _ordered(choice[inner], "message")
        obj["choices"][i] = _ordered(choice, "choice")
    usage = obj.get("usage")
    if isinstance(usage, dict):
        for details in ("prompt_tokens_details", "completion_tokens_details"):
            if isinstance(usage.get(details), dict):
                usage[details] = _ordered(usage[details], details)
        obj["usage"] = _ordered(usage, "usage")
    return _ordered(obj, "chunk" if streaming else "body")


def normalise(obj: dict, streaming: bool) -> dict | None:
    """Drop Azure's filter fields; a chunk left with nothing for the client is dropped."""
    for key in _FILTER_KEYS:
        obj.pop(key, None)
    choices = []
    for choice in obj.get("choices", []):
        for key in _CHOICE_FILTER_KEYS:
            choice.pop(key, None)
        if streaming and "delta" not in choice:
            continue
        choices.append(choice)
    obj["choices"] = choices
    if streaming and not choices and not obj.get("usage"):
        return None
    return _openai_order(obj, streaming)


@register
class AzureOpenAI(OpenAICompatible):
    type_name = "azure"
    presets = (Preset(
        name="azure", base_url_env="AZURE_OPENAI_ENDPOINT", key_env="AZURE_OPENAI_API_KEY",
        required_env=("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"),
        options_env={"api_version": ("AZURE_OPENAI_API_VERSION", "2024-10-21"),
                     "deployed_models": ("AZURE_OPENAI_DEPLOYED_MODELS", "")}),)

    def __init__(self, spec, http):
        super().__init__(spec, http)
        self.deployments = deployments(spec.options.get("deployed_models"))

    def known_models(self) -> tuple[str, ...]:
        return tuple(self.deployments)

    def url(self, call: Call) -> str:
        deployment = self.deployments.get(call.model)
        if deployment is None:
            if self.deployments:
                raise ModelNotFound(
                    f"The model `{call.model}` is not deployed on azure. Deployed: "
                    f"{', '.join(sorted(self.deployments))}.", param="model")
            deployment = call.model
        return (f"{self.spec.base_url.rstrip('/')}/openai/deployments/{quote(deployment, safe='')}"
                f"/chat/completions?api-version={quote(self.spec.options['api_version'])}")

    def request_headers(self) -> dict:
        return {"Content-Type": "application/json", "api-key": self.spec.api_key or "",
                **self.spec.headers}

    def relay_stream(self, batches):
        for batch in batches:
            yield [out for out in map(self._normalised, batch) if out is not None]

    @staticmethod
    def _normalised(block: bytes) -> bytes | None:
        _, data = parse_event(block)
        if not data.startswith(b"{"):
            return block  # [DONE] and anything that is not a chunk pass unchanged
        chunk = normalise(orjson.loads(data), streaming=True)
        return encode(chunk) if chunk is not None else None

    def relay_body(self, body: bytes) -> bytes:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        return json_body(normalise(obj, streaming=False)) if isinstance(obj, dict) else body
