"""Fault injection for ``exchange run --chaos``: the spec, and how recovery is measured.

Architects load-test an exchange design to see what a failure costs, so faults are a
user feature, written on the command line and reported in the result, rather than a
test-only hook. This module is pure (no processes, no Kafka): it turns the spec into
:class:`Fault` s, checking each against the run, and turns the controller's lag samples
into each fault's baseline, peak and recovery time. The controller (``exchange/runner/controller.py``)
does the killing, pausing and restarting.

Spec: faults separated by commas, each ``KIND[:TARGET]@TIME[+DURATION]``; times are
seconds after publishing starts, written ``20s``, ``1.5s`` or ``500ms``. ``kill-broker``
takes ``+restart`` (restarted at once) or ``+DURATION`` (down that long, then restarted),
or nothing (down for the rest of the run).

Broker faults need a broker the run started itself (:class:`BrokerHandle`): ``pause-broker``
without a node stops the whole broker (the embedded Tansu one, or a single Kafka node);
``kill-broker`` and ``pause-broker:NODE`` need a Kafka cluster (``--broker kafka:3``), whose
replicas take over from the node that is gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from exchange.errors import ExchangeError

#: kind → (what the target is, whether it takes a duration)
KINDS: dict[str, tuple[str | None, bool]] = {
    "kill-router": ("worker", False),  # SIGKILL a router worker, restart it at once (same worker id)
    "pause-router": ("worker", True),  # SIGSTOP a router worker, SIGCONT after the duration
    "kill-consumers": (None, False),  # SIGKILL the consumer process, restart it from its checkpoint
    "pause-consumer": ("department", True),  # one subscribing department stops reading for the duration
    "pause-broker": ("node", True),  # SIGSTOP the broker (one node of a cluster): its clients lose it for the duration
    "kill-broker": ("node", False),  # SIGKILL one node of a cluster; +restart / +DURATION: start it again on its storage
}
BROKER_KINDS = ("kill-broker", "pause-broker")
BASELINE_WINDOW_S = 3.0  # lag averaged over this long before a fault
RECOVERED_FACTOR = 1.5  # lag back to ≤ max(baseline × 1.5, baseline + 100 records)
RECOVERED_SLACK = 100
RECOVERED_SLACK_MS = 50.0  # end-to-end p99 back to ≤ max(baseline × 1.5, baseline + 50 ms)

_TIME = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s)$")
_FAULT = re.compile(r"^(?P<kind>[a-z-]+)(?::(?P<target>[^@]*))?@(?P<at>[^+]*)(?:\+(?P<duration>.*))?$")


class ChaosError(ExchangeError, ValueError):
    """A ``--chaos`` spec that cannot run; the message names the bad part."""


@dataclass(frozen=True)
class BrokerHandle:
    """What the run can do to its broker: ``kind`` ``"tansu"`` or ``"kafka"`` and its ``nodes``
    (a broker the run did not start, ``--bootstrap``, is ``None`` instead of a handle)."""

    kind: Literal["tansu", "kafka"] = "tansu"
    nodes: int = 1

    @property
    def cluster(self) -> bool:
        return self.kind == "kafka" and self.nodes > 1


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str | None  # router worker id, subscribing department, broker node id, or None
    at_s: float  # seconds after publishing starts
    duration_s: float = 0.0  # 0 for kills; kill-broker: how long the node stays down before its restart
    restart: bool = False  # kill-broker only: the node is started again (at once, or after duration_s)

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    @property
    def label(self) -> str:
        """The fault as it was written (normalised), e.g. ``pause-consumer:urban@3s+2s``."""
        target = f":{self.target}" if self.target is not None else ""
        duration = f"+{self.duration_s:g}s" if KINDS[self.kind][1] or self.duration_s > 0 else ""
        if self.kind == "kill-broker" and self.restart and not self.duration_s:
            duration = "+restart"
        return f"{self.kind}{target}@{self.at_s:g}s{duration}"

    @property
    def down_for_good(self) -> bool:
        """A kill-broker without restart: the node stays down for the rest of the run."""
        return self.kind == "kill-broker" and not self.restart

    @property
    def resource(self) -> str:
        """What the fault acts on; two faults on one resource must not overlap."""
        if self.kind in ("kill-router", "pause-router"):
            return f"router-{self.target}"
        if self.kind == "kill-consumers":
            return "consumers"
        if self.kind == "pause-consumer":
            return f"consumer:{self.target}"
        if self.target is not None:
            return f"broker node {self.target}"
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
    broker: BrokerHandle | None = BrokerHandle(),
    restartable_consumers: bool = True,
) -> list[Fault]:
    """The faults of ``spec``, in time order; :class:`ChaosError` names the first bad part.

    ``departments`` are the scenario's subscribing departments; ``broker`` is the broker
    the run starts (None with ``--bootstrap``: no broker fault can be injected);
    ``restartable_consumers`` is False when the consumer process keeps state it cannot
    checkpoint (reactions, workflows), which rules out ``kill-consumers``. A broker fault
    on a cluster without a node keeps ``target`` None: the run picks the node when it
    injects it.
    """
    faults: list[Fault] = []
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts):
        raise ChaosError("--chaos: empty spec; e.g. kill-router@5s,pause-broker@10s+3s")
    for part in parts:
        if not part:
            raise ChaosError(f"--chaos: {spec!r}: an empty fault between commas")
        faults.append(_parse_one(part, duration, workers, departments, broker, restartable_consumers))
    faults.sort(key=lambda f: f.at_s)
    _check_overlaps(faults)
    return faults


def _parse_one(part: str, duration: float, workers: int, departments, broker: BrokerHandle | None, restartable: bool) -> Fault:
    m = _FAULT.match(part)
    if m is None:
        raise ChaosError(f"--chaos: {part!r}: expected KIND[:TARGET]@TIME[+DURATION], e.g. pause-router:0@5s+2s")
    kind, target, at_text, dur_text = m.group("kind", "target", "at", "duration")
    if kind not in KINDS:
        raise ChaosError(f"--chaos: {part!r}: unknown fault {kind!r}; one of {', '.join(KINDS)}")
    target_kind, has_duration = KINDS[kind]
    at = parse_time(at_text, part)
    restart = False
    if kind == "kill-broker" and dur_text is not None:  # +restart, or down for a while, then restarted
        restart, has_duration = True, dur_text.strip() != "restart"
        dur_text = dur_text if has_duration else None
    if has_duration and dur_text is None:
        raise ChaosError(f"--chaos: {part!r}: {kind} needs a duration, e.g. {kind}{':' + target if target else ''}@{at_text}+3s")
    if not has_duration and dur_text is not None and kind != "kill-broker":
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
    if target_kind == "node":
        target = _broker_node(part, kind, target, broker)
    if kind == "kill-consumers" and not restartable:
        raise ChaosError(
            f"--chaos: {part!r}: kill-consumers is not supported for scenarios with reactions or workflows (their state is not checkpointed)"
        )
    return Fault(kind, target, at, length, restart)


def _broker_node(part: str, kind: str, target: str | None, broker: BrokerHandle | None) -> str | None:
    """The node a broker fault names (checked), or None: the whole broker, or on a cluster the
    node the run picks when it injects the fault."""
    if broker is None:
        raise ChaosError(
            f"--chaos: {part!r}: {kind} needs a broker the run starts itself (--broker), "
            "not one given with --bootstrap: the run has no handle on its processes"
        )
    if not broker.cluster and (kind == "kill-broker" or target is not None):
        what = "the embedded Tansu broker" if broker.kind == "tansu" else "a single Kafka node"
        if kind == "kill-broker":
            raise ChaosError(
                f"--chaos: {part!r}: kill-broker needs a Kafka cluster (--broker kafka:3), not {what}: "
                "no replica would take over from the node killed"
            )
        raise ChaosError(
            f"--chaos: {part!r}: {kind}:NODE needs a Kafka cluster (--broker kafka:3), not {what}, "
            f"which is one node: write {kind}@… to stop the whole broker"
        )
    if target is None:
        return None
    if not target.isdigit() or not 1 <= int(target) <= broker.nodes:
        raise ChaosError(f"--chaos: {part!r}: broker node {target!r} does not exist (kafka:{broker.nodes}: nodes 1…{broker.nodes})")
    return str(int(target))


def _check_overlaps(faults: list[Fault]) -> None:
    last: dict[str, Fault] = {}
    for f in faults:  # in time order
        before = last.get(f.resource)
        if before is not None and (before.down_for_good or f.at_s <= before.end_s):
            raise ChaosError(
                f"--chaos: {f.label!r} overlaps {before.label!r} (same {f.resource}"
                f"{', down for the rest of the run: add +restart' if before.down_for_good else ''})"
            )
        last[f.resource] = f
    # a broker fault whose node the run picks may hit any node: nothing else on the broker at that time
    broker = [f for f in faults if f.kind in BROKER_KINDS]
    for i, first in enumerate(broker):
        for then in broker[i + 1 :]:
            if (first.target is None or then.target is None) and (first.down_for_good or then.at_s <= first.end_s):
                raise ChaosError(
                    f"--chaos: {then.label!r} overlaps {first.label!r} (a broker fault without a node "
                    "may hit any node): name the node of each, e.g. kill-broker:2@…"
                )


@dataclass
class LagSample:
    t: float  # seconds after publishing started
    lag: int  # router lag + consumer lag, records
    complete: bool  # every process that reports lag had a fresh report (none dead, paused or just restarted)
    p99_ms: float | None = None  # subscribers' end-to-end p99 over their last interval; None: nothing delivered in it


@dataclass(frozen=True)
class Recovery:
    baseline_lag: float
    peak_lag: int
    recovered_after_s: float | None  # lag and latency both back
    baseline_p99_ms: float | None = None
    peak_p99_ms: float | None = None
    lag_recovered_after_s: float | None = None
    latency_recovered_after_s: float | None = None


def recovery(fault: Fault, samples: list[LagSample], until_s: float | None = None) -> Recovery:
    """Baseline, peak and recovery time of one fault from the run's lag and latency samples.

    Baseline: mean of the complete samples in the few seconds before the fault (lag, and the
    end-to-end p99 of those that had deliveries). Lag is back when it is within
    max(baseline × 1.5, baseline + 100 records); latency when the last interval's p99 is
    within max(baseline × 1.5, baseline + 50 ms) (an interval without deliveries: when the
    lag is back). Recovered: the first complete sample after the fault ended with both;
    ``*_recovered_after_s`` count from the fault's end (for a kill without a downtime, the
    kill itself, so the restart or the failover is part of it). Incomplete samples (a
    process dead, paused or not yet reporting after its restart) never count as
    recovered: a silent process would otherwise look like one with no lag. Peaks: the
    highest lag and p99 from the fault until recovery (or ``until_s``).
    """
    window = [s for s in samples if s.complete and fault.at_s - BASELINE_WINDOW_S <= s.t < fault.at_s]
    baseline = sum(s.lag for s in window) / len(window) if window else 0.0
    latencies = [s.p99_ms for s in window if s.p99_ms is not None]
    base_p99 = sum(latencies) / len(latencies) if latencies else None
    lag_limit = max(baseline * RECOVERED_FACTOR, baseline + RECOVERED_SLACK)
    p99_limit = None if base_p99 is None else max(base_p99 * RECOVERED_FACTOR, base_p99 + RECOVERED_SLACK_MS)

    def lag_ok(s: LagSample) -> bool:
        return s.lag <= lag_limit

    def latency_ok(s: LagSample) -> bool:
        return p99_limit is None or (s.p99_ms <= p99_limit if s.p99_ms is not None else lag_ok(s))

    def first(ok) -> float | None:
        return next((s.t for s in samples if s.t >= fault.end_s and s.complete and ok(s)), None)

    recovered_at = first(lambda s: lag_ok(s) and latency_ok(s))
    end = recovered_at if recovered_at is not None else until_s
    during = [s for s in samples if s.t >= fault.at_s and (end is None or s.t <= end)]
    p99s = [s.p99_ms for s in during if s.p99_ms is not None]

    def after(t: float | None) -> float | None:
        return None if t is None else round(max(0.0, t - fault.end_s), 2)

    return Recovery(
        baseline_lag=round(baseline, 1),
        peak_lag=max((s.lag for s in during), default=0),
        recovered_after_s=after(recovered_at),
        baseline_p99_ms=None if base_p99 is None else round(base_p99, 1),
        peak_p99_ms=round(max(p99s), 1) if p99s else None,
        lag_recovered_after_s=after(first(lag_ok)),
        latency_recovered_after_s=after(first(latency_ok)),
    )
