"""Carries out a ``--chaos`` schedule during a run, and keeps the lag samples honest.

The run controller calls :meth:`FaultInjector.step` on every poll; faults due by then
are injected (SIGKILL and an immediate restart, SIGSTOP/SIGCONT, or a department
paused through the consumer process's pause file). A process the schedule killed is
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

from exchange.runner.chaos import Fault

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


@dataclass
class FaultInjector:
    faults: list[Fault]
    routers: dict[str, Child]  # by worker id
    consumers: Child
    broker_pid: int | None
    pause_file: Path
    injected: list[Injected] = field(init=False)
    _actions: list[tuple[float, int, str]] = field(init=False)  # (time, index into injected, "start"/"end")
    _stopped: set[int] = field(default_factory=set)  # pids we SIGSTOPped and have not resumed
    _paused_departments: set[str] = field(default_factory=set)
    _reports: dict[str, _Report] = field(default_factory=dict)
    _marks: dict[str, _Mark] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.injected = [Injected(f) for f in self.faults]
        self._actions = sorted(
            [(f.at_s, i, "start") for i, f in enumerate(self.faults)]
            + [(f.end_s, i, "end") for i, f in enumerate(self.faults) if f.duration_s > 0]
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
            if what == "start":
                entry.at_s = round(t, 3)
                said.append(self._start(entry.fault, t))
            else:
                said.append(self._end(entry.fault, t))
        return said

    def _start(self, f: Fault, t: float) -> str:
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
            self._stop(self.broker_pid)
            return f"broker stopped (SIGSTOP) for {f.duration_s:g} s"
        raise AssertionError(f.kind)

    def _end(self, f: Fault, t: float) -> str:
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
            self._resume(self.broker_pid)
            for child in [*self.routers.values(), self.consumers]:  # every client lost it
                self._mark(child.name, t)
            return "broker resumed (SIGCONT)"
        raise AssertionError(f.kind)

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
