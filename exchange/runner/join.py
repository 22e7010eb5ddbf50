"""``exchange join``: a worker that runs one process of a run started on another machine.

Like an OpenMessaging Benchmark worker, but over the run's own Kafka (:mod:`schemas.runs`):

1. find the run on ``exchange.runs`` (``--run RUN_ID``, or ``--next``: the latest announced
   run that has not ended and whose join deadline has not passed, else the next one
   announced) with a slot of the worker's role;
2. ask for a slot on the run's topic (:class:`~schemas.runs.JoinRequest`) and get one
   (:class:`~schemas.runs.SlotGranted`) or a refusal (exit 2);
3. write the runtime scenario into its own work directory (``WORKDIR/RUN_ID/SLOT/``) and
   start the slot's process exactly as the controller starts a local one
   (:func:`exchange.runner.processes.spawn`, the slot's command line with this machine's
   paths and bootstrap; the producers on the controller's :class:`~schemas.runs.StartSlot`);
4. relay every status line of the process (unchanged), its log, a heartbeat every second,
   and the files the run shares (the producers' warm-up schedule up, to the consumers
   down; the consumers' samples up); SIGTERM the process on :class:`~schemas.runs.StopSlot`
   or :class:`~schemas.runs.RunEnded`;
5. exit 0 once the process has ended as asked and the run has ended; 1 when the process
   died on its own (the controller hears it as :class:`~schemas.runs.SlotExited` with the
   log's tail, and fails the run), 2 when no run or slot could be had.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from exchange.errors import EXIT_FAILED, EXIT_OK, ExchangeError
from exchange.runner import remote
from exchange.runner.processes import spawn, terminate
from exchange.runner.warmup import SCHEDULE_FILE
from schemas.runs import (
    RUNS_TOPIC,
    FileRelay,
    Heartbeat,
    JoinRequest,
    LogRelay,
    RunAnnouncement,
    RunEnded,
    RunMessageError,
    Slot,
    SlotExited,
    SlotGranted,
    SlotRefused,
    SlotStarted,
    StartSlot,
    StatusRelay,
    StopSlot,
    decode_run,
    decode_runs,
)

POLL_S = 0.2
LOG_CHUNK = 64 * 1024  # bytes of log per LogRelay
MAX_FILE = 8 * 1024 * 1024  # the largest file sent back (samples)
#: how long a worker whose process is done waits for the run's end before it exits anyway
END_WAIT_S = 120.0


class JoinFailed(ExchangeError):
    """No run or no slot to join (exit 2), said in one line."""

    label = "join failed"


@dataclass
class JoinOptions:
    bootstrap: str
    role: str  # producers, router, router:HUB, consumers
    run_id: str | None = None  # None: --next
    workdir: Path = Path("runs/join")
    wait_s: float = 600.0  # how long to wait for a run to be announced
    metrics_port: int | None = None  # the child's --metrics-port (a pod's scraped port); None: its own default


def parse_role(role: str) -> tuple[str, str | None]:
    """``router:gz`` → (router, gz); :class:`JoinFailed` for an unknown role."""
    name, _, hub = role.partition(":")
    if name not in remote.ROLES or (hub and name != "router"):
        raise JoinFailed(f"--role {role!r}: one of {', '.join(remote.ROLES)}, or router:HUB")
    return name, hub or None


def child_extra_args(options: JoinOptions, slot: Slot, announcement: RunAnnouncement) -> list[str]:
    """Arguments this worker adds to the slot's command line: what only the worker's machine
    knows (its metrics port; the hook for its clock's offset to the controller's, once measured)."""
    return ["--metrics-port", str(options.metrics_port)] if options.metrics_port is not None else []


async def find_run(
    options: JoinOptions, role: str, hub: str | None, say: Callable[[str], None], skip: frozenset[str] = frozenset()
) -> RunAnnouncement:
    """The run to join (see the module docstring), not one of ``skip`` (runs that refused us);
    :class:`JoinFailed` when none came within ``wait_s``."""
    channel = remote.Channel(options.bootstrap, RUNS_TOPIC)
    announced: dict[str, RunAnnouncement] = {}
    ended: set[str] = set()

    def fits(a: RunAnnouncement) -> bool:
        return a.run_id not in skip and any(s.role == role and (hub is None or s.hub == hub) for s in a.slots)

    await _wait_for_topic(options.bootstrap, options.wait_s, say)
    await channel.start()
    try:
        end = await channel.end_offset()
        deadline = time.monotonic() + options.wait_s
        caught_up, said = end == 0, False
        while time.monotonic() < deadline:
            for offset, value in await channel.poll(200):
                try:
                    m = decode_runs(value, f"{RUNS_TOPIC}@{offset}")
                except RunMessageError as exc:
                    say(f"ignored: {exc}")
                    continue
                if isinstance(m, RunEnded):
                    ended.add(m.run_id)
                else:
                    announced[m.run_id] = m
                caught_up = caught_up or offset + 1 >= end
            if not caught_up:
                continue
            if options.run_id is not None:
                if options.run_id in ended:
                    raise JoinFailed(f"run {options.run_id} has ended")
                if options.run_id in announced:
                    a = announced[options.run_id]
                    if not fits(a):
                        raise JoinFailed(f"run {a.run_id} ({a.scenario_name}) has no {_role(role, hub)} slot for workers")
                    return a
            else:
                now = time.time_ns()
                open_runs = [a for a in announced.values() if a.run_id not in ended and a.join_deadline_ns > now and fits(a)]
                if open_runs:
                    return max(open_runs, key=lambda a: a.announced_ns)
            if not said:
                say(f"waiting for {'run ' + options.run_id if options.run_id else 'the next run'} with a {_role(role, hub)} slot on {RUNS_TOPIC}")
                said = True
        raise JoinFailed(
            f"no {'run ' + options.run_id if options.run_id else 'open run'} with a {_role(role, hub)} slot within {options.wait_s:.0f} s"
        )
    finally:
        await channel.stop()


async def _wait_for_topic(bootstrap: str, wait_s: float, say: Callable[[str], None]) -> None:
    """Wait until the announcements topic exists (no controller has run on this cluster yet)."""
    from exchange.kafka import clients

    deadline = time.monotonic() + wait_s
    said = False
    async with clients.started(clients.admin("topology", bootstrap), bootstrap, f"looking for {RUNS_TOPIC}") as admin:
        while RUNS_TOPIC not in set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise JoinFailed(f"no run announced on {bootstrap} within {wait_s:.0f} s ({RUNS_TOPIC} does not exist)")
            if not said:
                say(f"waiting for a controller to create {RUNS_TOPIC} on {bootstrap}")
                said = True
            await asyncio.sleep(1.0)


def _role(role: str, hub: str | None) -> str:
    return f"{role}:{hub}" if hub else role


async def join(options: JoinOptions, say: Callable[[str], None] = lambda text: None) -> int:
    """Join a run and run one of its slots (see the module docstring); the exit code."""
    role, hub = parse_role(options.role)
    full: set[str] = set()  # --next: runs whose slots of our role were all taken
    while True:
        a = await find_run(options, role, hub, say, frozenset(full))
        say(f"run {a.run_id} ({a.scenario_name}, {a.duration_s:g} s, seed {a.seed}) from {a.controller_host}")
        agent = _Agent(options, a, say)
        await agent.channel.start()
        try:
            try:
                slot = await agent.ask(role, hub)
            except JoinFailed as exc:
                if options.run_id is not None:
                    raise
                say(f"{exc}; waiting for another run")
                full.add(a.run_id)
                continue
            return await agent.run(slot)
        finally:
            await agent.close()


class _Agent:
    def __init__(self, options: JoinOptions, announcement: RunAnnouncement, say: Callable[[str], None]) -> None:
        self.options, self.a, self.say = options, announcement, say
        self.worker_id = remote.worker_id()
        self.channel = remote.Channel(options.bootstrap, announcement.topic)
        self.proc: subprocess.Popen | None = None
        self.slot: Slot | None = None
        self.ended: RunEnded | None = None
        self.stop_asked = self.start_asked = False
        self.files: dict[str, str] = {}  # relayed to us, by name
        self.last_beat = 0.0
        self._status_offset = self._log_offset = 0
        self._partial = b""
        self._schedule_sent = ""
        self.dir = Path()

    async def send(self, message: BaseModel) -> None:
        await self.channel.send(message, self.worker_id)

    async def ask(self, role: str, hub: str | None) -> Slot:
        await self.send(JoinRequest(worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(), role=role, hub=hub))  # type: ignore[arg-type]
        deadline = time.monotonic() + max(30.0, (self.a.join_deadline_ns - time.time_ns()) / 1e9)
        while time.monotonic() < deadline:
            for m in await self._poll():
                if isinstance(m, SlotGranted) and m.worker_id == self.worker_id:
                    self.say(f"granted {m.slot.name} as worker {self.worker_id}")
                    return m.slot
                if isinstance(m, SlotRefused) and m.worker_id == self.worker_id:
                    raise JoinFailed(m.reason)
            if self.ended is not None:
                raise JoinFailed(f"run {self.a.run_id} ended before a slot was granted")
        raise JoinFailed(f"run {self.a.run_id}: the controller did not answer the join request")

    async def _poll(self, timeout_ms: int = 100) -> list[BaseModel]:
        out = []
        for offset, value in await self.channel.poll(timeout_ms):
            try:
                m = decode_run(value, f"{self.channel.topic}@{offset}")
            except RunMessageError as exc:
                self.say(f"ignored: {exc}")
                continue
            if isinstance(m, RunEnded):
                self.ended = m
            elif isinstance(m, StopSlot) and self.slot is not None and m.slot == self.slot.name:
                self.stop_asked = True
            elif isinstance(m, StartSlot) and self.slot is not None and m.slot == self.slot.name:
                self.start_asked = True
            elif isinstance(m, FileRelay) and m.sender == remote.CONTROLLER and m.name in remote.RELAYED_FILES:
                self.files[m.name] = m.content
            out.append(m)
        return out

    def materialize(self, slot: Slot) -> list[str]:
        """The slot's directory and the command line with its paths."""
        self.dir = self.options.workdir.resolve() / self.a.run_id / slot.name
        self.dir.mkdir(parents=True, exist_ok=True)
        scenario = self.dir / "scenario.runtime.json"
        scenario.write_text(self.a.scenario, encoding="utf-8")
        for stale in (self.status_path, self.log_path, self.dir / SCHEDULE_FILE):
            stale.unlink(missing_ok=True)
        values = {
            "{scenario}": str(scenario),
            "{bootstrap}": self.options.bootstrap,
            "{datadir}": str(self.dir / f"{slot.name}-data"),
            "{schedule}": str(self.dir / SCHEDULE_FILE),
            "{status}": str(self.status_path),
        }
        args = remote.fill(slot.args, values)
        return [sys.executable, "-m", slot.module, *args, *child_extra_args(self.options, slot, self.a), "--status", str(self.status_path)]

    @property
    def status_path(self) -> Path:
        assert self.slot is not None
        return self.dir / f"{self.slot.name}.jsonl"

    @property
    def log_path(self) -> Path:
        assert self.slot is not None
        return self.dir / f"{self.slot.name}.log"

    async def run(self, slot: Slot) -> int:
        self.slot = slot
        argv = self.materialize(slot)
        if slot.start == "on-command":
            self.say(f"{slot.name}: waiting for the controller's start")
            while not self.start_asked:
                if self.ended is not None:
                    self.say(f"run ended before {slot.name} started: {self.ended.reason or 'ok'}")
                    return EXIT_OK if self.ended.ok else EXIT_FAILED
                await self._beat()
                await self._poll(200)
        self.proc = proc = spawn(argv, log_path=self.log_path)
        self.say(f"{slot.name}: started pid {proc.pid}: {' '.join(argv[1:4])} …")
        await self.send(SlotStarted(worker_id=self.worker_id, slot=slot.name, pid=proc.pid))
        signalled = False
        while proc.poll() is None:
            await self._poll(int(POLL_S * 1000))
            self._write_files()
            await self._relay()
            await self._beat()
            if (self.stop_asked or self.ended is not None) and not signalled:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                signalled = True
        await self._relay()
        code = proc.returncode
        await self._send_back()
        await self.send(SlotExited(worker_id=self.worker_id, slot=slot.name, code=code, log_tail=self._tail()))
        asked = self.stop_asked or self.ended is not None
        if not asked and (code != 0 or slot.role != "producers"):  # the producers end on their own when their schedule is over
            self.say(f"{slot.name} exited with code {code} unasked; last lines of {self.log_path}:\n{self._tail()}")
            return EXIT_FAILED
        self.say(f"{slot.name} done (exit {code}); waiting for the run's end")
        deadline = time.monotonic() + END_WAIT_S
        while self.ended is None and time.monotonic() < deadline:
            await self._beat()
            await self._poll(500)
        self.say(
            f"run {self.a.run_id} ended: {'ok' if self.ended and self.ended.ok else (self.ended.reason if self.ended else 'no word from the controller')}"
        )
        return EXIT_OK

    async def _beat(self) -> None:
        if time.monotonic() - self.last_beat >= remote.HEARTBEAT_S:
            self.last_beat = time.monotonic()
            await self.send(Heartbeat(worker_id=self.worker_id, slot=self.slot.name if self.slot else None))

    def _write_files(self) -> None:
        """Files the controller relayed (the schedule, for a slot that reads it)."""
        assert self.slot is not None
        for name, content in list(self.files.items()):
            if self._writes_schedule():
                continue  # a single producers process writes it itself
            tmp = self.dir / f".{name}.tmp"
            tmp.write_text(content, encoding="utf-8")
            os.replace(tmp, self.dir / name)
        self.files.clear()

    async def _relay(self) -> None:
        """New status lines (unchanged), new log output, and the producers' schedule once written."""
        assert self.slot is not None
        name = self.slot.name
        chunk = _read_from(self.status_path, self._status_offset)
        self._status_offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                await self.send(StatusRelay(worker_id=self.worker_id, slot=name, line=line.decode()))
        while True:
            log = _read_from(self.log_path, self._log_offset, LOG_CHUNK)
            if not log:
                break
            self._log_offset += len(log)
            await self.send(LogRelay(worker_id=self.worker_id, slot=name, text=log.decode(errors="replace")))
        if self._writes_schedule():  # one of several producer workers does not: the controller writes it
            schedule = self.dir / SCHEDULE_FILE
            content = schedule.read_text(encoding="utf-8") if schedule.exists() else ""
            if content and content != self._schedule_sent:
                self._schedule_sent = content
                await self.send(FileRelay(sender=self.worker_id, slot=name, name=SCHEDULE_FILE, content=content))

    def _writes_schedule(self) -> bool:
        """Whether this slot's process writes the warm-up schedule: the run's only producers process
        (several producer workers wait for the one the controller writes, ``--wait-for-schedule``)."""
        assert self.slot is not None
        return self.slot.role == "producers" and "--wait-for-schedule" not in self.slot.args

    async def _send_back(self) -> None:
        """The files the run directory keeps that this slot wrote (the consumers' samples)."""
        assert self.slot is not None
        for name in [*remote.RELAYED_FILES, *sorted(p.name for p in self.dir.glob("samples-*.jsonl") if remote.relayed_file(p.name))]:
            path = self.dir / name
            if name == SCHEDULE_FILE or not path.exists():
                continue
            if path.stat().st_size > MAX_FILE:
                self.say(f"{path} is over {MAX_FILE // 2**20} MiB: kept here, not sent to the controller")
                continue
            await self.send(FileRelay(sender=self.worker_id, slot=self.slot.name, name=name, content=path.read_text(encoding="utf-8")))

    def _tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def close(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            await asyncio.to_thread(terminate, proc, 5.0)
            if self.slot is not None:
                with contextlib.suppress(Exception):
                    await self._relay()
                    await self.send(SlotExited(worker_id=self.worker_id, slot=self.slot.name, code=proc.returncode or -15, log_tail=self._tail()))
        await self.channel.stop()


def _read_from(path: Path, offset: int, limit: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
