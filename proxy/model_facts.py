"""What is known about models (context window, capabilities): the shipped
catalog (`model_catalog.toml`) with the operator's `[model_info]` over it, and
the one way every reader (/v1/models, `auto`, the rate gate) looks an id up."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Mapping


@lru_cache(maxsize=1)
def shipped() -> dict:
    text = resources.files("proxy").joinpath("model_catalog.toml").read_text()
    return tomllib.loads(text)["models"]


def merged(operators: Mapping[str, Mapping]) -> dict:
    return {**shipped(), **operators}


def facts_of(facts: Mapping, *ids: str) -> dict:
    """The facts of the first of `ids` known, each as given, then without its
    provider prefix (`openai/gpt-4o` -> `gpt-4o`); {} when none is."""
    for model in ids:
        found = facts.get(model) or facts.get(model.rsplit("/", 1)[-1])
        if found:
            return found
    return {}
