"""The run controller: broker, topics, router workers, consumers, producers, result.

It starts every process itself, watches them through their status files, and ends the
run only when every produced record is accounted for (or the drain time runs out), so
the conservation check speaks about the whole run. Any child or broker death, and any
crash a child reports from inside while it lives on (a Faust agent, a task, a thread:
``exchange/runner/processes.py``), fails the run at once with the reason, except the deaths a
``--chaos`` schedule causes: those processes are restarted (``exchange/runner/faults.py``). No
process outlives the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson
from pydantic import BaseModel

from consumers.process import samples_file
from exchange import metrics
from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka import brokers, offset_gaps
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.timesync import ClockServer, clock_topic
from exchange.kafka.topics import changelog_plan, create_router_internal_topics, create_topics, ingress_topics, topic_plan
from exchange.results import merge
from exchange.results.build import Reports, build_result, cpu_warning, expected_outcomes
from exchange.results.slos import judge
from exchange.router.faust_bulk import FETCH_MAX_WAIT_MS
from exchange.router.lanes import QUIET_FETCH_WAIT_MS
from exchange.runner import chaos, remote
from exchange.runner.clock import offset_warning
from exchange.runner.faults import FaultInjector
from exchange.runner.options import RunOptions, check_external, check_workers, parse_chaos, resolve_guarantee, resolve_topics, subscriber_clients
from exchange.runner.processes import cpu_seconds, machine_cpu, release_heap, settle_heap, spawn, terminate
from exchange.runner.status import StatusReader
from exchange.runner.warmup import SCHEDULE_FILE, read_schedule_start, warmup_seconds, write_schedule
from schemas.clock import ClockOffset
from schemas.envelope import IngressLayout
from schemas.results import FaultResult, Result, RunInfo
from schemas.runs import Slot
from schemas.scenario import Scenario
from schemas.status import (
    ConsumersFinal,
    ConsumersStats,
    Crashed,
    Error,
    MessageError,
    ProducersFinal,
    ProducersStats,
    RouterFinal,
    RouterReady,
    RouterStats,
    StatusMessage,
)

POLL_S = 0.2
#: the roles whose processes' CPU a run measures on this machine (result.json run.cpu_s)
CPU_ROLES = ("router", "broker", "producers", "consumers", "controller")
#: several producer workers start their schedule together this long after the last is ready
START_MARGIN_S = 0.2
#: how long after the one producer worker said ready its schedule file may take to show (a
#: worker elsewhere relays it) before the run counts from the ready message instead
SCHEDULE_FILE_WAIT_S = 5.0


class RunDirInUse(ExchangeError, ValueError):
    """``--out`` names a directory that holds a run already (exit 2: nothing is started or overwritten)."""


class RunFailed(ExchangeError, RuntimeError):
    """The run could not complete; the message says what died, crashed or timed out (exit code 1)."""

    exit_code = EXIT_FAILED
    label = "run failed"


@dataclass
class Progress:
    """A snapshot for the live display."""

    phase: str = "starting"
    elapsed: float = 0.0
    duration: float = 0.0
    produced: int = 0
    publish_rate: float = 0.0
    consume_rate: float = 0.0
    delivered: int = 0
    denied: int = 0
    dead_lettered: int = 0
    expected: int = 0
    duplicates: int = 0
    router_lag: int = 0
    consumer_lag: int = 0
    p99_ms: float = 0.0  # end to end, last interval
    conflicts: int = 0
    faults: list[str] = field(default_factory=list)  # what the chaos schedule did so far


T = TypeVar("T", bound=BaseModel)


@dataclass
class _Child:
    """A child process; after a restart (``--chaos``) the same name, files and reader go on
    with a new process, and its messages tell the incarnations apart by their sender's pid."""

    name: str
    proc: subprocess.Popen | remote.RemoteProcess  # a slot an `exchange join` worker runs has no Popen
    status: StatusReader
    log: Path
    argv: list[str] = field(default_factory=list)
    events: list[StatusMessage] = field(default_factory=list)  # every message but stats
    pids: list[int] = field(default_factory=list)  # every incarnation, in order
    last_stats: dict[int, StatusMessage] = field(default_factory=dict)  # by pid

    env: dict[str, str] | None = None  # the whole environment when variables were added (RunOptions.child_env)
    held: list[StatusMessage] = field(default_factory=list)  # read by peek(), given again by the next read()

    @classmethod
    def spawn(cls, run_dir: Path, name: str, module_args: list[str], env: dict[str, str] | None = None) -> _Child:
        """``python -m <module_args…> --status RUN_DIR/NAME.jsonl``, logging to RUN_DIR/NAME.log;
        ``env``: variables added to the environment it inherits."""
        status, log = run_dir / f"{name}.jsonl", run_dir / f"{name}.log"
        argv = [sys.executable, "-m", *module_args, "--status", str(status)]
        full_env = {**os.environ, **env} if env else None
        proc = spawn(argv, log_path=log, env=full_env)
        return cls(name, proc, StatusReader(status), log, argv, pids=[proc.pid], env=full_env)

    @classmethod
    def remote(cls, run_dir: Path, proc: remote.RemoteProcess) -> _Child:
        """A slot a worker runs: its messages and log, relayed by the bridge, land in the same files."""
        name = proc.slot.name
        return cls(name, proc, StatusReader(run_dir / f"{name}.jsonl"), run_dir / f"{name}.log")

    def restart(self) -> None:
        """Start the same command again (the old process must be gone); files are appended to."""
        proc = self.proc = spawn(self.argv, log_path=self.log, env=self.env)
        self.pids.append(proc.pid)

    def clock(self) -> ClockOffset | None:
        """The clock offset the running incarnation measured at its start (its ``ready`` message)."""
        return next((m.body.clock for m in reversed(self.events) if m.kind == "ready" and m.pid == self.proc.pid), None)

    def read(self) -> list[StatusMessage]:
        """The messages sent since the last call; :class:`RunFailed` naming the file and line of one that cannot be read."""
        if self.proc.pid and self.proc.pid not in self.pids:  # a remote slot's process, once its worker started it
            self.pids.append(self.proc.pid)
        try:
            new = self.status.read()
        except MessageError as exc:
            raise RunFailed(f"{self.name} sent a message that cannot be read: {exc}") from None
        for m in new:
            if m.kind == "stats":
                self.last_stats[m.pid] = m
            else:
                self.events.append(m)
        out, self.held = [*self.held, *new], []
        return out

    def peek(self) -> list[StatusMessage]:
        """As :meth:`read`, but the next ``read()`` returns these messages again."""
        self.held = self.read()
        return self.held

    def current(self, messages: list[StatusMessage]) -> list[StatusMessage]:
        """The messages of the running incarnation (an old one's last lines may come late)."""
        return [m for m in messages if m.pid == self.proc.pid]

    def is_ready(self) -> bool:
        """The running incarnation said ``ready``."""
        return any(m.kind == "ready" and m.pid == self.proc.pid for m in self.events)

    def last(self, body: type[T]) -> T | None:
        """The running incarnation's last message of type ``body`` (not stats: see ``last_stats``)."""
        pid = self.proc.pid
        return next((m.body for m in reversed(self.events) if isinstance(m.body, body) and m.pid == pid), None)

    def raise_reported(self) -> None:
        """RunFailed naming the child when the running incarnation reported an ``Error``
        (among the messages read so far), with the last lines of its log."""
        error = self.last(Error)
        if error is not None:
            raise RunFailed(f"{self.name} failed: {error.message}\n{self.tail()}")

    def reports(self) -> list[BaseModel]:
        """Per incarnation, its final report, or its last stats if it was killed first."""
        out = []
        for pid in self.pids:
            final = next((m.body for m in reversed(self.events) if m.kind == "final" and m.pid == pid), None)
            if final is not None or pid in self.last_stats:
                out.append(final or self.last_stats[pid].body)
        return out

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def default_run_dir(scenario: Scenario) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{scenario.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


async def run(
    options: RunOptions, on_progress: Callable[[Progress], None] = lambda p: None, say: Callable[[str], None] | None = None
) -> tuple[Result, Path]:
    """Run a scenario end to end; returns the result and the run directory.

    ``say`` takes the controller's informational lines (its metrics port; default stderr),
    so a live view can print them above itself. Raises :class:`RunFailed` when a process
    dies or crashes, and the :class:`~exchange.errors.ExchangeError` of what could not be
    set up (no broker, topics with other partitions) before anything starts.
    """
    r = _Run(options, on_progress, say)  # ChaosError, WarmupError, WorkersError before anything starts
    try:
        await r.start_broker_and_topics()
        await r.start_workers()
        await r.start_routers_and_consumers()
        await r.start_producers()
        reports = await r.publish_and_drain()
        await r.collect(reports)
        result = r.result(reports)
        r.phase("done")
        r.ok = True
        return result, r.run_dir
    except BaseException as exc:
        r.failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        await r.close()
        if not r.ok:
            r.forget_unstarted()


#: what a run directory holds before anything of the run started
_BEFORE_START = {"scenario.json", "scenario.runtime.json"}


class _Run:
    """One run's state, from the broker's start to ``result.json``: :func:`run`'s steps."""

    consumers: _Child  # set by start_routers_and_consumers: consumer worker 0, which --chaos addresses (one worker then)
    consumer_workers: list[_Child]  # every consumer worker, by index
    workers_by_id: dict[str, _Child]  # router workers --chaos addresses, by number
    producer_workers: list[_Child]  # set by start_producers, by index
    t0: float  # monotonic time publishing started

    def __init__(self, options: RunOptions, on_progress: Callable[[Progress], None], say: Callable[[str], None] | None) -> None:
        self.on_progress, self.say = on_progress, say
        self.guarantee = resolve_guarantee(options)  # GuaranteeError before anything starts
        # --external producers=N / consumers=N: that many workers of the role, all of them external
        self.external = external = check_external(options, options.scenario)  # ExternalError before anything starts
        options = replace(
            options,
            producer_workers=external.get(("producers", None), options.producer_workers),
            consumer_workers=external.get(("consumers", None), options.consumer_workers),
        )
        self.options = options
        check_workers(options)  # WorkersError
        # the processes read it from the runtime scenario
        self.topics = resolve_topics(options)  # TopicLayoutError before anything starts
        self.scenario = scenario = options.scenario.model_copy(update={"guarantee": self.guarantee, "topics": self.topics})
        self.duration = duration = options.duration if options.duration is not None else scenario.load.duration
        self.faults = parse_chaos(options, duration)
        # --external router=N: at least N router workers per hub
        self.workers = max([options.workers, *(n for (role, _), n in self.external.items() if role == "router")])
        self.bridge: remote.Bridge | None = None
        self.slots: list[Slot] = []  # every process of the run, local or not, in start order
        self.run_dir = options.out or default_run_dir(scenario)
        if (self.run_dir / "result.json").exists():  # another run's record: never written over
            raise RunDirInUse(f"{self.run_dir} holds a run already (result.json): give another --out, or remove that run first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "scenario.json").write_text(scenario.model_dump_json(indent=2), encoding="utf-8")  # the record of the run
        self.scenario_json = self.run_dir / "scenario.runtime.json"  # what the processes read: live entries only
        self.scenario_json.write_text(scenario.runtime_json(), encoding="utf-8")
        self.progress = Progress(duration=duration)
        self.broker = None if options.bootstrap else (options.broker_instance or brokers.make(options.broker, log_path=self.run_dir / "broker.log"))
        self.kind = self.broker.kind if self.broker is not None else None
        # a broker this run starts itself: on Apache Kafka a cold JVM, whose JIT start-up gets a longer default warm-up
        cold_kafka = self.kind == "kafka" and options.broker_instance is None
        self.warmup_s = warmup_seconds(options.warmup, scenario.load.warmup, duration, cold_kafka=cold_kafka)
        self.bootstrap = options.bootstrap or ""
        self.children: list[_Child] = []
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.run_id = secrets.token_hex(4)
        self.platform = scenario.platform.id
        self.sd_file: Path | None = None
        self.injector: FaultInjector | None = None
        self.chaos_log: BinaryIO | None = None
        self.lag_samples: list[chaos.LagSample] = []
        self.routers: list[_Child] = []
        self.router_ready: list[float] = []
        self.fetch_wait_ms = 0
        self.router_cpu: dict[str, float] = {}
        self.cpu_seen: dict[int, float] = {}  # pid → its last CPU seconds read (note_cpu)
        self.drain_s = self.end_s = 0.0
        self.clock_server: ClockServer | None = None
        self.heap_thresholds: tuple[int, int, int] | None = None  # settle_heap's, while publishing
        self.replication = 1
        self.ok, self.failure = False, ""  # for the workers' RunEnded

    def forget_unstarted(self) -> None:
        """Remove the default run directory of a run that failed before anything started (no
        broker at ``--bootstrap``…): it holds only the scenario, and would pile up as empty runs.
        A directory given with ``--out``, or holding anything else (a broker log), stays."""
        if self.options.out is not None or not self.run_dir.is_dir():
            return
        if {p.name for p in self.run_dir.iterdir()} <= _BEFORE_START:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # runs/ itself, when this was all it held
                self.run_dir.parent.rmdir()

    def phase(self, phase: str) -> None:
        self.progress.phase = phase
        self.on_progress(self.progress)

    def slot(self, name: str, role: str, module: str, *args: str, hub: str | None = None) -> Slot:
        """A process of the run: the module's command line with the run's scenario, bootstrap, id and
        clock topic (a worker elsewhere measures its offset against the controller's clock server
        too), paths as placeholders (``{datadir}``, ``{schedule}``: schemas/runs.py PLACEHOLDERS)."""
        clock = ["--clock-topic", clock_topic(self.run_id), *([] if self.options.clock_correction else ["--no-clock-correction"])]
        argv = ["--scenario", "{scenario}", "--bootstrap", "{bootstrap}", "--run-id", self.run_id, *clock, *args]
        return Slot(name=name, role=role, hub=hub, module=module, args=argv, start="on-command" if role == "producers" else "on-grant")  # type: ignore[arg-type]

    def is_external(self, slot: Slot) -> bool:
        if slot.role == "router":
            hub = slot.hub or self.platform
            index = int(slot.name.rsplit("-", 1)[1])
            return index < remote.external_routers(self.external, hub)
        return (slot.role, None) in self.external  # every worker of the role (see __init__)

    def start(self, slot: Slot) -> _Child:
        """Spawn a slot's process here, with ``--status RUN_DIR/NAME.jsonl`` (and the variables
        ``--child-env`` adds); or, for a slot a worker runs, its stand-in (started on its grant, or
        by :meth:`Bridge.start_slot`)."""
        if self.bridge is not None and slot.name in self.bridge.procs:
            child = _Child.remote(self.run_dir, self.bridge.procs[slot.name])
        else:
            values = {
                "{scenario}": str(self.scenario_json),
                "{bootstrap}": self.bootstrap,
                "{datadir}": str(self.run_dir / f"{slot.name}-data"),
                "{schedule}": str(self.run_dir / SCHEDULE_FILE),
            }
            env = {**self.options.child_env.get(slot.role, {}), **self.options.child_env.get(slot.name, {})}
            child = _Child.spawn(self.run_dir, slot.name, [slot.module, *remote.fill(slot.args, values)], env)
        self.children.append(child)
        return child

    def plan_slots(self) -> list[Slot]:
        """Every process of the run: router workers, the consumers, the producers (their start order)."""
        names = _router_names(self.scenario, self.workers)
        kind = ["--broker-kind", self.kind] if self.kind else []  # on tansu, their consumers wait at offset gaps
        self.fetch_wait_ms = self.options.fetch_wait_ms or brokers.fetch_wait_ms(self.kind) or default_fetch_wait(len(names))
        routers = [
            self.slot(
                name,
                "router",
                "exchange.router",
                "--worker",
                str(i),
                "--platform",
                hub,
                "--datadir",
                "{datadir}",
                "--fetch-wait-ms",
                str(self.fetch_wait_ms),
                *([] if self.options.quiet_fetch_wait_ms is None else ["--quiet-fetch-wait-ms", str(self.options.quiet_fetch_wait_ms)]),
                *(["--no-declare-topics"] if self.kind == "kafka" else []),  # created up front: see exchange/router/app.py
                *kind,
                hub=hub,
            )
            for hub, i, name in names
        ]
        chaos_args: list[str] = []
        if self.faults:  # resumable after a kill, and pausable per department
            chaos_args = ["--checkpoint", str(self.run_dir / "consumers.checkpoint"), "--pause-file", str(self.run_dir / "consumers.paused")]
        # long-poll on Kafka (the consumers' own default is tuned for Tansu)
        wait = brokers.fetch_wait_ms(self.kind)
        long_poll = ["--fetch-wait-ms", str(wait)] if wait else []
        schedule = ["--schedule-file", "{schedule}"]  # the warm-up's end, written by the producers
        options = self.options
        consumers = [
            self.slot(
                name,
                "consumers",
                "consumers",
                "--seed",
                str(options.seed),
                "--subscriber-clients",
                subscriber_clients(options.subscriber_clients, self.kind),
                *kind,
                *chaos_args,
                *long_poll,
                *([] if options.quiet_fetch_wait_ms is None else ["--quiet-fetch-wait-ms", str(options.quiet_fetch_wait_ms)]),
                *schedule,
                *args,
            )
            for name, args in _worker_specs("consumers", options.consumer_workers)
        ]
        common = ["--duration", str(self.duration), "--seed", str(options.seed), "--rate-multiplier", str(options.rate_multiplier)]
        common += ["--warmup", str(self.warmup_s), *schedule]
        together = ["--wait-for-schedule"] if options.producer_workers > 1 else []  # one start for all, written by the controller
        producers = [
            self.slot(name, "producers", "producers", *common, *together, *args)
            for name, args in _worker_specs("producers", options.producer_workers)
        ]
        return [*routers, *consumers, *producers]

    async def start_workers(self) -> None:
        """With ``--external``: announce the run and wait until a worker took every external slot."""
        self.slots = self.plan_slots()
        external = [s for s in self.slots if self.is_external(s)]
        if not external:
            return
        if any(s.role in ("producers", "consumers") for s in external):  # the schedule file travels through Kafka
            for producers in (s for s in self.slots if s.role == "producers"):
                producers.args += ["--schedule-lead", str(remote.SCHEDULE_LEAD_S)]
        self.phase("waiting for workers")
        timeout = self.options.ready_timeout
        self.bridge = remote.Bridge(self.bootstrap, self.run_id, self.run_dir, external, say=self.say or (lambda text: None))
        ann = remote.announcement(self.run_id, self.scenario.name, self.scenario.runtime_json(), self.duration, self.options.seed, external, timeout)
        await remote.create_run_topics(self.bootstrap, self.run_id, self.replication)
        await self.bridge.start(ann)
        missing = await self.bridge.wait_joined(timeout)
        if missing is not None:
            raise RunFailed(f"workers did not join run {self.run_id} within {timeout:.0f} s: waiting for {missing}")

    async def start_broker_and_topics(self) -> None:
        """The embedded broker (without ``--bootstrap``), the run's topics, the controller's metrics."""
        broker = self.broker
        if broker is not None:
            try:
                await broker.astart()
            except brokers.BrokerError as exc:
                raise RunFailed(f"could not start the broker ({self.options.broker}): {exc}") from None
            self.bootstrap = broker.bootstrap
            replication = broker.replication_factor
        else:  # --bootstrap: ask the cluster what it is, for its fetch waits and replication
            existing = await brokers.describe(self.bootstrap)
            self.kind, replication = existing.kind, existing.replication_factor
        self.replication = replication
        # the bridge and the clock server read topics that many processes write at once
        offset_gaps.install_for(self.kind)
        self.phase("creating topics")
        await create_topics(self.bootstrap, topic_plan(self.scenario), check=changelog_plan(self.scenario), replication_factor=replication)
        if self.kind == "kafka":  # Faust's own topics too: a router racing Kafka's metadata for them can hang
            await create_router_internal_topics(self.bootstrap, self.scenario, replication)
        # every child measures its clock offset against this at its start (exchange/kafka/timesync.py)
        self.clock_server = await ClockServer(
            bootstrap=self.bootstrap,
            topic=clock_topic(self.run_id),
            replication_factor=replication,
            delete_topic=broker is None,
            broker_kind=self.kind,
        ).start()
        self.sd_file = metrics.expose("controller", "0", self.scenario, self.run_dir, self.options.metrics_port, self.run_id, say=self.say)
        metrics.RUN_DURATION_SECONDS.labels(self.platform).set(self.duration)

    async def start_routers_and_consumers(self) -> None:
        """Every router worker and the consumer process, ready to take records."""
        self.phase("starting router")
        (self.run_dir / SCHEDULE_FILE).unlink(missing_ok=True)
        self.routers = [self.start(s) for s in self.slots if s.role == "router"]
        # --chaos addresses router workers by number: those of the first hub (the main one in a cascade)
        first_hub = self.slots[0].hub
        self.workers_by_id = {s.args[s.args.index("--worker") + 1]: r for s, r in zip(self.slots, self.routers, strict=False) if s.hub == first_hub}
        self.consumer_workers = [self.start(s) for s in self.slots if s.role == "consumers"]
        self.consumers = self.consumer_workers[0]
        await _wait_ready([*self.routers, *self.consumer_workers], self.broker, brokers.ready_timeout(self.kind, self.options.ready_timeout))
        self.router_ready = [ready.seconds for r in self.routers if (ready := r.last(RouterReady)) is not None]

    async def start_producers(self) -> None:
        """The producer workers, and the chaos schedule's clock with them.

        One worker starts its schedule when it is ready and writes the schedule file; several
        wait until all are ready, and the controller writes the file with one start for all."""
        # the controller serves the clock and follows every status line all run long: its
        # collector leaves the start-up heap alone until the run ends (close() releases it)
        self.heap_thresholds = settle_heap()
        self.progress.phase = "publishing"
        options = self.options
        slots = [s for s in self.slots if s.role == "producers"]
        self.producer_workers = [self.start(s) for s in slots]
        if self.bridge is not None:
            for slot in slots:
                if slot.name in self.bridge.procs:
                    self.bridge.start_slot(slot.name)
            self.bridge.relay_schedule()  # the warm-up's end, on to the workers that read it
        if options.producer_workers > 1:
            await _wait_ready(self.producer_workers, self.broker, brokers.ready_timeout(self.kind, options.ready_timeout))
            # workers elsewhere need the time the file takes to reach them (docs/distributed.md)
            margin = remote.SCHEDULE_LEAD_S if self.bridge is not None else START_MARGIN_S
            write_schedule(self.run_dir / SCHEDULE_FILE, time.time_ns() + round(margin * 1e9), self.warmup_s)
            await asyncio.sleep(margin)
            self.t0 = time.monotonic()
        else:
            t0 = await self._schedule_start(self.producer_workers[0], brokers.ready_timeout(self.kind, options.ready_timeout))
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))  # a lead for workers elsewhere: the start lies ahead
            self.t0 = t0
        self.cpu_at_start = self._cpu_now()
        self.machine_at_start = machine_cpu()
        self.cpu_from = time.monotonic()
        if self.faults:
            # what was done when, and every lag sample the recovery times come from
            self.chaos_log = open(self.run_dir / "chaos.jsonl", "ab", buffering=0)  # noqa: SIM115 - closed by close()
            self.injector = FaultInjector(
                self.faults,
                self.workers_by_id,
                self.consumers,
                self.broker,
                self.run_dir / "consumers.paused",
                ingress_topics=ingress_topics(self.scenario),
            )

    async def _schedule_start(self, producers: _Child, timeout: float) -> float:
        """When the one producer worker's schedule starts (``time.monotonic()``), read from the
        schedule file it writes once ready.

        The chaos schedule and the CPU window count from there: the worker takes 1-2 s from its
        start to its schedule's (imports, the clock offset, the entity pool), 5-6 s on a loaded
        machine, and a fault timed from its spawn could land before the first record (a CI run:
        ``pause-broker@4s+3s`` stalled no producer). RunFailed as :func:`_wait_ready`; a worker that
        said ready but whose file does not come (a worker elsewhere relays it) counts from then."""
        path = self.run_dir / SCHEDULE_FILE
        deadline, ready_at = time.monotonic() + timeout, None
        while True:
            if isinstance(producers.proc, subprocess.Popen) and producers.proc.returncode is None:
                # its CPU before poll() reaps it: a short run's worker can finish publishing and
                # exit before the window opens, and then its times are gone from /proc
                self.note_cpu(producers.proc.pid)
            exited = producers.proc.poll() is not None  # before the file: one written just before exiting is read
            try:
                start_ns = read_schedule_start(path)
            except (FileNotFoundError, ValueError, KeyError):  # not written yet, or half relayed
                pass
            else:
                return time.monotonic() + (start_ns - time.time_ns()) / 1e9
            _check_alive(self.children, self.broker, allow_exit={producers.name})
            producers.peek()  # the watch reads them again: stats lines count from the start
            producers.raise_reported()
            now = time.monotonic()
            if producers.is_ready() and ready_at is None:
                ready_at = now
            if exited or (ready_at is not None and now > ready_at + SCHEDULE_FILE_WAIT_S):
                return ready_at if ready_at is not None else now
            if now > deadline and ready_at is None:
                raise RunFailed(f"not ready after {timeout:.0f} s: ['{producers.name}']")
            await asyncio.sleep(0.02)

    async def publish_and_drain(self) -> Reports:
        """Watch the children until the producers are done and every outcome is accounted for
        (or the drain time runs out); what they reported meanwhile."""
        watch = _Watch(self)
        while True:
            await asyncio.sleep(POLL_S)
            self._inject_faults()
            # read before _check_alive reaps them: a producers process that has just exited is a
            # zombie until then, and /proc still gives its final CPU times
            for producers in self.producer_workers:
                if isinstance(producers.proc, subprocess.Popen) and producers.proc.returncode is None:
                    self.note_cpu(producers.proc.pid)
            _check_alive(self.children, self.broker, allow_exit={p.name for p in self.producer_workers})
            watch.read_producers()
            watch.read_consumers()
            watch.read_routers()
            self.progress.elapsed = time.monotonic() - self.t0
            self._sample_lag(watch)
            _progress_metrics(self.platform, self.progress)
            self.progress.publish_rate = _last_rate(watch.reports.publish_samples)
            self.progress.consume_rate = _last_rate(watch.reports.consume_samples)
            if watch.drained():
                break
            self.on_progress(self.progress)
        self.drain_s = time.monotonic() - watch.drain_started
        self.end_s = time.monotonic() - self.t0
        if self.injector is not None:
            self.injector.release()
        return watch.reports

    def _inject_faults(self) -> None:
        if self.injector is None:
            return
        for said in self.injector.step(time.monotonic() - self.t0):
            self.progress.faults.append(f"{time.monotonic() - self.t0:5.1f} s {said}")
            self._chaos_line({"t": round(time.monotonic() - self.t0, 3), "action": said})

    def _sample_lag(self, watch: _Watch) -> None:
        """Under --chaos: the lag sample the recovery times come from."""
        if self.injector is None:
            return
        progress = self.progress
        pids = {c.name: c.proc.pid for c in [*self.routers, self.consumers]}
        complete = watch.lag_known and self.injector.complete(progress.elapsed, pids)
        self.lag_samples.append(chaos.LagSample(progress.elapsed, progress.router_lag + progress.consumer_lag, complete, watch.interval_p99))
        self._chaos_line(
            {
                "t": round(progress.elapsed, 3),
                "router_lag": progress.router_lag,
                "consumer_lag": progress.consumer_lag,
                "complete": complete,
                "p99_ms": watch.interval_p99,
            }
        )

    def _chaos_line(self, line: dict[str, Any]) -> None:
        if self.chaos_log is not None:
            self.chaos_log.write(orjson.dumps(line) + b"\n")

    async def collect(self, reports: Reports) -> None:
        """Stop the consumers and routers for their final reports; a crash logged meanwhile fails the run."""
        self.phase("collecting")
        self.cpu_at_end = self._cpu_now()
        self.machine_at_end = machine_cpu()
        self.cpu_until = time.monotonic()
        self.router_cpu = self._router_cores()
        workers = self.consumer_workers
        reports.consumers = merge.consumers_final(await asyncio.gather(*(_stop_for_final(c, ConsumersFinal) for c in workers)))
        await _remote_exits(workers)  # a worker sends its samples back before it says its process exited
        if len(workers) > 1:
            _join_samples(self.run_dir, len(workers))
        for r in self.routers:
            await _stop_for_final(r, RouterFinal)
        _check_crashed([*workers, *self.producer_workers, *self.routers])  # a crash logged since the last look fails the run too
        # every incarnation's figures: a killed worker's last stats stand in for its final report
        reports.routers = [rep for r in self.routers for rep in r.reports() if isinstance(rep, RouterFinal | RouterStats)]

    def _cpu_now(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of this machine's processes of the run (the router workers, the
        broker, the producers, the consumers, the controller): role → pid → seconds."""
        broker = self.broker
        broker_pids = (getattr(broker, "pids", None) or ([broker.pid] if broker.pid else [])) if broker is not None else []

        def local(children: list[_Child]) -> list[int]:  # a worker elsewhere has its own /proc
            return [c.proc.pid for c in children if isinstance(c.proc, subprocess.Popen)]

        out: dict[str, dict[int, float]] = {role: {} for role in CPU_ROLES}
        roles = (
            ("router", local(self.routers)),
            ("broker", broker_pids),
            ("producers", local(self.producer_workers)),
            ("consumers", local(self.consumer_workers)),
            ("controller", [os.getpid()]),
        )
        for role, pids in roles:
            for pid in pids:
                cpu = self.note_cpu(pid)
                if cpu is not None:
                    out[role][pid] = cpu
        return out

    def note_cpu(self, pid: int) -> float | None:
        """``pid``'s CPU seconds now, or the last reading when it has exited meanwhile (producers
        exit once they published: :meth:`publish_and_drain` reads them every poll)."""
        cpu = cpu_seconds(pid)
        if cpu is None:
            return self.cpu_seen.get(pid)
        self.cpu_seen[pid] = cpu
        return cpu

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds by role over the CPU window (:meth:`cpu_spent`), plus ``other``: the rest of
        what kept this machine busy meanwhile (other processes, the kernel); empty when not measured."""
        spent = {role: cpu for role in CPU_ROLES if (cpu := self.cpu_spent(role)) is not None}
        machine = self.machine_spent()
        if spent and machine is not None:
            spent["other"] = round(max(0.0, machine[0] - sum(spent.values())), 2)
        return spent

    def machine_spent(self) -> tuple[float, float] | None:
        """(busy, elapsed) CPU seconds of this machine's cores over the CPU window, whoever was
        busy (:func:`~exchange.runner.processes.machine_cpu`); None when not measured."""
        start, end = getattr(self, "machine_at_start", None), getattr(self, "machine_at_end", None)
        if start is None or end is None:
            return None
        return end[0] - start[0], end[1] - start[1]

    def _router_cores(self) -> dict[str, float]:
        """Each local router process's CPU from publishing's start to the collection, in cores
        (CPU seconds / wall seconds); a worker restarted meanwhile (``--chaos``) is left out."""
        start, end = self.cpu_at_start["router"], self.cpu_at_end["router"]
        seconds = self.cpu_until - self.cpu_from
        pids = {r.proc.pid: r.name for r in self.routers}
        return {pids[pid]: round((cpu - start[pid]) / seconds, 4) for pid, cpu in end.items() if pid in start and pid in pids and seconds > 0}

    def cpu_spent(self, role: str) -> float | None:
        """CPU seconds ``role`` (one of :data:`CPU_ROLES`) spent from publishing's start to the collection
        (a process started in between counts from its start); None when not measured."""
        start, end = getattr(self, "cpu_at_start", None), getattr(self, "cpu_at_end", None)
        if start is None or end is None or not end[role]:
            return None
        return round(sum(cpu - start[role].get(pid, 0.0) for pid, cpu in end[role].items()), 2)

    def result(self, reports: Reports) -> Result:
        """The result, its fault recoveries and SLO verdicts, written to ``result.json``."""
        broker, options, p = self.broker, self.options, self.platform
        layout = IngressLayout(self.scenario)
        window = round(self.cpu_until - self.cpu_from, 2) if hasattr(self, "cpu_until") else None
        machine = self.machine_spent()
        info = RunInfo(
            scenario=self.scenario.name,
            run_id=self.run_id,
            seed=options.seed,
            duration_s=self.duration,
            started_at=self.started_at,
            bootstrap=self.bootstrap,
            embedded_broker=broker is not None,
            router_workers=self.workers,
            producer_workers=options.producer_workers,
            consumer_workers=options.consumer_workers,
            hubs=list(self.scenario.hubs_in_use),
            fetch_wait_ms=self.fetch_wait_ms,
            quiet_fetch_wait_ms=QUIET_FETCH_WAIT_MS if self.options.quiet_fetch_wait_ms is None else self.options.quiet_fetch_wait_ms,
            warmup_s=self.warmup_s,
            router_ready_s=self.router_ready,
            router_cpu=self.router_cpu,
            drain_s=round(self.drain_s, 3),
            dead_letters_by_reason=_dead_reasons(reports.consumers),
            broker=broker.describe() if broker is not None else None,
            broker_start_s=broker.start_seconds if broker is not None else None,
            guarantee=self.guarantee.value,
            clock_offsets={c.name: offset for c in self.children if (offset := c.clock()) is not None},
            clock_correction=options.clock_correction,
            clock_offset_limit_ms=options.clock_offset_limit_ms,
            workers=self.bridge.workers() if self.bridge is not None else [],
            topic_layout=self.topics.layout.value,
            subscriber_clients=subscriber_clients(options.subscriber_clients, self.kind),
            ingress_topics=len(layout.partitions),
            ingress_partitions=sum(layout.partitions.values()),
            router_cpu_s=self.cpu_spent("router"),
            broker_cpu_s=self.cpu_spent("broker") if broker is not None else None,
            cpu_window_s=window,
            cpu_s=self.cpu_by_role(),
            machine_cores=os.cpu_count(),
            machine_busy=round(machine[0] / machine[1], 3) if machine is not None and machine[1] > 0 else None,
        )
        where = broker.describe() if broker is not None else f"Kafka at {self.bootstrap}"
        result = build_result(self.scenario, reports, info, driver=f"faust-bulk-router+aiokafka on {where}, {self.guarantee.value}")
        if self.injector is not None:
            result.faults = _fault_results(self.injector, self.lag_samples, reports.publish_intervals, self.end_s)
        warnings = offset_warning(result.run.clock_offsets, options.clock_offset_limit_ms, options.clock_correction), cpu_warning(result.run)
        result.warnings = [w for w in warnings if w]
        result.slos = judge(self.scenario, result, {name: f.e2e for name, f in reports.consumers.flows.items()})
        for verdict in result.slos:
            metrics.SLO_STATUS.labels(p, verdict.name).set(1 if verdict.passed else 0)
        (self.run_dir / "result.json").write_text(result.model_dump_json(indent=2, by_alias=True), encoding="utf-8")
        metrics.SLO_STATUS.labels(p, "conservation").set(1 if result.conservation.ok else 0)
        metrics.RUN_UNACCOUNTED_OUTCOMES.labels(p).set(result.counts.unaccounted)
        return result

    async def close(self) -> None:
        """Stop every child and the broker, all at once, and briefly when the broker is gone: a
        child cannot finish cleanly without it, and nobody should wait on it."""
        if self.chaos_log is not None:
            self.chaos_log.close()
        if self.injector is not None:
            self.injector.release()  # a stopped process cannot even take its SIGTERM
        broker = self.broker
        grace = 5.0 if broker is None or broker.running else 1.0
        local = [c.proc for c in self.children if isinstance(c.proc, subprocess.Popen)]
        await asyncio.gather(*(asyncio.to_thread(terminate, proc, grace) for proc in local))
        if self.bridge is not None:  # the workers stop what they still run, and exit
            await self.bridge.end(self.ok, self.failure)
        if self.clock_server is not None:
            await self.clock_server.stop()
        if self.heap_thresholds is not None:
            release_heap(self.heap_thresholds)
        if broker is not None and broker is not self.options.broker_instance:
            await broker.astop()
        metrics.remove_sd_target(self.sd_file)
        for target in self.run_dir.glob("sd-*.json"):  # a child killed before its own exit code ran (Ctrl-C) leaves its own
            metrics.remove_sd_target(target)


def _sent_at(m: StatusMessage, clock: ClockOffset | None) -> float:
    """When ``m`` was sent, on this process's ``time.monotonic()``: its sender's wall clock
    (``sent_ns``) corrected by the sender's measured offset, no later than now."""
    sent_ns = m.sent_ns + (clock.offset_ns if clock is not None else 0)
    now = time.monotonic()
    return min(now, now - (time.time_ns() - sent_ns) / 1e9)


class _Watch:
    """What :meth:`_Run.publish_and_drain` learns from the children's messages, poll by poll."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.progress = run.progress
        # counts start at zero when publishing starts
        self.reports = Reports(
            producers=None,
            consumers=None,  # the final reports come last
            publish_samples=[(0.0, 0)],
            error_samples=[(0.0, 0)],
            consume_samples=[(0.0, 0)],
        )
        self.lag_known = True
        self.interval_p99: float | None = None  # the consumers' last interval; None: nothing delivered in it
        self.drain_started = 0.0  # 0: publishing
        self.reactions: dict[str, int] = {}
        self.pending_reactions = 0
        self.routed: dict[str, int] = {}  # ingress records not yet taken in, per router worker
        # several workers of a role: each one's stats since the last round (one from every worker), merged when complete
        self.producer_round: dict[str, ProducersStats] = {}
        self.producers_done: dict[str, ProducersStats] = {}  # producer workers whose final report is in, as stats
        self.consumer_round: dict[str, ConsumersStats] = {}
        self.consumer_round_sent = 0.0  # when the round's last message was sent (monotonic, this process's clock)

    def read_producers(self) -> None:
        workers = self.run.producer_workers
        for producers in workers:
            for m in producers.read():
                if isinstance(m.body, ProducersStats):
                    self.producer_round[producers.name] = m.body
                elif isinstance(m.body, ProducersFinal) and len(workers) > 1:  # done first: its last word stands in its rounds
                    self.producers_done[producers.name] = _final_as_stats(m.body)
                elif isinstance(m.body, Error):
                    raise RunFailed(f"{producers.name} failed: {m.body.message}\n{producers.tail()}")
                done = [s for name, s in self.producers_done.items() if name not in self.producer_round]
                if self.producer_round and len(self.producer_round) + len(done) == len(workers):
                    self._published(merge.producers_stats([*self.producer_round.values(), *done]))
                    self.producer_round = {}

    def _published(self, body: ProducersStats) -> None:
        """Take one round of the producers' stats (every worker's, merged)."""
        self.reports.publish_samples.append((body.t, body.produced))
        self.reports.error_samples.append((body.t, body.retried))
        self.reports.publish_intervals.append(body)
        self.progress.produced = body.produced

    def read_consumers(self) -> None:
        workers = self.run.consumer_workers
        for consumers in workers:
            for m in consumers.current(consumers.read()):
                if isinstance(m.body, ConsumersStats):
                    if self.run.injector is not None:
                        self.run.injector.reported(consumers.name, time.monotonic() - self.run.t0, m.pid)
                    self.consumer_round[consumers.name] = m.body
                    self.consumer_round_sent = max(self.consumer_round_sent, _sent_at(m, consumers.clock()))
                    if len(self.consumer_round) == len(workers):
                        self._consumed(merge.consumers_stats(list(self.consumer_round.values())), self.consumer_round_sent)
                        self.consumer_round, self.consumer_round_sent = {}, 0.0

    def _consumed(self, e: ConsumersStats, sent: float) -> None:
        """Take one round of the consumers' stats (every worker's, merged), its last message sent
        at ``sent`` (``time.monotonic()``): a round is timed when it was sent, not when it was
        read, as two rounds read in one poll would otherwise be ~0 s apart and their interval's
        rate ~1,000 times too high."""
        progress, reports = self.progress, self.reports
        t = max(sent - self.run.t0, reports.consume_samples[-1][0])
        self.lag_known = e.lag_known
        # a restarted process goes on from its checkpoint, a little behind its last line
        reports.consume_samples.append((t, max(e.received, reports.consume_samples[-1][1])))
        reports.consume_intervals.append(e)
        reports.backlog.append(sum(self.routed.values()))
        progress.delivered, progress.denied = e.delivered, e.denied
        progress.dead_lettered, progress.duplicates = e.dead_lettered, e.duplicates
        self.reactions, self.pending_reactions = e.reactions_produced, e.reactions_pending
        progress.consumer_lag = sum(e.lag.values())
        progress.p99_ms = e.e2e.get("99pct", progress.p99_ms)
        self.interval_p99 = e.e2e.get("99pct")
        progress.conflicts = e.conflicts

    def read_routers(self) -> None:
        for r in self.run.routers:
            for m in r.current(r.read()):
                if isinstance(m.body, RouterStats):
                    self.routed[r.name] = m.body.lag
                    self.progress.router_lag = sum(self.routed.values())
                    if self.run.injector is not None:
                        self.run.injector.reported(r.name, time.monotonic() - self.run.t0, m.pid, m.body.batches)

    def drained(self) -> bool:
        """True once the producers' final report is in and every outcome is accounted for (or
        the drain time ran out); :class:`RunFailed` if the producers exited without one."""
        run, progress = self.run, self.progress
        finals = []
        for producers in run.producer_workers:
            final = producers.last(ProducersFinal)
            if final is None:
                if producers.proc.poll() is not None:
                    raise RunFailed(f"{producers.name} exited ({producers.proc.returncode}) without a final report\n{producers.tail()}")
                return False
            finals.append(final)
        self.reports.producers = final = merge.producers_final(finals)
        produced = Counter(final.produced) + Counter(self.reactions)
        progress.produced = sum(produced.values())
        progress.expected = sum(expected_outcomes(run.scenario, produced).values())
        if not self.drain_started:
            self._start_draining(final)
        accounted = progress.delivered + progress.denied + progress.dead_lettered
        settled = accounted >= progress.expected and not self.pending_reactions
        if run.injector is not None:  # every fault over, and counts from the running consumers
            settled = settled and run.injector.done and run.consumers.last_stats.get(run.consumers.proc.pid) is not None
        if settled and run.injector is not None:
            # everything accounted for: nothing is left anywhere, whatever the last reports said
            run.lag_samples.append(chaos.LagSample(time.monotonic() - run.t0, 0, True))
        return settled or time.monotonic() - self.drain_started > run.options.drain_timeout

    def _start_draining(self, final: ProducersFinal) -> None:
        self.drain_started = time.monotonic()
        samples = self.reports.publish_samples
        # the last, partial interval of publishing, unless the producers' last stats line had it
        # (they write one once flushed, a moment before this report)
        produced = sum(final.produced.values())
        if not samples or (samples[-1][0] < final.elapsed_s and (samples[-1][1] != produced or final.elapsed_s - samples[-1][0] >= 0.5)):
            samples.append((final.elapsed_s, produced))
            self.reports.error_samples.append((final.elapsed_s, final.retried))
        self.progress.phase = "draining"


def _final_as_stats(final: ProducersFinal) -> ProducersStats:
    """A producer worker's final report in the shape of its stats (no interval figures), for the rounds it is no longer in."""
    return ProducersStats(
        t=final.elapsed_s, produced=sum(final.produced.values()), sent=final.sent, retried=final.retried, publish_latency={}, publish_delay_us={}
    )


def _worker_specs(role: str, workers: int) -> list[tuple[str, list[str]]]:
    """(process name, arguments) of each worker of a producer or consumer role: the role's
    name alone for one worker (no arguments), ``ROLE-K`` with ``--worker-index K --workers N`` for several."""
    if workers == 1:
        return [(role, [])]
    return [(f"{role}-{k}", ["--worker-index", str(k), "--workers", str(workers)]) for k in range(workers)]


def _join_samples(run_dir: Path, workers: int) -> None:
    """The consumer workers' delivery samples as one ``samples.jsonl`` (flows in name order, as one process writes it)."""
    lines: list[bytes] = []
    for k in range(workers):
        part = run_dir / samples_file(k, workers)
        if part.is_file():
            lines.extend(line for line in part.read_bytes().splitlines() if line.strip())
            part.unlink()
    if lines:  # each flow is one worker's: a stable sort by flow keeps each flow's order
        lines.sort(key=lambda line: str(orjson.loads(line).get("flow", "")))
        (run_dir / samples_file(0, 1)).write_bytes(b"".join(line + b"\n" for line in lines))


def default_fetch_wait(routers: int) -> int:
    """10 ms per three router processes, at most 50 ms.

    The embedded broker answers an empty fetch only when its wait ends, so every router
    polls ~1000/wait times a second whatever the load, and each poll costs the router
    and the broker CPU. Measured on 2 cores: 13 hubs at 10 ms spent ~75 % of a core in
    their routers and ~80 % in the broker, starving the producers; at 50 ms they kept
    up. Scaling the wait with the routers bounds their polling at ~300 fetches/s.
    """
    return min(50, FETCH_MAX_WAIT_MS * -(-routers // 3))


def _router_names(scenario: Scenario, workers: int) -> list[tuple[str, int, str]]:
    """(hub, worker, process name) for every router worker: ``workers`` per hub in use."""
    hubs = scenario.hubs_in_use
    if hubs == (scenario.platform.id,):
        return [(hubs[0], i, f"router-{i}") for i in range(workers)]
    return [(hub, i, f"router-{hub}-{i}") for hub in hubs for i in range(workers)]


def _fault_results(
    injector: FaultInjector, samples: list[chaos.LagSample], publish_intervals: list[ProducersStats], end_s: float
) -> list[FaultResult]:
    out = []
    for entry in injector.injected:
        f = entry.fault
        rec = chaos.recovery(f, samples, until_s=end_s)
        window_end = f.end_s + rec.recovered_after_s if rec.recovered_after_s is not None else end_s
        # producer intervals overlapping the fault: does publishing show the stall?
        delays = [i.publish_delay_us["max"] / 1000 for i in publish_intervals if f.at_s <= i.t <= window_end + 1 and i.publish_delay_us]
        out.append(
            FaultResult(
                spec=f.label,
                kind=f.kind,
                target=f.target,
                at_s=f.at_s,
                duration_s=f.duration_s,
                injected_at_s=entry.at_s,
                baseline_lag=rec.baseline_lag,
                peak_lag=rec.peak_lag,
                recovered_after_s=rec.recovered_after_s,
                node=entry.node,
                node_chosen=entry.chosen,
                lag_recovered_after_s=rec.lag_recovered_after_s,
                latency_recovered_after_s=rec.latency_recovered_after_s,
                baseline_p99_ms=rec.baseline_p99_ms,
                peak_p99_ms=rec.peak_p99_ms,
                publish_delay_max_ms=round(max(delays), 1) if delays else None,
            )
        )
    return out


def _progress_metrics(platform: str, progress: Progress) -> None:
    accounted = progress.delivered + progress.denied + progress.dead_lettered
    metrics.RUN_ELAPSED_SECONDS.labels(platform).set(progress.elapsed)
    metrics.RUN_PRODUCED_RECORDS.labels(platform).set(progress.produced)
    metrics.RUN_EXPECTED_OUTCOMES.labels(platform).set(progress.expected)
    metrics.RUN_ACCOUNTED_OUTCOMES.labels(platform).set(accounted)
    metrics.RUN_UNACCOUNTED_OUTCOMES.labels(platform).set(max(0, progress.expected - accounted))


def _dead_reasons(consumers: ConsumersFinal) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in consumers.dead_letters:
        out[row.reason] = out.get(row.reason, 0) + row.n
    return out


def _last_rate(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2:
        return 0.0
    (t0, c0), (t1, c1) = samples[-2], samples[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _check_alive(children: list[_Child], broker: EmbeddedBroker | None, allow_exit: set[str]) -> None:
    """RunFailed when the broker or a child died, or a child reported a crash inside it
    (read from the status lines read so far)."""
    _check_crashed(children)
    if broker is not None and not broker.running:
        what = (
            ("the embedded broker died", "its storage is memory, so the run's records are gone")
            if broker.kind == "tansu"
            else (f"{broker.describe()}: a node died", "the run cannot go on without it")
        )
        raise RunFailed(f"{what[0]} (exit code {broker.returncode}); {what[1]}.\n{broker.tail_log()}")
    for child in children:
        _check_remote(child)
        code = child.proc.poll()
        if code is not None and (child.name not in allow_exit or code != 0):
            where = f" ({child.proc.where()})" if isinstance(child.proc, remote.RemoteProcess) else ""
            raise RunFailed(f"{child.name}{where} exited with code {code}; last lines of {child.log}:\n{child.tail()}")


def _check_remote(child: _Child) -> None:
    """RunFailed when a slot a worker runs went silent, or the run topic was lost."""
    if isinstance(child.proc, remote.RemoteProcess):
        why = child.proc.bridge.check()
        if why is not None:
            raise RunFailed(why)


def _check_crashed(children: list[_Child]) -> None:
    """RunFailed for the first crash a child reported (an agent, task or thread of a process
    that lives on: ``exchange/runner/processes.py``'s :func:`report_crashes`)."""
    for child in children:
        crash = next((m for m in child.events if isinstance(m.body, Crashed)), None)
        if crash is not None:
            raise RunFailed(f"{child.name} (pid {crash.pid}): {crash.body.message}; see {child.log}")


async def _wait_ready(children: list[_Child], broker: EmbeddedBroker | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = {c.name for c in children}
    while waiting:
        _check_alive(children, broker, allow_exit=set())
        for c in children:
            c.read()
            c.raise_reported()
            if c.is_ready():
                waiting.discard(c.name)
        if time.monotonic() > deadline:
            raise RunFailed(f"not ready after {timeout:.0f} s: {sorted(waiting)}")
        await asyncio.sleep(0.05)


async def _remote_exits(children: list[_Child], timeout: float = 20.0) -> None:
    """Wait (up to ``timeout`` s) until every child a worker elsewhere runs has exited; local ones are not waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(isinstance(c.proc, remote.RemoteProcess) and c.proc.returncode is None for c in children):
        await asyncio.sleep(0.05)


async def _stop_for_final(child: _Child, final_type: type[T], timeout: float = 20.0) -> T:
    """SIGTERM a child and wait for its final report (a ``final_type`` body)."""
    with contextlib.suppress(ProcessLookupError):
        child.proc.terminate()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_remote(child)
        child.read()
        final = child.last(final_type)
        if final is not None:
            return final
        if child.proc.poll() is not None:
            child.read()
            final = child.last(final_type)
            if final is not None:
                return final
            raise RunFailed(f"{child.name} exited ({child.proc.returncode}) without a final report\n{child.tail()}")
        await asyncio.sleep(0.05)
    raise RunFailed(f"{child.name} gave no final report within {timeout:.0f} s")
