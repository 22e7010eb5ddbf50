"""When each record is meant to be sent: the rate schedule of a load profile.

A profile is a rate multiplier over the run (constant, ramp, steps, a burst, a working day
compressed into the run) or Poisson arrivals at the profile's rate, or, for table and file
exchange, whole batches at each update cycle. The publisher asks two things: how many
records are due by now, and the intended send time of each, in order. Intended times come
first and records are built to them, so a producer that falls behind shows it as publish
delay rather than bending the schedule (no coordinated omission).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

from schemas.scenario import LoadProfile

GRID_POINTS = 20_000  # resolution of the cumulative-count table for shaped profiles


def multiplier(profile: LoadProfile) -> Callable[[float], float]:
    """The rate multiplier m(f) at fraction f ∈ [0, 1) of the run."""
    kind = profile.kind
    if kind in ("constant", "poisson", "batch"):
        return lambda f: 1.0
    if kind == "ramp":
        a, b = profile.start, profile.end
        return lambda f: a + (b - a) * f
    if kind == "steps":
        points = sorted(profile.steps)
        starts = [p[0] for p in points]

        def step(f: float) -> float:
            i = bisect.bisect_right(starts, f) - 1
            return points[i][1] if i >= 0 else 1.0

        return step
    if kind == "burst":
        at, length, times = profile.at, profile.length, profile.multiplier
        return lambda f: times if at <= f < at + length else 1.0
    if kind == "diurnal":
        return _diurnal
    raise ValueError(f"unknown profile {kind}")


def _diurnal(f: float) -> float:
    """A working day in [0, 1): night batch window, morning peak, lunch dip, afternoon peak."""
    hour = 24 * f
    if hour < 6:
        return 0.15 + (0.6 if 1 <= hour < 3 else 0.0)  # quiet night, with the 01:00-03:00 batch window
    if hour < 9:
        return 0.15 + 0.85 * (hour - 6) / 3
    if hour < 12:
        return 1.0 + 0.3 * math.sin(math.pi * (hour - 9) / 3)
    if hour < 14:
        return 0.6
    if hour < 18:
        return 1.0 + 0.2 * math.sin(math.pi * (hour - 14) / 4)
    return max(0.15, 1.0 - 0.85 * (hour - 18) / 4)


class RateSchedule:
    """Intended send offsets (ns from the start) of one entry's records, in order.

    A constant or shaped schedule starts at a phase of its own, drawn from ``rng`` in [0, 1)
    of a record's interval (the publisher's generator per entry: the same in every run and in
    every producer worker, whatever ``--seed``): record ``i`` is due when ``i + phase`` records' worth of the run
    has passed. Independent departments do not publish in step; without it every entry of one
    rate would publish at the same instant (Dongguan's 1,319 entries at one record per 20 s
    sent 1,319 records in one tick every 20 s, a burst no real platform sees, and the run's
    p99 was those bursts). Counts do not change: ``total`` records, the last before the end.
    Batch cycles stay in step (a table at each cycle is what batch exchange is), Poisson
    arrivals have no phase to begin with.
    """

    def __init__(self, rate: float, duration_s: float, profile: LoadProfile | None, rng: random.Random) -> None:
        self.rate = rate
        self.duration_ns = int(duration_s * 1e9)
        self.kind = profile.kind if profile else "constant"
        self._rng = rng
        self.phase = rng.random() if self.kind not in ("poisson", "batch") else 0.0  # of a record's interval
        if self.kind == "constant":
            self.total = int(duration_s * rate)
        elif self.kind == "poisson":
            self._arrivals: list[int] = []  # drawn but not yet handed out
            self._drawn = 0  # arrivals drawn so far (all within the run)
            self._clock = 0.0
            self.total = None  # known only at the end: Poisson
        elif self.kind == "batch":
            self.every_ns = int(profile.every * 1e9)
            self.rows = max(1, round(rate * profile.every))
            self.total = max(1, math.ceil(duration_s / profile.every)) * self.rows
        else:
            m = multiplier(profile)
            step = duration_s / GRID_POINTS
            cum = [0.0]
            for k in range(GRID_POINTS):
                cum.append(cum[-1] + rate * m((k + 0.5) / GRID_POINTS) * step)
            self._cum, self._step_ns = cum, step * 1e9
            self.total = int(cum[-1])

    @property
    def expected_total(self) -> int:
        return self.total if self.total is not None else int(self.rate * self.duration_ns / 1e9)

    def due(self, elapsed_ns: int) -> int:
        """How many records are meant to have been sent ``elapsed_ns`` into the run."""
        elapsed_ns = min(elapsed_ns, self.duration_ns)
        if self.kind == "constant":
            return min(self.total, max(0, math.floor(elapsed_ns * self.rate / 1e9 - self.phase) + 1))
        if self.kind == "batch":
            return min(self.total, (elapsed_ns // self.every_ns + 1) * self.rows)
        if self.kind == "poisson":
            while True:
                upcoming = self._clock + self._rng.expovariate(self.rate) * 1e9 if not self._peek else self._peek
                if upcoming > elapsed_ns or upcoming >= self.duration_ns:
                    self._peek = upcoming
                    return self._drawn
                self._peek = 0.0
                self._clock = upcoming
                self._arrivals.append(int(upcoming))
                self._drawn += 1
        k = min(float(GRID_POINTS), elapsed_ns / self._step_ns)
        lo = int(k)
        hi = min(GRID_POINTS, lo + 1)
        return min(self.total, max(0, math.floor(self._cum[lo] + (self._cum[hi] - self._cum[lo]) * (k - lo) - self.phase) + 1))

    def next_at(self, index: int) -> int:
        """The offset (ns) from which record ``index``, the next one to send, can be due: a
        publisher need not look at this schedule before then (``duration_ns`` once there is
        nothing left to send). Never later than the record's :meth:`due` time; asking does not
        draw Poisson arrivals (for those it is the next arrival drawn, so ``index`` must be the
        next record to send)."""
        if self.total is not None and index >= self.total:
            return self.duration_ns
        if self.kind == "constant":
            return int((index + self.phase) * 1e9 / self.rate) - 1
        if self.kind == "batch":
            return (index // self.rows) * self.every_ns
        if self.kind == "poisson":
            if self._arrivals:  # drawn, due, not yet handed out
                return self._arrivals[0]
            return min(int(self._peek), self.duration_ns) if self._peek else 0  # the next arrival once drawn; 0: ask due()
        return self._shaped_offset(index) - 1

    def _shaped_offset(self, i: int) -> int:
        cum, x = self._cum, i + self.phase
        k = bisect.bisect_right(cum, x) - 1
        span = cum[k + 1] - cum[k] if k + 1 < len(cum) else 0.0
        return int((k + ((x - cum[k]) / span if span > 0 else 0.0)) * self._step_ns)

    def offsets(self, start: int, n: int) -> list[int]:
        """Intended offsets (ns) of records ``start … start + n - 1``, asked for in order."""
        if self.kind == "constant":
            step, phase = 1e9 / self.rate, self.phase
            return [int((i + phase) * step) for i in range(start, start + n)]
        if self.kind == "batch":
            return [(i // self.rows) * self.every_ns for i in range(start, start + n)]
        if self.kind == "poisson":
            out, self._arrivals = self._arrivals[:n], self._arrivals[n:]
            return out
        return [self._shaped_offset(i) for i in range(start, start + n)]

    def finished(self, sent: int, elapsed_ns: int) -> bool:
        if self.total is not None:
            return sent >= self.total
        return elapsed_ns >= self.duration_ns and sent >= self.due(elapsed_ns)

    _peek = 0.0
