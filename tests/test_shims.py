"""proxy/shims/: every private name of another library the gateway uses is
checked when its shim is imported, and a missing one is a clear error."""
import pytest
import tiktoken
from prometheus_client import Histogram

from proxy.shims import ShimMismatch
from proxy.shims import prometheus as prometheus_shim
from proxy.shims import tiktoken as tiktoken_shim


def test_the_pinned_versions_pass_their_checks():
    prometheus_shim.check()
    tiktoken_shim.check()


def test_a_histogram_without_its_bucket_counters_is_named(monkeypatch):
    monkeypatch.setattr(Histogram, "_metric_init", lambda self: None)
    with pytest.raises(ShimMismatch, match="prometheus_client.*_buckets, _sum"):
        prometheus_shim.check()


def test_an_encoding_without_its_python_ranks_is_named(monkeypatch):
    original = tiktoken.Encoding.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        del self._mergeable_ranks

    monkeypatch.setattr(tiktoken.Encoding, "__init__", init)
    with pytest.raises(ShimMismatch, match="tiktoken.*_mergeable_ranks"):
        tiktoken_shim.check()

