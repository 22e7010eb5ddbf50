"""Recording durations in bulk gives the same histogram as recording them one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.results.latency import PERCENTILES, new_histogram, record_many_ns, record_ns


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(10**9), 5 * 10**15), max_size=300))
def test_record_many_matches_one_by_one(values):
    one, many = new_histogram(), new_histogram()
    for v in values:
        record_ns(one, v)
    record_many_ns(many, values)
    assert list(many.counts) == list(one.counts)
    assert many.get_total_count() == one.get_total_count() == len(values)
    assert (many.get_min_value(), many.get_max_value(), many.get_mean_value()) == (one.get_min_value(), one.get_max_value(), one.get_mean_value())
    assert [many.get_value_at_percentile(p) for p in PERCENTILES.values()] == [one.get_value_at_percentile(p) for p in PERCENTILES.values()]
    assert many.encode() == one.encode()
