"""`echo`: answers with the last user message, word by word. Local, no network,
deterministic; usage is counted with the bundled tokenizer."""
from __future__ import annotations

import re
from typing import Iterator

from providers.base import (Call, CompletionProvider, Event, Finish, Preset, ResponseMeta,
                            TextDelta, Usage)
from providers.registry import register
from proxy import tokens

_WORDS = re.compile(r"\s*\S+\s*?(?=\s|$)|\s+$")


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return tokens.message_text(message)
    return ""


def words(text: str) -> list[str]:
    """Pieces that join back to `text`: each word carries the spaces before it."""
    return _WORDS.findall(text) or [text]


@register
class EchoProvider(CompletionProvider):
    type_name = "echo"
    presets = (Preset(name="echo", default_model="echo", models=("echo",)),)

    def execute(self, call: Call) -> Iterator[Event]:
        return self._events(call)

    def _events(self, call: Call) -> Iterator[Event]:
        text = last_user_text(call.body["messages"])
        limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
        pieces = words(text)
        finish = "stop"
        if limit is not None and len(pieces) > limit:
            pieces, finish = pieces[:limit], "length"
        answer = "".join(pieces)
        n = call.body.get("n") or 1
        yield ResponseMeta(model=call.model)
        for choice in range(n):
            for piece in pieces:
                yield TextDelta(piece, choice)
            yield Finish(finish, choice)
        yield Usage(prompt_tokens=tokens.count_messages(call.body["messages"], call.model),
                    completion_tokens=n * tokens.count_text(answer, call.model))
