"""The bundled tokenizer: the published vocabulary, checked, never downloaded."""
import gzip

import pytest

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


def test_a_tampered_vocabulary_is_refused(monkeypatch):
    class Fake:
        def joinpath(self, _):
            return self

        def read_bytes(self):
            return gzip.compress(b"aGk= 0\n")

    monkeypatch.setattr(tokens.resources, "files", lambda _pkg: Fake())
    with pytest.raises(RuntimeError, match="sha256"):
        tokens._load_o200k()


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
