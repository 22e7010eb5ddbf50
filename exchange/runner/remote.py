"""Slots run by workers on other machines: ``--external``, the run topics, the controller's bridge.

``exchange run … --external router=2`` leaves those processes (*slots*) to ``exchange join``
workers (``exchange/runner/join.py``) that share nothing with the controller but the Kafka
cluster. The messages and topics are :mod:`schemas.runs`'s. The controller's side is the
:class:`Bridge`: it publishes the :class:`~schemas.runs.RunAnnouncement`, grants slots to
joining workers, and follows the run's topic, appending every relayed status line to
``RUN_DIR/<slot>.jsonl`` and every log chunk to ``RUN_DIR/<slot>.log``, so the controller
reads a remote child exactly as a local one (the run directory keeps a copy of every
message). A :class:`RemoteProcess` stands for the slot's process where a local child has its
``Popen``: ``poll()`` is the exit code the worker reported, ``terminate()`` a
:class:`~schemas.runs.StopSlot`, and a slot that sends nothing for :data:`SILENCE_S` seconds
(it heartbeats every second) fails the run, naming the worker and its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition
from pydantic import BaseModel

from exchange.errors import ExchangeError
from exchange.kafka import clients
from exchange.kafka.topics import create_topics
from schemas.results import SlotWorker
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
    encode,
    run_topic,
)

ROLES = ("producers", "router", "consumers")
#: a slot that sends nothing for this long (s) fails the run; workers heartbeat every :data:`HEARTBEAT_S`
SILENCE_S = 5.0
HEARTBEAT_S = 1.0
#: the most a run topic's message may hold (the runtime scenario of Dongguan is ~2 MB)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
TOPIC_CONFIG = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
#: files a worker may send back into the run directory, and the controller on to workers
RELAYED_FILES = ("schedule.json", "samples.jsonl")


def relayed_file(name: str) -> bool:
    """Whether a file of that name travels between a worker and the run directory: the
    schedule, and the consumers' samples (``samples-K.jsonl`` as worker K of several)."""
    return name in RELAYED_FILES or re.fullmatch(r"samples-\d+\.jsonl", name) is not None


CONTROLLER = "controller"
#: seconds between the producers writing the warm-up schedule and its start when the file must
#: travel (producers or consumers on a worker): every consumer has it before the first record, so
#: the warm-up is told apart as in a local run (relayed in well under a second on a loaded machine)
SCHEDULE_LEAD_S = 3.0


class ExternalError(ExchangeError, ValueError):
    """An ``--external`` spec that cannot run (exit 2, before anything starts); the text names the part."""


# ---------------------------------------------------------------- --external


_PART = re.compile(r"^(?P<role>[a-z]+)(?::(?P<hub>[A-Za-z0-9_.-]+))?=(?P<n>\S+)$")


def parse_external(spec: str, hubs: tuple[str, ...]) -> dict[tuple[str, str | None], int]:
    """``producers=1,router=2,consumers=1`` (``router:HUB=N`` for one hub of a cascade) as
    ``{(role, hub or None): N}``.

    ``router=N``: N router workers of every hub in use run external; ``router:HUB=N``: of
    that hub (it wins over ``router=N``). ``producers=N`` and ``consumers=N``: the run's N
    producer (consumer) workers, every one external (``--producer-workers``). Raises :class:`ExternalError` naming the part that is wrong.
    """
    out: dict[tuple[str, str | None], int] = {}
    for raw in spec.split(","):
        part = raw.strip()
        m = _PART.match(part)
        if not m:
            raise ExternalError(f"--external {spec!r}: {part!r} is not ROLE=N or router:HUB=N (roles: {', '.join(ROLES)})")
        role, hub, n = m["role"], m["hub"], m["n"]
        if role not in ROLES:
            raise ExternalError(f"--external {spec!r}: {part!r}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        if not n.isdigit() or int(n) < 1:
            raise ExternalError(f"--external {spec!r}: {part!r}: N must be a whole number, 1 or more")
        if hub is not None and role != "router":
            raise ExternalError(f"--external {spec!r}: {part!r}: only router takes a hub (router:HUB=N)")
        if hub is not None and hub not in hubs:
            raise ExternalError(f"--external {spec!r}: {part!r}: hub {hub!r} routes nothing in this scenario (hubs: {', '.join(hubs)})")
        if (role, hub) in out:
            raise ExternalError(f"--external {spec!r}: {part!r}: {role}{':' + hub if hub else ''} given twice")
        out[(role, hub)] = int(n)
    return out


def external_routers(counts: dict[tuple[str, str | None], int], hub: str) -> int:
    """How many router workers of ``hub`` run external."""
    return counts.get(("router", hub), counts.get(("router", None), 0))


def fill(args: list[str], values: dict[str, str]) -> list[str]:
    """``args`` with every placeholder (``{scenario}``, ``{status}`` … :data:`schemas.runs.PLACEHOLDERS`) replaced."""
    out = []
    for a in args:
        for key, value in values.items():
            a = a.replace(key, value)
        out.append(a)
    return out


def worker_id() -> str:
    """A worker's unique id: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


# ---------------------------------------------------------------- the topics


async def create_run_topics(bootstrap: str, run_id: str, replication_factor: int = 1) -> None:
    """:data:`RUNS_TOPIC` (if missing) and the run's own topic, one partition each."""
    plan = {RUNS_TOPIC: 1, run_topic(run_id): 1}
    await create_topics(bootstrap, plan, replication_factor=replication_factor, configs=dict.fromkeys(plan, TOPIC_CONFIG))


class Channel:
    """One topic's single partition, read from the beginning, and a producer to it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.tp = TopicPartition(topic, 0)
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        self.producer = clients.producer("run_control", self.bootstrap)  # made here: aiokafka warns of a client never closed
        self.consumer = clients.consumer("run_control", self.bootstrap)
        await self._stack.enter_async_context(clients.started(self.producer, self.bootstrap, f"publishing to {self.topic}"))
        await self._stack.enter_async_context(clients.started(self.consumer, self.bootstrap, f"reading {self.topic}"))
        self.consumer.assign([self.tp])
        await self.consumer.seek_to_beginning(self.tp)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def send(self, message: BaseModel, key: str = "") -> None:
        await self.producer.send_and_wait(self.topic, encode(message), key=key.encode() or None)

    async def end_offset(self) -> int:
        return (await self.consumer.end_offsets([self.tp]))[self.tp]

    async def poll(self, timeout_ms: int = 100) -> list[tuple[int, bytes]]:
        """(offset, value) of the records since the last call."""
        batch = await self.consumer.getmany(self.tp, timeout_ms=timeout_ms)
        return [(r.offset, r.value) for r in batch.get(self.tp, []) if r.value is not None]


# ---------------------------------------------------------------- the controller's side


@dataclass
class RemoteProcess:
    """A slot's process on a worker, as the controller knows it (a local child's ``Popen``'s
    ``pid``, ``poll()``, ``returncode``, ``terminate()``), through the :class:`Bridge`."""

    slot: Slot
    bridge: Bridge
    pid: int = 0  # the process's pid on its host, once the worker started it
    returncode: int | None = None
    worker_id: str | None = None
    host: str = ""
    last_heard: float = 0.0  # monotonic
    stop_sent: bool = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        """Ask the worker to stop the process (SIGTERM there); sent once."""
        if not self.stop_sent and self.worker_id is not None:
            self.stop_sent = True
            self.bridge.post(StopSlot(slot=self.slot.name))

    kill = terminate

    def where(self) -> str:
        return f"worker {self.worker_id} on {self.host or '?'}"

    def silent(self, now: float | None = None) -> str | None:
        """Why this slot is taken for gone (nothing heard for :data:`SILENCE_S` s), else None."""
        if self.worker_id is None or self.returncode is not None:
            return None
        quiet = (time.monotonic() if now is None else now) - self.last_heard
        if quiet > self.bridge.silence_s:
            return f"{self.slot.name} ({self.where()}) sent nothing for {quiet:.0f} s: the worker or its machine is gone"
        return None


@dataclass
class Bridge:
    """The controller's end of a run's topic (see the module docstring)."""

    bootstrap: str
    run_id: str
    run_dir: Path
    slots: list[Slot]
    say: Callable[[str], None] = lambda text: None
    silence_s: float = SILENCE_S
    procs: dict[str, RemoteProcess] = field(default_factory=dict)
    failure: str | None = None  # the pump's end, when it failed

    def __post_init__(self) -> None:
        self.topic = run_topic(self.run_id)
        self.procs = {s.name: RemoteProcess(s, self) for s in self.slots}
        self._outbox: asyncio.Queue[BaseModel] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._schedule_sent = True  # until relay_schedule(): a stale file must not go out
        self.channel = Channel(self.bootstrap, self.topic)

    async def start(self, announcement: RunAnnouncement) -> None:
        """Follow the run's topic, then announce the run on :data:`RUNS_TOPIC`."""
        await self.channel.start()
        self._task = asyncio.create_task(self._pump(), name="run-topic-bridge")
        await self.channel.producer.send_and_wait(RUNS_TOPIC, encode(announcement), key=self.run_id.encode())

    def post(self, message: BaseModel) -> None:
        """Send ``message`` on the run's topic (in order, from the pump)."""
        self._outbox.put_nowait(message)

    def start_slot(self, name: str) -> None:
        self.post(StartSlot(slot=name))

    def relay_schedule(self) -> None:
        """From now on, send ``RUN_DIR/schedule.json`` to the workers once it is written."""
        self._schedule_sent = False

    def missing(self) -> str | None:
        """What the run still waits for (``router: 1 of 2 joined``), or None when every slot is taken."""
        wanted: dict[str, list[RemoteProcess]] = {}
        hubs = {p.slot.hub for p in self.procs.values() if p.slot.role == "router"}
        for p in self.procs.values():
            key = f"router:{p.slot.hub}" if p.slot.role == "router" and len(hubs) > 1 else p.slot.role
            wanted.setdefault(key, []).append(p)
        parts = [
            f"{k}: {sum(p.worker_id is not None for p in ps)} of {len(ps)} joined" for k, ps in wanted.items() if any(p.worker_id is None for p in ps)
        ]
        return "; ".join(parts) or None

    async def wait_joined(self, timeout: float) -> str | None:
        """Wait until every slot has a worker; None, or what is missing when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        last_said = ""
        while (missing := self.missing()) is not None:
            if self.failure:
                return f"{missing} ({self.failure})"
            if time.monotonic() > deadline:
                return missing
            if missing != last_said:
                self.say(f"run {self.run_id}: waiting for {missing} (exchange join --bootstrap … --run {self.run_id} --role ROLE)")
                last_said = missing
            await asyncio.sleep(0.1)
        return None

    def workers(self) -> list[SlotWorker]:
        return [
            SlotWorker(slot=p.slot.name, role=p.slot.role, worker_id=p.worker_id, host=p.host, pid=p.pid)
            for p in self.procs.values()
            if p.worker_id is not None
        ]

    def check(self) -> str | None:
        """Why the remote side fails the run (a silent slot, the topic lost), else None."""
        if self.failure:
            return f"the run topic {self.topic}: {self.failure}"
        now = time.monotonic()
        return next((why for p in self.procs.values() if (why := p.silent(now)) is not None), None)

    async def end(self, ok: bool, reason: str = "") -> None:
        """Tell every worker the run is over (on both topics), then stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        ended = RunEnded(run_id=self.run_id, ok=ok, reason=reason[:500])
        with contextlib.suppress(Exception):  # a broker gone must not hide the run's own error
            while not self._outbox.empty():
                await self.channel.send(self._outbox.get_nowait(), CONTROLLER)
            await self.channel.send(ended, CONTROLLER)
            await self.channel.producer.send_and_wait(RUNS_TOPIC, encode(ended), key=self.run_id.encode())
        with contextlib.suppress(Exception):
            await self.channel.stop()

    # -------------------------------------------------------------- the pump

    async def _pump(self) -> None:
        try:
            while True:
                while not self._outbox.empty():
                    await self.channel.send(self._outbox.get_nowait(), CONTROLLER)
                for offset, value in await self.channel.poll(50):
                    try:
                        message = decode_run(value, f"{self.topic}@{offset}")
                    except RunMessageError as exc:
                        self.say(f"ignored: {exc}")
                        continue
                    await self._handle(message)
                self._maybe_relay_schedule()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the controller fails the run with it
            self.failure = f"{type(exc).__name__}: {exc}"

    async def _handle(self, m: BaseModel) -> None:
        if isinstance(m, JoinRequest):
            await self._join(m)
            return
        wid = getattr(m, "worker_id", None) or getattr(m, "sender", None)
        proc = next((p for p in self.procs.values() if p.worker_id == wid and wid is not None), None)
        if proc is None:
            return  # the controller's own messages, or a worker without a slot
        proc.last_heard = time.monotonic()
        name = proc.slot.name
        if isinstance(m, SlotStarted):
            proc.pid = m.pid
        elif isinstance(m, StatusRelay):
            with open(self.run_dir / f"{name}.jsonl", "ab") as f:
                f.write(m.line.encode() + b"\n")
        elif isinstance(m, LogRelay):
            with open(self.run_dir / f"{name}.log", "a", encoding="utf-8") as f:
                f.write(m.text)
        elif isinstance(m, SlotExited):
            proc.returncode = m.code
        elif isinstance(m, FileRelay) and relayed_file(m.name):
            tmp = self.run_dir / f".{m.name}.tmp"
            tmp.write_text(m.content, encoding="utf-8")
            os.replace(tmp, self.run_dir / m.name)
        elif isinstance(m, Heartbeat):
            pass

    async def _join(self, m: JoinRequest) -> None:
        if any(p.worker_id == m.worker_id for p in self.procs.values()):
            return  # asked twice
        mine = [p for p in self.procs.values() if p.slot.role == m.role and (m.hub is None or p.slot.hub == m.hub)]
        free = next((p for p in mine if p.worker_id is None), None)
        if free is None:
            what = f"{m.role}{':' + m.hub if m.hub else ''}"
            reason = f"run {self.run_id} has no free {what} slot" + (f" ({len(mine)} of {len(mine)} taken)" if mine else "")
            await self.channel.send(SlotRefused(worker_id=m.worker_id, reason=reason), CONTROLLER)
            return
        free.worker_id, free.host, free.last_heard = m.worker_id, m.host, time.monotonic()
        self.say(f"{free.slot.name}: worker {m.worker_id} on {m.host} joined")
        await self.channel.send(SlotGranted(worker_id=m.worker_id, slot=free.slot), CONTROLLER)

    def _maybe_relay_schedule(self) -> None:
        if self._schedule_sent:
            return
        path = self.run_dir / "schedule.json"
        if path.exists():
            self._schedule_sent = True
            self.post(FileRelay(sender=CONTROLLER, name=path.name, content=path.read_text(encoding="utf-8")))


def announcement(
    run_id: str, scenario_name: str, scenario_json: str, duration_s: float, seed: int, slots: list[Slot], join_s: float
) -> RunAnnouncement:
    now = time.time_ns()
    return RunAnnouncement(
        run_id=run_id,
        topic=run_topic(run_id),
        scenario_name=scenario_name,
        scenario=scenario_json,
        duration_s=duration_s,
        seed=seed,
        slots=slots,
        announced_ns=now,
        join_deadline_ns=now + int(join_s * 1e9),
        controller_host=socket.gethostname(),
    )


__all__ = [
    "HEARTBEAT_S",
    "RUNS_TOPIC",
    "Bridge",
    "Channel",
    "ExternalError",
    "RemoteProcess",
    "announcement",
    "create_run_topics",
    "decode_runs",
    "external_routers",
    "fill",
    "parse_external",
    "worker_id",
]
