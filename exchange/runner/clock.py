"""Clock offsets: the NTP estimator (pure) and this process's corrected wall clock.

End-to-end latency is a receiver's wall clock minus a time a sender stamped, so across
machines it is only as good as their clocks. Every process of a run reads the wall clock
through :func:`now_ns`: the local clock plus this process's offset to the controller
(:func:`set_offset`, from ``--clock-offset-ns`` or a measurement at start-up,
``exchange/kafka/timesync.py``), so every stamp and every comparison is in the controller's
time base.

The estimator (:func:`offset_and_delay`, :func:`estimate`) is pure: round trips in, a
:class:`~schemas.clock.ClockOffset` out. It follows NTP (RFC 5905, section 8; Mills,
*Computer Network Time Synchronization*): for a round trip with the client's send ``t0``, the
server's receive ``t1`` and send ``t2`` and the client's receive ``t3``,

* offset θ = ((t1 − t0) + (t2 − t3)) / 2, the server's clock minus the client's;
* delay δ = (t3 − t0) − (t2 − t1), the time on the wire both ways.

Whatever the split of δ between the two ways, the true offset lies in θ ± δ/2, so the
samples with the least delay say the most (NTP's clock filter keeps the minimum-delay one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import NamedTuple

from schemas.clock import ClockOffset

__all__ = ["ClockError", "Sample", "estimate", "now_ns", "offset_and_delay", "offset_ns", "offset_warning", "set_offset"]


class ClockError(ValueError):
    """No usable round trip to estimate an offset from."""


class Sample(NamedTuple):
    """One round trip, epoch ns: client send, server receive, server send, client receive."""

    t0: int
    t1: int
    t2: int
    t3: int


def offset_and_delay(s: Sample) -> tuple[float, int]:
    """(θ, δ) of one round trip, ns: θ = ((t1 − t0) + (t2 − t3)) / 2, δ = (t3 − t0) − (t2 − t1)."""
    return ((s.t1 - s.t0) + (s.t2 - s.t3)) / 2, (s.t3 - s.t0) - (s.t2 - s.t1)


def estimate(samples: Iterable[Sample]) -> ClockOffset:
    """The offset (server − client, ns) from round trips, with a bound on its error.

    The estimate is the median offset of the quarter of the samples with the least delay
    (at least one), kept inside the interval every sample allows: each round trip puts the
    true offset in θᵢ ± δᵢ/2, so it lies in their intersection [lo, hi], and ``error_ns`` is
    the estimate's distance to the farther end. Samples that contradict each other (an
    empty intersection: a clock stepped during the measurement) fall back on the
    minimum-delay sample's interval: ``error_ns`` = |estimate − θ_min| + δ_min/2.

    Raises :class:`ClockError` when no sample has a delay ≥ 0 (a negative delay: the
    server's stamps are not of one clock).
    """
    rows = sorted((d, o) for o, d in map(offset_and_delay, samples) if d >= 0)
    if not rows:
        raise ClockError("no round trip with a delay of 0 or more to estimate a clock offset from")
    best = sorted(o for _, o in rows[: max(1, len(rows) // 4)])
    mid = len(best) // 2
    guess = best[mid] if len(best) % 2 else (best[mid - 1] + best[mid]) / 2
    lo = max(o - d / 2 for d, o in rows)
    hi = min(o + d / 2 for d, o in rows)
    min_delay, min_offset = rows[0]
    if lo <= hi:
        chosen = round(min(max(guess, lo), hi))
        error = max(chosen - lo, hi - chosen)
    else:
        chosen = round(guess)
        error = abs(chosen - min_offset) + min_delay / 2
    return ClockOffset(offset_ns=chosen, error_ns=math.ceil(error), samples=len(rows), min_delay_ns=min_delay)


# ---------------------------------------------------------------- this process's clock

_offset_ns = 0


def set_offset(ns: int) -> None:
    """Correct this process's wall clock by ``ns`` (the controller's clock minus ours) from now on."""
    global _offset_ns
    _offset_ns = int(ns)


def offset_ns() -> int:
    """The correction :func:`now_ns` adds, ns (0 unless :func:`set_offset` said otherwise)."""
    return _offset_ns


def now_ns() -> int:
    """The wall clock in the controller's time base, epoch ns: ``time.time_ns()`` plus the offset."""
    return time.time_ns() + _offset_ns


def offset_warning(offsets: dict[str, ClockOffset], limit_ms: float, corrected: bool) -> str | None:
    """One line naming the processes whose clock is more than ``limit_ms`` off the
    controller's (largest first), or None when none is; it says whether their latencies
    were corrected. The estimate is compared, not its error bound."""
    over = sorted(((name, o) for name, o in offsets.items() if abs(o.offset_ns) > limit_ms * 1e6), key=lambda kv: -abs(kv[1].offset_ns))
    if not over:
        return None
    named = ", ".join(f"{name} {o.offset_ns / 1e6:+,.1f} ms ± {o.error_ns / 1e6:,.1f}" for name, o in over)
    what = (
        "corrected for in every latency; fix the machines' time synchronisation (NTP, chrony) all the same"
        if corrected
        else "NOT corrected (--no-clock-correction): latencies between these processes and the others are off by as much"
    )
    return f"clock offsets over {limit_ms:g} ms to the controller's clock: {named}; {what}"
