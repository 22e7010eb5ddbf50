"""Carries out a ``--chaos`` schedule during a run, and keeps the lag samples honest.

The run controller calls :meth:`FaultInjector.step` on every poll; faults due by then
are injected (SIGKILL and an immediate restart, SIGSTOP/SIGCONT, or a department
paused through the consumer process's pause file). Broker faults act on the broker the
run started: the embedded one's process, or one node of a Kafka cluster
(:class:`~exchange.kafka.apache.KafkaBroker`'s ``kill_node``/``restart_node``/
``pause_node``/``resume_node``); a cluster fault without a node hits the node that leads
the most ingress partitions at that moment, and the action line says which. A process the schedule killed is
restarted before the controller next checks its children, so only deaths nobody
planned fail the run.

Lag is measured from what the processes report, and a process that is dead, stopped or
just restarted reports nothing, or a figure from before the fault. So every process a
fault touched is *marked*, and a lag sample only counts as complete once each marked
process has reported again after its mark (a router: has routed a batch since), so a
silent process never looks like one with no lag.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from exchange.runner.chaos import BROKER_KINDS, Fault

STALE_S = 2.5  # a process whose last report is older than this is not reporting


class Child(Protocol):
    name: str
    proc: Any  # subprocess.Popen

    def restart(self) -> None: ...


@dataclass
class _Report:
    t: float
    pid: int
    batches: int


@dataclass
class _Mark:
    t: float
    batches: int  # a router's batch count at the mark: it must route more to be fresh


@dataclass
class Injected:
    fault: Fault
    at_s: float | None = None  # when it was actually injected
    ended_s: float | None = None
    node: int | None = None  # the broker node a broker fault hit
    chosen: str | None = None  # why that node, when the spec named none


@dataclass
class FaultInjector:
    faults: list[Fault]
    routers: dict[str, Child]  # by worker id
    consumers: Child
    broker: Any | None  # the broker the run started (EmbeddedBroker or KafkaBroker), None with --bootstrap
    pause_file: Path
    ingress_topics: list[str] = field(default_factory=list)  # a cluster fault without a node: the busiest of these
    injected: list[Injected] = field(init=False)
    _actions: list[tuple[float, int, int]] = field(init=False)  # (time, index into injected, 0: start / 1: end)
    _stopped: set[int] = field(default_factory=set)  # pids we SIGSTOPped and have not resumed
    _paused_departments: set[str] = field(default_factory=set)
    _reports: dict[str, _Report] = field(default_factory=dict)
    _marks: dict[str, _Mark] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.injected = [Injected(f) for f in self.faults]
        self._actions = sorted(
            [(f.at_s, i, 0) for i, f in enumerate(self.faults)]
            + [(f.end_s, i, 1) for i, f in enumerate(self.faults) if f.duration_s > 0 or f.restart]
        )

    @property
    def done(self) -> bool:
        """Every fault injected and every pause over."""
        return not self._actions

    def step(self, t: float) -> list[str]:
        """Inject what is due at ``t`` (seconds after publishing started); says what it did."""
        said = []
        while self._actions and self._actions[0][0] <= t:
            _, i, what = self._actions.pop(0)
            entry = self.injected[i]
            if what == 0:
                entry.at_s = round(t, 3)
                said.append(self._start(entry, t))
            else:
                entry.ended_s = round(t, 3)
                said.append(self._end(entry, t))
        return said

    def _start(self, entry: Injected, t: float) -> str:
        f = entry.fault
        if f.kind in BROKER_KINDS and self._cluster:
            return self._start_node(entry, t)
        if f.kind == "kill-router":
            return self._kill_and_restart(self.routers[f.target], t)
        if f.kind == "kill-consumers":
            return self._kill_and_restart(self.consumers, t)
        if f.kind == "pause-router":
            child = self.routers[f.target]
            self._stop(child.proc.pid)
            self._mark(child.name, t)
            return f"{child.name} stopped (SIGSTOP) for {f.duration_s:g} s"
        if f.kind == "pause-consumer":
            self._paused_departments.add(f.target)
            self._write_pauses()
            return f"department {f.target} stopped reading for {f.duration_s:g} s"
        if f.kind == "pause-broker":
            self._stop(self.broker.pid)
            return f"broker stopped (SIGSTOP) for {f.duration_s:g} s"
        raise AssertionError(f.kind)

    def _end(self, entry: Injected, t: float) -> str:
        f = entry.fault
        if f.kind in BROKER_KINDS and self._cluster:
            return self._end_node(entry, t)
        if f.kind == "pause-router":
            child = self.routers[f.target]
            self._resume(child.proc.pid)
            self._mark(child.name, t)
            return f"{child.name} resumed (SIGCONT)"
        if f.kind == "pause-consumer":
            self._paused_departments.discard(f.target)
            self._write_pauses()
            return f"department {f.target} reads again"
        if f.kind == "pause-broker":
            self._resume(self.broker.pid)
            self._mark_clients(t)
            return "broker resumed (SIGCONT)"
        raise AssertionError(f.kind)

    # one node of a Kafka cluster -----------------------------------------------------------------
    @property
    def _cluster(self) -> bool:
        return self.broker is not None and getattr(self.broker, "nodes", 1) > 1

    def _start_node(self, entry: Injected, t: float) -> str:
        f = entry.fault
        if f.target is not None:
            node = int(f.target)
        else:
            node, led, total = self.broker.busiest_node(self.ingress_topics)
            entry.chosen = f"leads {led} of {total} ingress partitions" if total else "no leader known: the first node up"
        entry.node = node
        chosen = f" ({entry.chosen})" if entry.chosen else ""
        self._mark_clients(t)  # every client loses the node's partitions until their leaders move
        if f.kind == "pause-broker":
            pid = self.broker.pause_node(node)
            return f"broker node {node}{chosen} stopped (SIGSTOP, pid {pid}) for {f.duration_s:g} s"
        pid = self.broker.kill_node(node)
        then = (" and restarted" if not f.duration_s else f"; restart in {f.duration_s:g} s") if f.restart else "; stays down"
        said = f"broker node {node}{chosen} killed (SIGKILL, pid {pid}){then}"
        return said

    def _end_node(self, entry: Injected, t: float) -> str:
        f, node = entry.fault, entry.node
        if node is None:  # the run ended before it began
            return f"{f.label}: never injected"
        self._mark_clients(t)
        if f.kind == "pause-broker":
            self.broker.resume_node(node)
            return f"broker node {node} resumed (SIGCONT)"
        pid = self.broker.restart_node(node)
        return f"broker node {node} restarted on its storage (pid {pid})"

    def _mark_clients(self, t: float) -> None:
        for child in [*self.routers.values(), self.consumers]:
            self._mark(child.name, t)

    def _kill_and_restart(self, child: Child, t: float) -> str:
        old = child.proc.pid
        self._stopped.discard(old)
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGKILL)
        child.proc.wait(5)  # SIGKILL: reaped within milliseconds
        child.restart()
        self._marks[child.name] = _Mark(t, 0)
        return f"{child.name} killed (SIGKILL, pid {old}) and restarted (pid {child.proc.pid})"

    def _stop(self, pid: int | None) -> None:
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            self._stopped.add(pid)

    def _resume(self, pid: int | None) -> None:
        if pid is not None:
            self._stopped.discard(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _write_pauses(self) -> None:
        tmp = self.pause_file.with_name(self.pause_file.name + ".tmp")
        tmp.write_bytes(orjson.dumps(sorted(self._paused_departments)))
        os.replace(tmp, self.pause_file)

    def release(self) -> None:
        """Resume everything still stopped or paused (the run is ending, or failed)."""
        for pid in list(self._stopped):
            self._resume(pid)
        if self._cluster:
            for entry in self.injected:
                if entry.fault.kind == "pause-broker" and entry.node is not None and entry.ended_s is None:
                    self.broker.resume_node(entry.node)
        if self._paused_departments:
            self._paused_departments.clear()
            self._write_pauses()

    # lag samples -------------------------------------------------------------------------
    def _mark(self, name: str, t: float) -> None:
        last = self._reports.get(name)
        self._marks[name] = _Mark(t, last.batches if last else 0)

    def reported(self, name: str, t: float, pid: int, batches: int = 0) -> None:
        """A stats line of ``name``'s current process arrived at ``t``."""
        self._reports[name] = _Report(t, pid, batches)

    def complete(self, t: float, current_pids: dict[str, int]) -> bool:
        """Whether every lag-reporting process has a fresh report (see the module docstring)."""
        for name, pid in current_pids.items():
            report = self._reports.get(name)
            if report is None or report.pid != pid or t - report.t > STALE_S:
                return False
            mark = self._marks.get(name)
            if mark is not None and (report.t <= mark.t or (name != self.consumers.name and report.batches <= mark.batches)):
                return False
        return True
