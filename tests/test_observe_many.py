"""Prometheus histograms observed a poll at a time (exchange/metrics/families.py
``observe_many_ns``) hold what observing each value one by one holds."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from exchange.metrics import LATENCY_BUCKETS, observe_many_ns


def _histogram() -> Histogram:
    return Histogram("dx_test_latency_seconds", "test", ["flow"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())


def _samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for metric in h.collect() for s in metric.samples}


@pytest.mark.parametrize("seed", range(5))
def test_a_poll_observed_at_once_gives_the_buckets_count_and_sum_of_observing_each(seed):
    rng = random.Random(seed)
    bounds_ns = [round(b * 1e9) for b in LATENCY_BUCKETS]
    # on and either side of every bound, zero, negatives (counted as 0) and beyond the last bound
    values = [b + d for b in bounds_ns for d in (-1, 0, 1)] + [0, -5, -(10**9), 30 * 10**9]
    values += [rng.randrange(0, 12 * 10**9) for _ in range(2000)]
    rng.shuffle(values)
    one_by_one, at_once = _histogram(), _histogram()
    for v in values:
        one_by_one.labels("f").observe(max(0, v) / 1e9)
    cut = rng.randrange(len(values))  # two polls
    observe_many_ns(at_once.labels("f"), values[:cut])
    observe_many_ns(at_once.labels("f"), values[cut:])
    expected, got = _samples(one_by_one), _samples(at_once)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if key[0].endswith("_sum"):
            assert got[key] == pytest.approx(value, rel=1e-9)
        else:
            assert got[key] == value, key


def test_a_histogram_child_without_buckets_to_add_to_is_observed_one_value_at_a_time():
    class Child:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    child = Child()
    observe_many_ns(child, [2_000_000, -3, 0])
    assert child.seen == [0.002, 0.0, 0.0]
