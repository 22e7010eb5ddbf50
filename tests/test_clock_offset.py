"""The NTP clock-offset estimator (exchange/runner/clock.py): offset and delay of a round trip,
the minimum-delay estimate and its error bound, and this process's corrected clock."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.results.report.sections import clock_offsets, input_warnings
from exchange.runner import clock
from exchange.runner.clock import ClockError, Sample, estimate, offset_and_delay, offset_warning
from schemas.clock import ClockOffset

MS = 1_000_000


def trip(true_offset: int, start: int, forward: int, held: int, back: int) -> Sample:
    """A round trip seen by a client whose clock is ``true_offset`` behind the server's:
    ``forward`` ns to the server, ``held`` there, ``back`` ns to the client."""
    return Sample(start - true_offset, start + forward, start + forward + held, start + forward + held + back - true_offset)


def test_offset_and_delay_of_one_round_trip() -> None:
    # RFC 5905's example shape: 10 ms each way, 1 ms at the server, client 500 ms ahead
    offset, delay = offset_and_delay(trip(-500 * MS, 10**18, 10 * MS, 1 * MS, 10 * MS))
    assert offset == -500 * MS
    assert delay == 20 * MS


delays = st.integers(min_value=0, max_value=200 * MS)


@given(
    true_offset=st.integers(min_value=-(10**12), max_value=10**12),
    legs=st.lists(st.tuples(delays, st.integers(min_value=0, max_value=5 * MS), delays), min_size=1, max_size=60),
)
def test_the_true_offset_lies_within_the_error_bound(true_offset: int, legs: list[tuple[int, int, int]]) -> None:
    """Whatever the delays and their asymmetry, |estimate − truth| ≤ error_ns."""
    samples = [trip(true_offset, 10**18 + i * 10 * MS, f, h, b) for i, (f, h, b) in enumerate(legs)]
    got = estimate(samples)
    assert abs(got.offset_ns - true_offset) <= got.error_ns
    assert got.samples == len(samples)
    assert got.min_delay_ns == min(f + b for f, _, b in legs)
    assert got.error_ns <= got.min_delay_ns + 1  # inside the best round trip's interval, whose width is its delay


@given(true_offset=st.integers(min_value=-(10**12), max_value=10**12), legs=st.lists(st.tuples(delays, delays), min_size=1, max_size=40))
def test_symmetric_delays_give_the_exact_offset(true_offset: int, legs: list[tuple[int, int]]) -> None:
    samples = [trip(true_offset, 10**18 + i * MS, d, h, d) for i, (d, h) in enumerate(legs)]
    assert estimate(samples).offset_ns == true_offset


@given(
    true_offset=st.integers(min_value=-(10**10), max_value=10**10),
    noise=st.lists(st.tuples(st.integers(50 * MS, 500 * MS), st.integers(0, 2 * MS)), min_size=30, max_size=60),
    quick=st.lists(st.tuples(st.integers(0, MS), st.integers(0, MS)), min_size=10, max_size=20),
)
def test_slow_asymmetric_round_trips_do_not_pull_the_estimate(true_offset: int, noise: list[tuple[int, int]], quick: list[tuple[int, int]]) -> None:
    """A broker that holds one way for up to half a second (Tansu's fetch wait) shifts
    those samples' offsets by up to 250 ms; the minimum-delay ones stay within 1 ms."""
    samples = [trip(true_offset, 10**18 + i * MS, slow, 0, fast) for i, (slow, fast) in enumerate(noise)]
    samples += [trip(true_offset, 2 * 10**18 + i * MS, f, 0, b) for i, (f, b) in enumerate(quick)]
    got = estimate(samples)
    assert abs(got.offset_ns - true_offset) <= MS
    assert got.error_ns <= MS


def test_no_usable_round_trip_is_an_error() -> None:
    with pytest.raises(ClockError, match="no round trip"):
        estimate([])
    with pytest.raises(ClockError):  # the server held it 100 ms of a 10 ms round trip: not one clock
        estimate([Sample(0, 0, 100 * MS, 10 * MS)])


def test_contradicting_samples_fall_back_on_the_minimum_delay_one() -> None:
    """A clock stepped by 1 s between two round trips: no offset fits both; the bound is the best trip's."""
    samples = [trip(0, 10**18, MS, 0, MS), trip(1000 * MS, 10**18 + 5 * MS, 2 * MS, 0, 2 * MS)]
    got = estimate(samples)
    assert got.offset_ns == 0
    assert got.error_ns == MS


def test_now_ns_adds_this_process_offset() -> None:
    try:
        clock.set_offset(-500 * MS)
        before = time.time_ns()
        now = clock.now_ns()
        after = time.time_ns()
        assert before - 500 * MS <= now <= after - 500 * MS
        assert clock.offset_ns() == -500 * MS
    finally:
        clock.set_offset(0)
    assert clock.offset_ns() == 0


def _offset(ms: float, error_ms: float = 1.0) -> ClockOffset:
    return ClockOffset(offset_ns=int(ms * MS), error_ns=int(error_ms * MS), samples=32, min_delay_ns=int(2 * error_ms * MS))


def test_offsets_over_the_limit_are_warned_of_largest_first() -> None:
    offsets = {"router-0": _offset(0.4), "consumers": _offset(-500.2, 1.3), "producers": _offset(80)}
    line = offset_warning(offsets, 50, corrected=True)
    assert line is not None
    assert line.startswith("clock offsets over 50 ms to the controller's clock: consumers -500.2 ms ± 1.3, producers +80.0 ms ± 1.0; corrected")
    assert "router-0" not in line
    assert "NOT corrected (--no-clock-correction)" in (offset_warning(offsets, 50, corrected=False) or "")
    assert offset_warning(offsets, 600, corrected=True) is None
    assert offset_warning({}, 50, corrected=True) is None


def test_the_report_shows_the_offsets_and_the_warning() -> None:
    offsets = {"consumers": _offset(-500.2, 1.3).model_dump(), "router-0": _offset(0.4).model_dump()}
    warning = offset_warning({k: ClockOffset(**v) for k, v in offsets.items()}, 50, corrected=False)
    result = {"run": {"clock_offsets": offsets, "clock_correction": False}, "warnings": [warning]}
    assert clock_offsets(result["run"]) == "consumers -500.2 ± 1.3 ms, router-0 +0.4 ± 1.0 ms (not corrected)"
    assert 'id="run-warning"' in input_warnings(result) and "consumers -500.2 ms" in input_warnings(result)
    assert clock_offsets({}) is None and input_warnings({}) == ""
