"""prometheus_client's private names: the pinned version has no batch observe,
so many values are added to a histogram child with one update per bucket. A
child keeps its bucket counters in `_buckets` against `_upper_bounds` (each
bucket counts values up to its bound; the scrape makes them cumulative) and the
total in `_sum`."""
from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

from prometheus_client import CollectorRegistry, Histogram

from proxy.shims import require


def check() -> None:
    """Without creating a value (in multiprocess mode a value is a file that
    /metrics would show): the bounds on a labelled parent, the counters by the
    names the child's initialiser assigns."""
    require(Histogram("shim_check", "shim check", ("label",), registry=CollectorRegistry()),
            ("_upper_bounds",), "prometheus_client")
    assigned = Histogram._metric_init.__code__.co_names
    require(type("Histogram._metric_init", (), dict.fromkeys(assigned)), ("_buckets", "_sum"),
            "prometheus_client")


check()


def observe_all(histogram, values: list[float]) -> None:
    """`histogram.observe(v)` for each of `values`, in one update per bucket touched."""
    bounds, per_bucket = histogram._upper_bounds, defaultdict(int)
    for value in values:
        per_bucket[bisect_left(bounds, value)] += 1
    histogram._sum.inc(sum(values))
    for index, count in per_bucket.items():
        histogram._buckets[index].inc(count)
