"""Rows are applied to the metrics in batches: the result must equal one update per row."""
from prometheus_client import CollectorRegistry, Histogram

from proxy.shims.prometheus import observe_all

VALUES = [0.001, 0.005, 0.0051, 0.3, 0.3, 2.5, 7, 400, 0.0]  # on, under and over the bounds


def samples(histogram_registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in histogram_registry.collect() for s in metric.samples
            if not s.name.endswith("_created")}


def test_batched_observations_equal_one_observe_per_value():
    buckets = (0.005, 0.01, 0.5, 2.5, 10)
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "h", ["m"], buckets=buckets, registry=one_by_one).labels("x")
    b = Histogram("h", "h", ["m"], buckets=buckets, registry=batched).labels("x")
    for value in VALUES:
        a.observe(value)
    observe_all(b, VALUES)
    assert samples(batched) == samples(one_by_one)
    assert samples(batched)[("h_count", (("m", "x"),))] == len(VALUES)
