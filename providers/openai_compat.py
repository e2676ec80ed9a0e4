"""Any OpenAI-compatible API. OpenAI, OpenRouter, Gemini's compatibility
endpoint, Groq, vLLM and Ollama are presets (data), not classes. Bytes are
relayed unchanged, streamed or not."""
from __future__ import annotations

from providers.base import Call, CompletionProvider, Preset, Relay
from providers.registry import register
from proxy import forwarding, relay_check, stream_usage
from proxy.errors import openai_error_fields, relayed_from_upstream
from proxy.redact import scrub
from proxy.relay_headers import forwarded

PRESETS = (
    Preset(name="openai", base_url="https://api.openai.com/v1", base_url_env="OPENAI_BASE_URL",
           key_env="OPENAI_API_KEY", required_env=("OPENAI_API_KEY",), default_model="gpt-4o-mini",
           models=("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3",
                   "o4-mini", "gpt-5", "gpt-5-mini")),
    Preset(name="openrouter", base_url="https://openrouter.ai/api/v1",
           base_url_env="OPENROUTER_BASE_URL", key_env="OPENROUTER_API_KEY",
           required_env=("OPENROUTER_API_KEY",), default_model="openai/gpt-4o-mini"),
    Preset(name="gemini", base_url="https://generativelanguage.googleapis.com/v1beta/openai",
           base_url_env="GEMINI_BASE_URL", key_env="GEMINI_API_KEY",
           required_env=("GEMINI_API_KEY",), default_model="gemini-2.5-flash",
           models=("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")),
    Preset(name="groq", base_url="https://api.groq.com/openai/v1", base_url_env="GROQ_BASE_URL",
           key_env="GROQ_API_KEY", required_env=("GROQ_API_KEY",),
           default_model="llama-3.3-70b-versatile"),
    # keyless local servers: vLLM has no safe default URL (its default port is ours)
    Preset(name="vllm", base_url_env="VLLM_BASE_URL", key_env="VLLM_API_KEY",
           required_env=("VLLM_BASE_URL",)),
    Preset(name="ollama", base_url="http://127.0.0.1:11434/v1", base_url_env="OLLAMA_BASE_URL",
           default_model="llama3.2"),
)


@register
class OpenAICompatible(CompletionProvider):
    type_name = "openai"
    presets = PRESETS
    relays_request = True

    def __init__(self, spec, http):
        super().__init__(spec, http)
        #: the upstream body of a call: the client's bytes unless fields are removed
        self.request_body = forwarding.writer(spec.drop_params, spec.forward_params)

    def url(self, call: Call) -> str:
        return self.spec.base_url.rstrip("/") + "/chat/completions"

    def request_headers(self) -> dict:
        headers = {"Content-Type": "application/json", **self.spec.headers}
        if self.spec.api_key:
            headers["Authorization"] = f"Bearer {self.spec.api_key}"
        return headers

    def execute(self, call: Call) -> Relay:
        hidden_usage = stream_usage.ask_upstream(call)
        headers = self.request_headers()
        if call.trace_headers:
            headers.update(call.trace_headers)
        resp = self.http.request("POST", self.url(call), headers=headers,
                                 body=self.request_body(call), provider=self.name,
                                 timeouts=self.timeouts)
        if resp.status >= 400:
            raise self.error(resp.status, resp.read(), resp.headers())
        content_type = resp.header("content-type", "application/json")
        headers = forwarded(resp.headers())
        if call.stream and content_type.startswith("text/event-stream"):
            batches = self.relay_stream(resp.event_batches())
            if hidden_usage:
                batches = stream_usage.hide(batches, call.capture)
            chunks = relay_check.stream(batches, self.name, call.secrets)
            return Relay(resp.status, content_type, chunks, resp.close, headers)
        body, answer = relay_check.whole_body(self.relay_body(resp.read()), self.name,
                                              call.secrets)
        return Relay(resp.status, content_type, iter((body,)), resp.close, headers, answer)

    # Hooks for OpenAI dialects (Azure) that need light normalisation.
    def relay_stream(self, batches):
        """Batches of SSE event blocks, as they arrived."""
        return batches

    def relay_body(self, body: bytes) -> bytes:
        return body

    def error(self, status: int, body: bytes, headers):
        fields = openai_error_fields(body)
        fields["message"] = scrub(fields["message"], self.secrets())
        keep = {k: v for k, v in forwarded(headers).items() if k == "retry-after"}
        return relayed_from_upstream(status, provider=self.name, headers=keep, **fields)
