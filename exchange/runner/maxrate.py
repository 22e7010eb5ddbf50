"""``exchange run … --find-max-rate``: the highest load the exchange design sustains.

Like OpenMessaging Benchmark with ``producerRate: 0``: run short trials at a multiple of
the scenario's rates, doubling until a trial fails, then bisecting between the last rate
that held and the first that did not. A trial holds when every record is accounted for
soon after publishing stops (no backlog left to drain: nothing fell behind anywhere, the
router or any subscriber) and the end-to-end p99 stays within the objective.

On the embedded broker every trial runs on a broker of its own, so a failed trial's
backlog cannot slow the next one down. On a cluster (``--bootstrap``) the trials share
consumer groups: a trial that failed leaves backlog the next one must get through first,
which makes the search err on the low side.

Each trial has OpenMessaging Benchmark's warm-up phase: its first seconds (``--warmup``,
default min(5 s, a fifth of the trial), as a run's) are routed and counted, so a backlog built while
starting up still fails the trial, but kept out of the p99 it is judged by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from exchange.runner.controller import RunOptions, run


@dataclass
class Trial:
    multiplier: float
    offered_per_s: float
    held: bool
    why: str
    e2e_p99_ms: float
    drain_s: float
    publish_delay_p99_ms: float
    warmup_s: float = 0.0  # the trial's warm-up, kept out of its p99 (exchange/runner/warmup.py)


@dataclass
class MaxRate:
    base_rate_per_s: float
    max_multiplier: float
    max_rate_per_s: float
    slo_p99_ms: float
    trials: list[Trial]

    def as_dict(self) -> dict:
        return {**asdict(self), "trials": [asdict(t) for t in self.trials]}


async def find_max_rate(
    options: RunOptions, out: Path, slo_p99_ms: float, trial_s: float, bisections: int = 3, say: Callable[[str], None] = lambda text: None
) -> MaxRate:
    base = sum(options.scenario.entry_rates().values())
    trials: list[Trial] = []
    allowed_drain = 1.0 + 0.1 * trial_s

    async def attempt(multiplier: float) -> bool:
        n = len(trials) + 1
        say(f"trial {n}: {multiplier:g}× = {base * multiplier:,.0f} records/s for {trial_s:g} s")
        trial_options = replace(options, duration=trial_s, out=out / f"trial-{n}", rate_multiplier=multiplier, drain_timeout=2 * allowed_drain)
        result, _ = await run(trial_options)
        p99 = result.aggregatedEndToEndLatency99pct
        drain = result.run.drain_s
        why = []
        if not result.conservation.ok or drain > allowed_drain:
            why.append(f"backlog: {drain:.1f} s to drain (allowed {allowed_drain:.1f} s)")
        if p99 > slo_p99_ms:
            why.append(f"p99 {p99:.0f} ms > {slo_p99_ms:g} ms")
        trials.append(
            Trial(
                multiplier,
                round(base * multiplier, 1),
                not why,
                "; ".join(why) or "held",
                p99,
                drain,
                round(result.aggregatedPublishDelayLatency99pct / 1000, 1),
                result.run.warmup_s,
            )
        )
        say(f"  → {'held' if not why else 'failed: ' + '; '.join(why)}")
        return not why

    good, bad = 0.0, None
    m = 1.0
    while bad is None:
        if await attempt(m):
            good, m = m, m * 2
            if m > 1024:
                break
        else:
            bad = m
    if bad is not None and good == 0.0:  # even the scenario's own rates fail: search below
        m = bad / 2
        while m > bad / 64 and not await attempt(m):
            bad, m = m, m / 2
        good = m if trials[-1].held else 0.0
    for _ in range(bisections if bad is not None and good > 0 else 0):
        mid = (good + bad) / 2
        if await attempt(mid):
            good = mid
        else:
            bad = mid
    return MaxRate(base, good, round(base * good, 1), slo_p99_ms, trials)
