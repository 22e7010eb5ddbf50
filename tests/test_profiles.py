"""Load profiles: how many records are due when, and their intended send times."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from producers.profiles import RateSchedule
from schemas.scenario import LoadProfile

S = 1_000_000_000  # ns


def schedule(kind: str, rate: float = 1000, duration: float = 10, **kw) -> RateSchedule:
    return RateSchedule(rate, duration, LoadProfile(kind=kind, **kw), random.Random(7))


def test_constant_rate_is_evenly_spaced_from_its_phase():
    s = schedule("constant")
    assert 0 <= s.phase < 1
    first = int(s.phase * 1_000_000)
    assert s.total == 10_000 and s.due(int(2.5 * S)) == 2_500 + (s.phase * 1_000_000 <= 0)
    assert s.offsets(0, 3) == [first, first + 1_000_000, first + 2_000_000]
    assert s.due(first - 1_000) == 0 and s.due(first + 1_000) == 1


@pytest.mark.parametrize("kind", ["constant", "ramp", "diurnal"])
def test_each_record_is_due_exactly_at_its_intended_offset(kind):
    """due() and offsets() say the same thing, phase included: record i is due from its own
    offset on (to the microsecond: offsets are whole nanoseconds), not before."""
    s = RateSchedule(3.0, 20, LoadProfile(kind=kind), random.Random(11))
    offsets = s.offsets(0, s.total)
    assert offsets == sorted(offsets) and offsets[0] >= 0 and offsets[-1] < 20 * S
    for i, at in enumerate(offsets):
        assert s.due(at + 1_000) >= i + 1 and s.due(at - 1_000) <= i, (i, at)
    assert s.due(20 * S) == s.total


def test_entries_of_one_rate_do_not_publish_in_step():
    """Dongguan's 1,319 quiet entries at one record per 20 s: each keeps its count, and no
    5 ms tick carries more than a handful of them (in step, every one fell in the same tick)."""
    schedules = [RateSchedule(0.05, 60, None, random.Random(n)) for n in range(1_319)]
    assert {s.total for s in schedules} == {3}
    ticks = Counter(at // 5_000_000 for s in schedules for at in s.offsets(0, s.total))
    assert sum(ticks.values()) == 3 * 1_319 and max(ticks.values()) <= 8


def test_ramp_grows_linearly_from_start_to_end_multiplier():
    s = schedule("ramp", start=0.0, end=1.0)
    assert s.total == pytest.approx(5_000, abs=2)
    first_half, second_half = s.due(5 * S), s.total - s.due(5 * S)
    assert second_half == pytest.approx(3 * first_half, rel=0.01)  # ∫ t over [5, 10] is 3 × over [0, 5]


def test_steps_and_bursts_change_the_rate_where_they_say():
    steps = schedule("steps", steps=((0.0, 1.0), (0.5, 3.0)))
    assert steps.due(6 * S) - steps.due(5 * S) == pytest.approx(3_000, abs=2)
    burst = schedule("burst", at=0.2, length=0.1, multiplier=5.0)
    assert burst.due(3 * S) - burst.due(2 * S) == pytest.approx(5_000, abs=2)
    assert burst.due(5 * S) - burst.due(4 * S) == pytest.approx(1_000, abs=2)


def test_diurnal_has_a_quiet_night_and_a_busy_morning():
    s = schedule("diurnal", duration=24)  # one second per hour
    night = s.due(5 * S) - s.due(4 * S)  # 04:00-05:00
    morning = s.due(11 * S) - s.due(10 * S)  # 10:00-11:00
    assert morning > 5 * night


def test_poisson_arrivals_average_the_rate_and_come_in_order():
    s = schedule("poisson", duration=20)
    n = s.due(20 * S)
    assert n == pytest.approx(20_000, rel=0.03)
    offsets = s.offsets(0, n)
    assert offsets == sorted(offsets) and offsets[-1] < 20 * S
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert sum(1 for g in gaps if g > 3_000_000) / len(gaps) == pytest.approx(0.0498, abs=0.01)  # e^-3


def test_batch_mode_publishes_whole_tables_at_each_cycle():
    s = schedule("batch", rate=100, duration=10, every=2.0)
    assert s.rows == 200 and s.total == 1_000
    assert s.due(0) == 200 and s.due(int(1.99 * S)) == 200 and s.due(2 * S) == 400
    assert set(s.offsets(200, 200)) == {2 * S}  # one intended time for the whole batch


@pytest.mark.parametrize(("kind", "kw"), [("constant", {}), ("ramp", {}), ("batch", {"every": 2.0}), ("poisson", {})])
def test_a_publisher_that_wakes_only_at_next_at_sends_every_record_on_time(kind, kw):
    """The publisher skips a schedule until next_at(its next record): waking only then (or a
    microsecond later, as it does when nothing was due yet), every record is still sent within
    a microsecond of its intended offset, and all of them by the end."""
    s = RateSchedule(2.0, 30, LoadProfile(kind=kind, **kw), random.Random(5))
    sent, t, late, wakes = 0, -1_000, [], 0
    while not (s.next_at(sent) >= 30 * S and sent >= s.due(30 * S)):
        t = max(t + 1_000, s.next_at(sent))
        wakes += 1
        due = s.due(t)
        late += [t - at for at in s.offsets(sent, due - sent)]
        sent = due
    assert sent == len(late) == s.due(30 * S) > 0
    assert min(late) >= 0 and max(late) <= 1_000
    assert wakes <= 2 * sent + 1  # it slept in between: no tick-by-tick polling
