"""Fault injection for ``exchange run --chaos``: the spec, and how recovery is measured.

Architects load-test an exchange design to see what a failure costs, so faults are a
user feature, written on the command line and reported in the result, rather than a
test-only hook. This module is pure (no processes, no Kafka): it turns the spec into
:class:`Fault` s, checking each against the run, and turns the controller's lag samples
into each fault's baseline, peak and recovery time. The controller (``exchange/runner/controller.py``)
does the killing, pausing and restarting.

Spec: faults separated by commas, each ``KIND[:TARGET]@TIME[+DURATION]``; times are
seconds after publishing starts, written ``20s``, ``1.5s`` or ``500ms``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exchange.errors import ExchangeError

#: kind → (what the target is, whether it takes a duration)
KINDS: dict[str, tuple[str | None, bool]] = {
    "kill-router": ("worker", False),  # SIGKILL a router worker, restart it at once (same worker id)
    "pause-router": ("worker", True),  # SIGSTOP a router worker, SIGCONT after the duration
    "kill-consumers": (None, False),  # SIGKILL the consumer process, restart it from its checkpoint
    "pause-consumer": ("department", True),  # one subscribing department stops reading for the duration
    "pause-broker": (None, True),  # SIGSTOP the embedded broker: every client loses it for the duration
}
BASELINE_WINDOW_S = 3.0  # lag averaged over this long before a fault
RECOVERED_FACTOR = 1.5  # lag back to ≤ max(baseline × 1.5, baseline + 100 records)
RECOVERED_SLACK = 100

_TIME = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s)$")
_FAULT = re.compile(r"^(?P<kind>[a-z-]+)(?::(?P<target>[^@]*))?@(?P<at>[^+]*)(?:\+(?P<duration>.*))?$")


class ChaosError(ExchangeError, ValueError):
    """A ``--chaos`` spec that cannot run; the message names the bad part."""


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str | None  # router worker id, subscribing department, or None
    at_s: float  # seconds after publishing starts
    duration_s: float = 0.0  # 0 for kills

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    @property
    def label(self) -> str:
        """The fault as it was written (normalised), e.g. ``pause-consumer:urban@3s+2s``."""
        target = f":{self.target}" if self.target is not None else ""
        duration = f"+{self.duration_s:g}s" if KINDS[self.kind][1] else ""
        return f"{self.kind}{target}@{self.at_s:g}s{duration}"

    @property
    def resource(self) -> str:
        """What the fault acts on; two faults on one resource must not overlap."""
        if self.kind in ("kill-router", "pause-router"):
            return f"router-{self.target}"
        if self.kind == "kill-consumers":
            return "consumers"
        if self.kind == "pause-consumer":
            return f"consumer:{self.target}"
        return "broker"


def parse_time(text: str, part: str) -> float:
    m = _TIME.match(text.strip())
    if m is None:
        raise ChaosError(f"--chaos: {part!r}: time {text!r} must look like 20s, 1.5s or 500ms")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def parse(
    spec: str,
    *,
    duration: float,
    workers: int = 1,
    departments: frozenset[str] | set[str] = frozenset(),
    embedded_broker: bool = True,
    restartable_consumers: bool = True,
) -> list[Fault]:
    """The faults of ``spec``, in time order; :class:`ChaosError` names the first bad part.

    ``departments`` are the scenario's subscribing departments; ``restartable_consumers``
    is False when the consumer process keeps state it cannot checkpoint (reactions,
    workflows), which rules out ``kill-consumers``.
    """
    faults: list[Fault] = []
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts):
        raise ChaosError("--chaos: empty spec; e.g. kill-router@5s,pause-broker@10s+3s")
    for part in parts:
        if not part:
            raise ChaosError(f"--chaos: {spec!r}: an empty fault between commas")
        faults.append(_parse_one(part, duration, workers, departments, embedded_broker, restartable_consumers))
    faults.sort(key=lambda f: f.at_s)
    _check_overlaps(faults)
    return faults


def _parse_one(part: str, duration: float, workers: int, departments, embedded: bool, restartable: bool) -> Fault:
    m = _FAULT.match(part)
    if m is None:
        raise ChaosError(f"--chaos: {part!r}: expected KIND[:TARGET]@TIME[+DURATION], e.g. pause-router:0@5s+2s")
    kind, target, at_text, dur_text = m.group("kind", "target", "at", "duration")
    if kind not in KINDS:
        raise ChaosError(f"--chaos: {part!r}: unknown fault {kind!r}; one of {', '.join(KINDS)}")
    target_kind, has_duration = KINDS[kind]
    at = parse_time(at_text, part)
    if has_duration and dur_text is None:
        raise ChaosError(f"--chaos: {part!r}: {kind} needs a duration, e.g. {kind}{':' + target if target else ''}@{at_text}+3s")
    if not has_duration and dur_text is not None:
        raise ChaosError(f"--chaos: {part!r}: {kind} takes no duration (it restarts at once)")
    length = parse_time(dur_text, part) if has_duration else 0.0
    if has_duration and length <= 0:
        raise ChaosError(f"--chaos: {part!r}: the duration must be more than 0")
    if at >= duration:
        raise ChaosError(f"--chaos: {part!r}: at {at:g}s is not within the run's {duration:g} s of publishing")
    if target_kind is None and target is not None:
        raise ChaosError(f"--chaos: {part!r}: {kind} takes no target")
    if target_kind == "worker":
        target = "0" if target is None else target
        if not target.isdigit() or int(target) >= workers:
            raise ChaosError(f"--chaos: {part!r}: router worker {target!r} does not exist (--workers {workers}: 0…{workers - 1})")
        target = str(int(target))
    if target_kind == "department":
        if not target:
            raise ChaosError(f"--chaos: {part!r}: name the subscribing department, e.g. {kind}:DEPT@{at_text}+{dur_text}")
        if target not in departments:
            known = ", ".join(sorted(departments)) or "none"
            raise ChaosError(f"--chaos: {part!r}: {target!r} is not a subscribing department of the scenario (known: {known})")
    if kind == "pause-broker" and not embedded:
        raise ChaosError(f"--chaos: {part!r}: pause-broker needs the embedded broker (not with --bootstrap)")
    if kind == "kill-consumers" and not restartable:
        raise ChaosError(f"--chaos: {part!r}: kill-consumers is not supported for scenarios with reactions or workflows "
                         "(their state is not checkpointed)")
    return Fault(kind, target, at, length)


def _check_overlaps(faults: list[Fault]) -> None:
    last: dict[str, Fault] = {}
    for f in faults:  # in time order
        before = last.get(f.resource)
        if before is not None and f.at_s <= before.end_s:
            raise ChaosError(f"--chaos: {f.label!r} overlaps {before.label!r} (same {f.resource})")
        last[f.resource] = f


@dataclass
class LagSample:
    t: float  # seconds after publishing started
    lag: int  # router lag + consumer lag, records
    complete: bool  # every process that reports lag had a fresh report (none dead, paused or just restarted)


@dataclass(frozen=True)
class Recovery:
    baseline_lag: float
    peak_lag: int
    recovered_after_s: float | None


def recovery(fault: Fault, samples: list[LagSample], until_s: float | None = None) -> Recovery:
    """Baseline, peak and recovery time of one fault from the run's lag samples.

    Baseline: mean of the complete samples in the few seconds before the fault. Recovered:
    the first complete sample after the fault ended whose lag is back within
    max(baseline × 1.5, baseline + 100); ``recovered_after_s`` counts from the fault's end
    (for a kill, the kill itself, so the restart is part of it). Incomplete samples (a
    process dead, paused or not yet reporting after its restart) never count as
    recovered: a silent process would otherwise look like one with no lag. Peak: the
    highest lag from the fault until recovery (or ``until_s``).
    """
    before = [s.lag for s in samples if s.complete and fault.at_s - BASELINE_WINDOW_S <= s.t < fault.at_s]
    baseline = sum(before) / len(before) if before else 0.0
    threshold = max(baseline * RECOVERED_FACTOR, baseline + RECOVERED_SLACK)
    recovered_at = next((s.t for s in samples if s.t >= fault.end_s and s.complete and s.lag <= threshold), None)
    end = recovered_at if recovered_at is not None else until_s
    during = [s.lag for s in samples if s.t >= fault.at_s and (end is None or s.t <= end)]
    return Recovery(
        baseline_lag=round(baseline, 1),
        peak_lag=max(during, default=0),
        recovered_after_s=None if recovered_at is None else round(max(0.0, recovered_at - fault.end_s), 2),
    )
