"""`python -m proxy.check URL`: the stream checker. Points at any OpenAI-compatible
chat endpoint and reports its streaming conformance and its timings (README,
"Checking a stream"). Standard library plus the gateway's own SSE cutting only."""
