"""tiktoken's private names, for memory only: an Encoding keeps a Python copy of
its ranks (~25 MB for o200k_base) beside the Rust core's own, solely so that it
can be pickled, which the gateway never does."""
from __future__ import annotations

import tiktoken

from proxy.shims import require


def check() -> None:
    tiny = tiktoken.Encoding("shim-check", pat_str=r"\S", mergeable_ranks={b"a": 0},
                             special_tokens={})
    require(tiny, ("_mergeable_ranks",), "tiktoken")


def drop_python_ranks(encoding: tiktoken.Encoding) -> None:
    encoding._mergeable_ranks = None


check()
