"""The bundled tokenizer: the published vocabulary, checked, never downloaded."""
import gzip
import socket
import urllib.request

import pytest
import requests

from proxy import tokens


def test_o200k_counts_known_strings():
    enc = tokens.encoding_for("gpt-4o")
    assert enc.name == "o200k_base"
    assert enc.encode("hello world") == [24912, 2375]  # o200k_base ids, as tiktoken gives them
    assert tokens.count_text("hi there") == 2


def test_cl100k_for_older_models():
    enc = tokens.encoding_for("gpt-4-turbo")
    assert enc.encode("hello world") == [15339, 1917]  # cl100k_base ids


def test_message_count_includes_openai_framing():
    # 3 per message + role + content, plus 3 for the reply: what OpenAI bills for "hi there"
    assert tokens.count_messages([{"role": "user", "content": "hi there"}]) == 9


def test_a_tampered_vocabulary_is_refused(monkeypatch, tmp_path):
    class Fake:
        def joinpath(self, _):
            return self

        def read_bytes(self):
            return gzip.compress(b"aGk= 0\n")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # no good copy cached yet
    monkeypatch.setattr(tokens.resources, "files", lambda _pkg: Fake())
    with pytest.raises(ValueError, match="Hash mismatch"):  # tiktoken's own check
        tokens._load_o200k()


def _no_network(*args, **kwargs):
    raise AssertionError("the tokenizer tried to reach the network")


def test_loaded_by_tiktoken_with_published_hashes_and_never_downloaded(monkeypatch, tmp_path):
    for owner, name in ((socket.socket, "connect"), (socket, "create_connection"),
                        (socket, "getaddrinfo"), (urllib.request, "urlopen"),
                        (requests, "get"), (requests.Session, "request")):
        monkeypatch.setattr(owner, name, _no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(tokens, "_encodings", {})
    loaded = []
    real = tokens.load_tiktoken_bpe
    monkeypatch.setattr(tokens, "load_tiktoken_bpe",
                        lambda path, expected_hash: loaded.append(expected_hash) or
                        real(path, expected_hash=expected_hash))
    assert tokens.encoding_for("gpt-4o").encode("hello world") == [24912, 2375]
    assert tokens.count_text("hello world") == 2
    # the sha256 tiktoken publishes for o200k_base (tiktoken_ext/openai_public.py)
    assert loaded == ["446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"]
    assert tokens.encoding_for("gpt-4-turbo").encode("hello world") == [15339, 1917]


def test_estimate_never_tokenises():
    assert tokens.estimate_bytes(400_000) == 100_000
    assert tokens.estimate_bytes(0) == 1


def test_estimates_need_no_tokenizer():
    assert tokens.estimate_text("") == 0
    assert tokens.estimate_text("abcd") == 1 and tokens.estimate_text("abcde") == 2
    assert tokens.estimate_text("é" * 4) == 2  # by UTF-8 bytes
    # the framing of count_messages: 3 per reply, 3 per message, 1 for the role
    assert tokens.estimate_messages([{"role": "user", "content": "hi there"}]) == 3 + 3 + 1 + 2
    assert tokens.estimate_messages([{"role": "user", "content": [
        {"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "x"}}]}]) == 8
