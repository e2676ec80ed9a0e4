"""A provider type registered as a plugin (SWITCHBOARD_PLUGINS=tests.plugins.house_provider),
exactly as a third party would: `house` answers "house: " and the last user message."""
from __future__ import annotations

from typing import Iterator

from providers.base import Call, CompletionProvider, Event, Finish, ResponseMeta, TextDelta, Usage
from providers.echo import last_user_text
from providers.registry import register

PREFIX = "house: "


@register
class HouseProvider(CompletionProvider):
    type_name = "house"

    def execute(self, call: Call) -> Iterator[Event]:
        return self._events(call)

    def _events(self, call: Call) -> Iterator[Event]:
        yield ResponseMeta(model=call.model)
        yield TextDelta(PREFIX)
        yield TextDelta(last_user_text(call.body["messages"]))
        yield Finish("stop")
        yield Usage(prompt_tokens=3, completion_tokens=2)
