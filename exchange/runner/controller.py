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
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson
from pydantic import BaseModel

from exchange import metrics
from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka import brokers
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.topics import changelog_plan, create_router_internal_topics, create_topics, ingress_topics, topic_plan
from exchange.results.build import Reports, build_result, expected_outcomes
from exchange.results.slos import judge
from exchange.router.faust_bulk import FETCH_MAX_WAIT_MS
from exchange.runner import chaos
from exchange.runner.faults import FaultInjector
from exchange.runner.processes import cpu_seconds, spawn, terminate
from exchange.runner.status import StatusReader
from exchange.runner.warmup import SCHEDULE_FILE, warmup_seconds
from schemas.envelope import IngressLayout
from schemas.results import FaultResult, Result, RunInfo
from schemas.scenario import DeliveryGuarantee, IngressTopics, Scenario, TopicLayout, template_problem, topic_errors
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


class RunFailed(ExchangeError, RuntimeError):
    """The run could not complete; the message says what died, crashed or timed out (exit code 1)."""

    exit_code = EXIT_FAILED
    label = "run failed"


@dataclass
class RunOptions:
    scenario: Scenario
    duration: float | None = None
    out: Path | None = None
    bootstrap: str | None = None
    seed: int = 1
    workers: int = 1
    drain_timeout: float = 30.0
    ready_timeout: float = 60.0
    rate_multiplier: float = 1.0
    fetch_wait_ms: int | None = None  # routers' fetch wait; None: see default_fetch_wait
    chaos: str | None = None  # a --chaos spec (exchange/runner/chaos.py); checked before anything starts
    broker: str = "tansu"  # the broker the run starts without --bootstrap: tansu, kafka, kafka:3 (exchange/kafka/brokers.py)
    warmup: float | None = None  # seconds; None: the scenario's load.warmup, else the default (exchange/runner/warmup.py)
    broker_instance: Any = None  # a broker of kind ``broker`` the caller started: the run uses it and leaves it running
    guarantee: str | None = None  # at-least-once | exactly-once; None: the scenario's (see resolve_guarantee)
    topics: str | None = None  # ingress topic layout (per-entry, per-department, …); None: the scenario's (see resolve_topics)


class GuaranteeError(ExchangeError, ValueError):
    """A delivery guarantee the run's broker cannot give (exit code 2, before anything starts)."""


def resolve_guarantee(options: RunOptions) -> DeliveryGuarantee:
    """The run's delivery guarantee: ``options.guarantee``, else the scenario's ``guarantee``.

    Raises :class:`GuaranteeError` for exactly-once on the embedded Tansu broker: it rejects
    idempotent and transactional producers (InitProducerId), which exactly-once is made of.
    With ``--bootstrap`` the broker is taken to be Kafka.
    """
    try:
        chosen = DeliveryGuarantee(options.guarantee) if options.guarantee else options.scenario.guarantee
    except ValueError:
        raise GuaranteeError(f"--guarantee {options.guarantee!r}: expected at-least-once or exactly-once") from None
    if chosen is DeliveryGuarantee.exactly_once and options.bootstrap is None and brokers.parse(options.broker)[0] == "tansu":
        named = "--guarantee exactly-once" if options.guarantee else f"{options.scenario.name}: guarantee exactly-once"
        raise GuaranteeError(
            f"{named} needs Apache Kafka (--broker kafka, kafka:3 or --bootstrap): "
            "the embedded Tansu broker rejects idempotent and transactional producers"
        )
    return chosen


class TopicLayoutError(ExchangeError, ValueError):
    """A ``--topics`` layout the scenario cannot take (exit code 2, before anything starts)."""


def resolve_topics(options: RunOptions) -> IngressTopics:
    """The run's ingress topic layout: ``options.topics`` (``exchange run --topics``), else the scenario's ``topics``.

    A layout given on the command line keeps the scenario's ``partitions`` and its name template
    when the template suits the new layout, else takes the layout's default names. Raises
    :class:`TopicLayoutError` for an unknown layout or names that collide (schemas/scenario.py ``topic_errors``).
    """
    setting = options.scenario.topics
    if options.topics is None:
        return setting
    from pydantic import ValidationError

    try:
        layout = IngressTopics.model_validate({"layout": options.topics}).layout
    except ValidationError:
        raise TopicLayoutError(f"--topics {options.topics!r}: expected {', '.join(t.value for t in TopicLayout)}") from None
    name = setting.name if setting.name is not None and template_problem(setting.name, layout) is None else None
    chosen = IngressTopics(layout=layout, name=name, partitions=setting.partitions)
    problems = topic_errors(options.scenario.model_copy(update={"topics": chosen}))
    if problems:
        raise TopicLayoutError(f"--topics {layout.value}: {problems[0][1]}")
    return chosen


def parse_chaos(options: RunOptions, duration: float) -> list[chaos.Fault]:
    """The run's faults; raises :class:`chaos.ChaosError` for a spec that cannot run."""
    if not options.chaos:
        return []
    scenario = options.scenario
    return chaos.parse(
        options.chaos,
        duration=duration,
        workers=options.workers,
        departments={s.consumer for s in scenario.subscriptions},
        broker=None if options.bootstrap else chaos.BrokerHandle(*brokers.parse(options.broker)),
        restartable_consumers=not scenario.reactions and not scenario.workflows,
    )


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
    proc: subprocess.Popen
    status: StatusReader
    log: Path
    argv: list[str] = field(default_factory=list)
    events: list[StatusMessage] = field(default_factory=list)  # every message but stats
    pids: list[int] = field(default_factory=list)  # every incarnation, in order
    last_stats: dict[int, StatusMessage] = field(default_factory=dict)  # by pid

    @classmethod
    def spawn(cls, run_dir: Path, name: str, module_args: list[str]) -> _Child:
        """``python -m <module_args…> --status RUN_DIR/NAME.jsonl``, logging to RUN_DIR/NAME.log."""
        status, log = run_dir / f"{name}.jsonl", run_dir / f"{name}.log"
        argv = [sys.executable, "-m", *module_args, "--status", str(status)]
        proc = spawn(argv, log_path=log)
        return cls(name, proc, StatusReader(status), log, argv, pids=[proc.pid])

    def restart(self) -> None:
        """Start the same command again (the old process must be gone); files are appended to."""
        self.proc = spawn(self.argv, log_path=self.log)
        self.pids.append(self.proc.pid)

    def read(self) -> list[StatusMessage]:
        """The messages sent since the last call; :class:`RunFailed` naming the file and line of one that cannot be read."""
        try:
            new = self.status.read()
        except MessageError as exc:
            raise RunFailed(f"{self.name} sent a message that cannot be read: {exc}") from None
        for m in new:
            if m.kind == "stats":
                self.last_stats[m.pid] = m
            else:
                self.events.append(m)
        return new

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
    r = _Run(options, on_progress, say)  # ChaosError, WarmupError before anything starts
    try:
        await r.start_broker_and_topics()
        await r.start_routers_and_consumers()
        r.start_producers()
        reports = await r.publish_and_drain()
        await r.collect(reports)
        result = r.result(reports)
        r.phase("done")
        return result, r.run_dir
    finally:
        await r.close()


class _Run:
    """One run's state, from the broker's start to ``result.json``: :func:`run`'s steps."""

    consumers: _Child  # set by start_routers_and_consumers
    workers_by_id: dict[str, _Child]  # router workers --chaos addresses, by number
    producers: _Child  # set by start_producers
    t0: float  # monotonic time publishing started

    def __init__(self, options: RunOptions, on_progress: Callable[[Progress], None], say: Callable[[str], None] | None) -> None:
        self.options, self.on_progress, self.say = options, on_progress, say
        self.guarantee = resolve_guarantee(options)  # GuaranteeError before anything starts
        # the processes read it from the runtime scenario
        self.topics = resolve_topics(options)  # TopicLayoutError before anything starts
        self.scenario = scenario = options.scenario.model_copy(update={"guarantee": self.guarantee, "topics": self.topics})
        self.duration = duration = options.duration if options.duration is not None else scenario.load.duration
        self.faults = parse_chaos(options, duration)
        self.warmup_s = warmup_seconds(options.warmup, scenario.load.warmup, duration)
        self.run_dir = options.out or default_run_dir(scenario)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "scenario.json").write_text(scenario.model_dump_json(indent=2), encoding="utf-8")  # the record of the run
        self.scenario_json = self.run_dir / "scenario.runtime.json"  # what the processes read: live entries only
        self.scenario_json.write_text(scenario.runtime_json(), encoding="utf-8")
        self.progress = Progress(duration=duration)
        self.broker = None if options.bootstrap else (options.broker_instance or brokers.make(options.broker, log_path=self.run_dir / "broker.log"))
        self.kind = self.broker.kind if self.broker is not None else None
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
        self.drain_s = self.end_s = 0.0

    def phase(self, phase: str) -> None:
        self.progress.phase = phase
        self.on_progress(self.progress)

    def start(self, name: str, module: str, *args: str) -> _Child:
        """Spawn a child with the run's scenario, bootstrap and id."""
        child = _Child.spawn(
            self.run_dir, name, [module, "--scenario", str(self.scenario_json), "--bootstrap", self.bootstrap, "--run-id", self.run_id, *args]
        )
        self.children.append(child)
        return child

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
        self.phase("creating topics")
        await create_topics(self.bootstrap, topic_plan(self.scenario), check=changelog_plan(self.scenario), replication_factor=replication)
        if self.kind == "kafka":  # Faust's own topics too: a router racing Kafka's metadata for them can hang
            await create_router_internal_topics(self.bootstrap, self.scenario, replication)
        self.sd_file = metrics.expose("controller", "0", self.scenario, self.run_dir, 0, self.run_id, say=self.say)
        metrics.RUN_DURATION_SECONDS.labels(self.platform).set(self.duration)

    async def start_routers_and_consumers(self) -> None:
        """Every router worker and the consumer process, ready to take records."""
        self.phase("starting router")
        names = _router_names(self.scenario, self.options.workers)
        self.fetch_wait_ms = self.options.fetch_wait_ms or brokers.fetch_wait_ms(self.kind) or default_fetch_wait(len(names))
        self.routers = [
            self.start(
                name,
                "exchange.router",
                "--worker",
                str(i),
                "--platform",
                hub,
                "--datadir",
                str(self.run_dir / f"{name}-data"),
                "--fetch-wait-ms",
                str(self.fetch_wait_ms),
                *(["--no-declare-topics"] if self.kind == "kafka" else []),
            )  # created up front: see exchange/router/app.py
            for hub, i, name in names
        ]
        # --chaos addresses router workers by number: those of the first hub (the main one in a cascade)
        self.workers_by_id = {str(i): r for (hub, i, _), r in zip(names, self.routers, strict=True) if hub == names[0][0]}
        chaos_args: list[str] = []
        if self.faults:  # resumable after a kill, and pausable per department
            chaos_args = ["--checkpoint", str(self.run_dir / "consumers.checkpoint"), "--pause-file", str(self.run_dir / "consumers.paused")]
        # long-poll on Kafka (the consumers' own default is tuned for Tansu)
        wait = brokers.fetch_wait_ms(self.kind)
        long_poll = ["--fetch-wait-ms", str(wait)] if wait else []
        (self.run_dir / SCHEDULE_FILE).unlink(missing_ok=True)
        self.consumers = self.start("consumers", "consumers", "--seed", str(self.options.seed), *chaos_args, *long_poll, *self._schedule_args())
        await _wait_ready([*self.routers, self.consumers], self.broker, brokers.ready_timeout(self.kind, self.options.ready_timeout))
        self.router_ready = [ready.seconds for r in self.routers if (ready := r.last(RouterReady)) is not None]

    def _schedule_args(self) -> list[str]:
        return ["--schedule-file", str(self.run_dir / SCHEDULE_FILE)]  # the warm-up's end, written by the producers

    def start_producers(self) -> None:
        """The producers, and the chaos schedule's clock with them."""
        self.progress.phase = "publishing"
        options = self.options
        self.producers = self.start(
            "producers",
            "producers",
            "--duration",
            str(self.duration),
            "--seed",
            str(options.seed),
            "--rate-multiplier",
            str(options.rate_multiplier),
            "--warmup",
            str(self.warmup_s),
            *self._schedule_args(),
        )
        self.t0 = time.monotonic()
        self.cpu_at_start = self._cpu_now()
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

    async def publish_and_drain(self) -> Reports:
        """Watch the children until the producers are done and every outcome is accounted for
        (or the drain time runs out); what they reported meanwhile."""
        watch = _Watch(self)
        while True:
            await asyncio.sleep(POLL_S)
            self._inject_faults()
            _check_alive(self.children, self.broker, allow_exit={self.producers.name})
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
        self.cpu_until = time.monotonic()
        reports.consumers = await _stop_for_final(self.consumers, ConsumersFinal)
        for r in self.routers:
            await _stop_for_final(r, RouterFinal)
        _check_crashed([self.consumers, self.producers, *self.routers])  # a crash logged since the last look fails the run too
        # every incarnation's figures: a killed worker's last stats stand in for its final report
        reports.routers = [rep for r in self.routers for rep in r.reports() if isinstance(rep, RouterFinal | RouterStats)]

    def _cpu_now(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of the router workers' and the broker's processes: role → pid → seconds."""
        broker = self.broker
        broker_pids = (getattr(broker, "pids", None) or ([broker.pid] if broker.pid else [])) if broker is not None else []
        out: dict[str, dict[int, float]] = {"router": {}, "broker": {}}
        for role, pids in (("router", [r.proc.pid for r in self.routers]), ("broker", broker_pids)):
            for pid in pids:
                if (cpu := cpu_seconds(pid)) is not None:
                    out[role][pid] = cpu
        return out

    def cpu_spent(self, role: str) -> float | None:
        """CPU seconds ``role`` (router, broker) spent from publishing's start to the collection
        (a process started in between counts from its start); None when not measured."""
        start, end = getattr(self, "cpu_at_start", None), getattr(self, "cpu_at_end", None)
        if start is None or end is None or not end[role]:
            return None
        return round(sum(cpu - start[role].get(pid, 0.0) for pid, cpu in end[role].items()), 2)

    def result(self, reports: Reports) -> Result:
        """The result, its fault recoveries and SLO verdicts, written to ``result.json``."""
        broker, options, p = self.broker, self.options, self.platform
        layout = IngressLayout(self.scenario)
        info = RunInfo(
            scenario=self.scenario.name,
            run_id=self.run_id,
            seed=options.seed,
            duration_s=self.duration,
            started_at=self.started_at,
            bootstrap=self.bootstrap,
            embedded_broker=broker is not None,
            router_workers=options.workers,
            hubs=list(self.scenario.hubs_in_use),
            fetch_wait_ms=self.fetch_wait_ms,
            warmup_s=self.warmup_s,
            router_ready_s=self.router_ready,
            drain_s=round(self.drain_s, 3),
            dead_letters_by_reason=_dead_reasons(reports.consumers),
            broker=broker.describe() if broker is not None else None,
            broker_start_s=broker.start_seconds if broker is not None else None,
            guarantee=self.guarantee.value,
            topic_layout=self.topics.layout.value,
            ingress_topics=len(layout.partitions),
            ingress_partitions=sum(layout.partitions.values()),
            router_cpu_s=self.cpu_spent("router"),
            broker_cpu_s=self.cpu_spent("broker") if broker is not None else None,
            cpu_window_s=round(self.cpu_until - self.cpu_from, 2) if hasattr(self, "cpu_until") else None,
        )
        where = broker.describe() if broker is not None else f"Kafka at {self.bootstrap}"
        result = build_result(self.scenario, reports, info, driver=f"faust-bulk-router+aiokafka on {where}, {self.guarantee.value}")
        if self.injector is not None:
            result.faults = _fault_results(self.injector, self.lag_samples, reports.publish_intervals, self.end_s)
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
        await asyncio.gather(*(asyncio.to_thread(terminate, c.proc, grace) for c in self.children))
        if broker is not None and broker is not self.options.broker_instance:
            await broker.astop()
        metrics.remove_sd_target(self.sd_file)


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

    def read_producers(self) -> None:
        producers = self.run.producers
        for m in producers.read():
            body = m.body
            if isinstance(body, ProducersStats):
                self.reports.publish_samples.append((body.t, body.produced))
                self.reports.error_samples.append((body.t, body.retried))
                self.reports.publish_intervals.append(body)
                self.progress.produced = body.produced
            elif isinstance(body, Error):
                raise RunFailed(f"producers failed: {body.message}\n{producers.tail()}")

    def read_consumers(self) -> None:
        consumers, progress, reports = self.run.consumers, self.progress, self.reports
        for m in consumers.current(consumers.read()):
            e = m.body
            if not isinstance(e, ConsumersStats):
                continue
            t = time.monotonic() - self.run.t0
            if self.run.injector is not None:
                self.run.injector.reported(consumers.name, t, m.pid)
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
        final = run.producers.last(ProducersFinal)
        if final is None:
            if run.producers.proc.poll() is not None:
                raise RunFailed(f"producers exited ({run.producers.proc.returncode}) without a final report\n{run.producers.tail()}")
            return False
        self.reports.producers = final
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
        # the last, partial interval of publishing
        if not samples or samples[-1][0] < final.elapsed_s:
            samples.append((final.elapsed_s, sum(final.produced.values())))
            self.reports.error_samples.append((final.elapsed_s, final.retried))
        self.progress.phase = "draining"


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
        code = child.proc.poll()
        if code is not None and (child.name not in allow_exit or code != 0):
            raise RunFailed(f"{child.name} exited with code {code}; last lines of {child.log}:\n{child.tail()}")


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
            error = c.last(Error)
            if error is not None:
                raise RunFailed(f"{c.name} failed: {error.message}\n{c.tail()}")
            if c.is_ready():
                waiting.discard(c.name)
        if time.monotonic() > deadline:
            raise RunFailed(f"not ready after {timeout:.0f} s: {sorted(waiting)}")
        await asyncio.sleep(0.05)


async def _stop_for_final(child: _Child, final_type: type[T], timeout: float = 20.0) -> T:
    """SIGTERM a child and wait for its final report (a ``final_type`` body)."""
    with contextlib.suppress(ProcessLookupError):
        child.proc.terminate()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
