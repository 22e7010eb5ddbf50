"""The consumers' duplicate detector: exact, and bounded in memory whatever a trace id says."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.dedupe import MAX_KEPT_TRACE, SeenSet
from schemas.envelope import parse_trace_id


def _allocated(fn) -> int:
    """Peak bytes Python allocated while ``fn`` ran."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Trace ids in other systems' shapes (department id, then a timestamp or a big counter), and
# numbers no int64 holds: each must cost about what a short string costs, never what it says.
FOREIGN = [
    b"7.1795976000000",  # epoch milliseconds (the issue's example)
    b"7.1795976000000000000",  # epoch nanoseconds: 20 digits, beyond int64
    b"7.999999999999999999",  # the largest 18-digit sequence
    b"7.9223372036854775807",  # int64 max
    b"7." + b"9" * 5000,  # more digits than int() accepts
    b"9" * 5000 + b".1",
    b"44190000000000000.1",  # a region code and a serial as the producer
    b"0.0",
    b"7.0000000000001795976",  # leading zeros
]


@pytest.mark.parametrize("trace", FOREIGN, ids=lambda t: t[:24].decode())
def test_a_trace_id_of_any_size_costs_little_and_is_deduplicated(trace):
    seen = SeenSet()
    took = _allocated(lambda: (seen.add("s", trace), seen.add("s", b"7.1"), seen.add("s", b"7.2")))
    assert took < 64 * 1024, f"{took:,} bytes for three trace ids"
    assert not seen.add("s", trace)
    assert seen.add("other-scope", trace)
    assert seen.add("s", b"7.3") and not seen.add("s", b"7.1")


def test_the_issues_example_no_longer_raises_memory_error():
    seen = SeenSet()
    assert seen.add("s", b"7.1795976000000")
    assert not seen.add("s", b"7.1795976000000")
    assert seen.memory_bytes() < 1024


def test_many_producers_each_with_a_far_sequence_cost_memory_in_proportion_to_the_ids():
    seen = SeenSet()
    n = 20_000
    rng = random.Random(3)
    traces = [b"%d.%d" % (rng.randrange(10**9), rng.randrange(10**15)) for _ in range(n)]
    # ~every id its own (scope, producer): what a flood of foreign ids does at worst
    took = _allocated(lambda: [seen.add("s", t) for t in traces])
    assert took < 600 * n, f"{took / n:.0f} bytes per id"
    assert not any(seen.add("s", t) for t in traces)


def test_a_producer_just_under_the_window_limit_cannot_grow_it_for_free():
    seen = SeenSet()
    took = _allocated(lambda: [seen.add("s", b"1.%d" % (k * 1_000_003)) for k in range(1, 5_000)])
    assert took < 2_000_000
    assert len(seen._producers[("s", 1)].bits) <= 5_000 + 128


def test_our_own_dense_sequences_read_out_of_order_stay_in_the_bitmap():
    seen = SeenSet()
    n, partitions = 200_000, 8
    # each partition in order, partitions read at different paces (one lags far behind)
    streams = [[s for s in range(1, n + 1) if s % partitions == p] for p in range(partitions)]
    order = []
    rng = random.Random(5)
    while any(streams):
        p = rng.choice([i for i, s in enumerate(streams) if s])
        take = 2000 if p else 200  # partition 0 reads ten times slower
        order.extend(streams[p][:take])
        del streams[p][:take]
    assert all(seen.add("flow", b"3.%d" % s) for s in order)
    p = seen._producers[("flow", 3)]
    assert not p.beyond, "dense ids stay in the bitmap"
    assert len(p.bits) <= n // 8 * 2, "a bit each, and at most doubled by growth"
    assert not any(seen.add("flow", b"3.%d" % s) for s in range(1, n + 1, 997))


def test_a_sequence_first_kept_beyond_the_window_is_still_a_duplicate_once_the_window_covers_it():
    seen = SeenSet()
    assert seen.add("s", b"1.5000")  # beyond the window of a producer with no ids yet
    assert seen._producers[("s", 1)].beyond == {5000}
    for s in range(1, 6000):
        if s != 5000:
            assert seen.add("s", b"1.%d" % s)
    assert len(seen._producers[("s", 1)].bits) * 8 > 5000, "the window grew past it"
    assert not seen.add("s", b"1.5000")
    assert seen.add("s", b"1.6001")


def test_a_long_trace_id_is_kept_as_a_digest():
    seen = SeenSet()
    long = b"x" * 1_000_000
    assert seen.add("s", long) and not seen.add("s", long)
    assert seen.add("s", long + b"y")
    assert all(len(t) <= MAX_KEPT_TRACE for _, t in seen._other)


def test_snapshot_and_restore_keep_every_kind_of_id():
    seen = SeenSet()
    ids = [b"1.1", b"1.2", b"1.900000", b"7.1795976000000", b"a-b-c", b"z" * 500, b"2.%d" % 10**17]
    for t in ids:
        assert seen.add("s", t)
    restored = SeenSet.restore(seen.snapshot())
    assert not any(restored.add("s", t) for t in ids)
    assert restored.add("s", b"1.3") and restored.add("s", b"1.900001")
    # a checkpoint written before the window existed (bitmaps and other ids only) still restores
    old = {"bits": [["s", 1, "Bg=="]], "other": []}
    assert not SeenSet.restore(old).add("s", b"1.1") and SeenSet.restore(old).add("s", b"1.3")


def test_parse_trace_id_takes_only_numbers_that_fit_int64():
    assert parse_trace_id(b"7.1795976000000") == (7, 1795976000000)
    assert parse_trace_id(b"7." + b"9" * 19) is None
    assert parse_trace_id(b"7." + b"9" * 5000) is None
    assert parse_trace_id(b"-1.5") is None and parse_trace_id(b"1.") is None


TRACES = st.one_of(
    st.builds(lambda p, s: b"%d.%d" % (p, s), st.integers(0, 3), st.integers(0, 3000)),
    st.builds(lambda p, s: b"%d.%d" % (p, s), st.integers(0, 10**20), st.integers(0, 10**30)),
    st.binary(max_size=80),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), TRACES), max_size=200))
def test_the_seen_set_agrees_with_a_plain_set_and_memory_follows_the_ids(adds):
    seen, reference = SeenSet(), set()
    for scope, trace in adds:
        new = (scope, trace) not in reference
        reference.add((scope, trace))
        assert seen.add(scope, trace) == new, (scope, trace)
    assert seen.memory_bytes() <= 300 * len(reference) + 1024
    restored = SeenSet.restore(seen.snapshot())
    assert not any(restored.add(s, t) for s, t in reference)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c"]), max_size=5), TRACES), max_size=100))
def test_add_scopes_answers_like_add_for_each_scope(rows):
    """One audit row names many subscriptions: parsing its trace id once must not change any answer."""
    together, one_by_one = SeenSet(), SeenSet()
    for scopes, trace in rows:
        assert together.add_scopes(scopes, trace) == [s for s in scopes if one_by_one.add(s, trace)], (scopes, trace)
