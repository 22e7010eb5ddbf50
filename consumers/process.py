"""The consumer process: every subscribing department, plus the accountant.

Started by the run controller (``python -m consumers``); runs until SIGTERM, then writes
its final report (counts per flow and encoded latency histograms) as a status line. With
``--workers C`` it is one of C consumer workers: it hosts its share of the departments
(consumers/assignment.py), and worker 0 the accountant too; the controller merges the
workers' reports (exchange/results/merge.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import orjson

from consumers import checkpoint
from consumers.accountant import Accountant
from consumers.assignment import ACCOUNTANT_WORKER, assign_departments
from consumers.dedupe import SeenSet
from consumers.hops import HopStats
from consumers.reactions import ReactionEngine, WorkflowTracker
from consumers.samples import DEFAULT_PER_FLOW, SAMPLES_FILE, DeliverySampler, find_sources, write_samples
from consumers.shared import MODES, SharedFetch, quiet_departments, shared_group, subscriber_clients, wants_own_client
from consumers.subscriber import Subscriber
from exchange import metrics
from exchange.errors import ExchangeError
from exchange.kafka import offset_gaps
from exchange.kafka.timesync import add_clock_arguments, clock_at_start
from exchange.results.latency import ClockSkew, encode, sample_quantiles
from exchange.router.lanes import QUIET_FETCH_WAIT_MS
from exchange.runner.processes import report_crashes, settle_heap
from exchange.runner.status import StatusWriter, sender
from producers.records import entity_pool
from schemas.clock import ClockOffset
from schemas.envelope import Topics
from schemas.scenario import DeliveryGuarantee, Scenario
from schemas.status import (
    ConsumersFinal,
    ConsumersReady,
    ConsumersStats,
    DeadLetterCount,
    DecisionCount,
    Error,
    FlowInterval,
    FlowReport,
    PathReport,
    QualityEventCount,
    Role,
    SamplesReport,
    WorkflowReport,
)

STATS_INTERVAL_S = 1.0
CHECKPOINT_INTERVAL_S = 1.0
RESTARTABLE_SESSION_MS = 2000
PAUSE_POLL_S = 0.1

log = logging.getLogger(__name__)


async def run(
    scenario: Scenario,
    bootstrap: str,
    status: StatusWriter,
    stop: asyncio.Event,
    run_id: str = "",
    seed: int = 1,
    checkpoint_path: Path | None = None,
    pause_file: Path | None = None,
    samples_path: Path | None = None,
    samples_per_flow: int = DEFAULT_PER_FLOW,
    fetch_wait_ms: int | None = None,
    schedule_file: Path | None = None,
    clock_offset: ClockOffset | None = None,
    worker: int = 0,
    workers: int = 1,
    clients_per_department: bool = False,
    quiet_fetch_wait_ms: int = QUIET_FETCH_WAIT_MS,
) -> None:
    """Consume until ``stop`` is set, reporting ``ready``, ``stats`` every second and a ``final`` report on ``status``.

    With ``checkpoint_path`` (``--chaos``) it resumes from the checkpoint there if there is one
    and writes one every second; ``pause_file`` pauses departments; ``samples_path`` receives
    ``samples_per_flow`` delivery samples per flow when the consumers stop. As ``worker`` of
    ``workers`` it reads only its departments (:func:`consumers.assignment.assign_departments`),
    and only worker 0 reads the audit and dead-letter topics. ``quiet_fetch_wait_ms``: the fetch
    wait of the shared client of departments that receive only quiet entries (0: no such client).
    """
    state = checkpoint.load(checkpoint_path)
    seen = SeenSet.restore(state["seen"]) if state else SeenSet()
    # per-hop latency on the dashboard too, in a cascade (one hub: its end-to-end figures say it all)
    hops = HopStats(observe=metrics.HOP_LATENCY.labels if len(scenario.hubs_in_use) > 1 else None)
    departments = assign_departments(scenario, workers)[worker]
    restartable = checkpoint_path is not None
    subscribers = _subscribers(
        scenario, bootstrap, seen, hops, run_id, fetch_wait_ms, restartable, departments=departments, clients_per_department=clients_per_department
    )
    _limit_and_schedule(scenario, subscribers, schedule_file)
    accountant = (
        Accountant([Topics(hub) for hub in scenario.hubs_in_use], bootstrap, scenario.fanout(), run_id, isolation_level(scenario))
        if worker == ACCOUNTANT_WORKER
        else None
    )
    if state:  # a restart: go on from the checkpoint's counts (see consumers/checkpoint.py)
        _restore(state, subscribers, accountant)
    reactions = ReactionEngine(scenario, bootstrap, entity_pool(scenario, seed) if scenario.reactions else None, seed, run_id)
    workflows = WorkflowTracker(scenario)
    sampler = DeliverySampler(samples_per_flow if samples_path is not None else 0)
    _listen(scenario, subscribers, reactions, workflows, sampler)
    readers: list[Subscriber | SharedFetch | Accountant] = [
        *_readers(scenario, subscribers, bootstrap, fetch_wait_ms, restartable, worker, workers, quiet_fetch_wait_ms),
        *([accountant] if accountant else []),
    ]
    await asyncio.gather(*(r.start() for r in readers), reactions.start())
    clients = sum(not isinstance(r, Accountant) for r in readers)
    settle_heap()  # the scenario, reference data and every subscriber's state live all run long
    status.write(ConsumersReady(subscribers=len(subscribers), clients=clients, restored=state is not None, clock=clock_offset))
    background = [asyncio.create_task(_report(scenario, status, stop, subscribers, accountant, reactions, at_once=bool(state)))]
    if pause_file is not None:
        background.append(asyncio.create_task(_watch_pauses(pause_file, subscribers)))
    if checkpoint_path is not None:
        background.append(asyncio.create_task(_checkpoints(checkpoint_path, seen, subscribers, accountant)))
    try:
        await asyncio.gather(*(_read_until_stopped(r, stop) for r in readers))
    finally:
        for task in background:
            task.cancel()
        await reactions.stop()
        for r, stopped in zip(readers, await asyncio.gather(*(r.stop() for r in readers), return_exceptions=True), strict=True):
            if isinstance(stopped, Exception):  # logged, not raised over what ended the reading
                log.error("stopping %r failed", r, exc_info=stopped)
    samples = await _write_samples(sampler, scenario, bootstrap, run_id, samples_path)
    status.write(_final(subscribers, accountant, hops, reactions, workflows, samples))


def isolation_level(scenario: Scenario) -> str:
    """``read_committed`` under exactly-once: only what the routers' transactions committed
    (exchange/router/transactions.py); else ``read_uncommitted``, Kafka's default."""
    return "read_committed" if scenario.guarantee is DeliveryGuarantee.exactly_once else "read_uncommitted"


def _subscribers(
    scenario: Scenario,
    bootstrap: str,
    seen: SeenSet,
    hops: HopStats,
    run_id: str,
    fetch_wait_ms: int | None,
    restartable: bool,
    departments: list[str] | None = None,
    clients_per_department: bool = False,
) -> list[Subscriber]:
    """One subscriber per subscribing department (``departments``: these only), on its hub's delivery topic.

    With ``clients_per_department`` each has a Kafka consumer of its own, in its own group
    (``dx-HUB-sub-DEPT``), as a department's system would; else only those that hold back
    their reads (:func:`consumers.shared.wants_own_client`) do, and the rest are read by a
    shared client (``shared=True``; a second one for those that receive only quiet entries; see :func:`_readers`)."""
    departments = sorted({s.consumer for s in scenario.subscriptions}) if departments is None else departments
    # Tansu answers an empty fetch only when the wait ends: 10 ms keeps an idle hop short,
    # but a hundred consumers polling every 10 ms cost the broker more than the data does.
    own = set(departments) if clients_per_department else {d for d in departments if wants_own_client(scenario, d)}
    wait_ms = fetch_wait_ms or min(100, max(10, len(own)))
    isolation = isolation_level(scenario)
    return [
        Subscriber(
            dept,
            Topics(hub).delivery(dept),
            bootstrap,
            f"dx-{hub}-sub-{dept}",
            seen,
            run_id,
            wait_ms,
            hub,
            hops,
            auto_commit=not restartable,
            # Restartable (--chaos): a restarted process rejoins each group once the
            # killed member's session ends; on Tansu 2 s sessions rejoin in ~4 s, 6 s in ~11 s.
            session_timeout_ms=RESTARTABLE_SESSION_MS if restartable else 6000,
            isolation_level=isolation,
            shared=dept not in own,
        )
        for dept, hub in ((d, scenario.platform_of(d)) for d in departments)
    ]


def _readers(
    scenario: Scenario,
    subscribers: list[Subscriber],
    bootstrap: str,
    fetch_wait_ms: int | None,
    restartable: bool,
    worker: int,
    workers: int = 1,
    quiet_fetch_wait_ms: int = QUIET_FETCH_WAIT_MS,
) -> list[Subscriber | SharedFetch]:
    """What the process polls: each department with a client of its own, one
    :class:`~consumers.shared.SharedFetch` for the rest, and a second one, waiting
    ``quiet_fetch_wait_ms``, for those of them that receive only quiet entries (none with 0)."""
    shared = [s for s in subscribers if s.shared]
    readers: list[Subscriber | SharedFetch] = [s for s in subscribers if not s.shared]
    quiet = quiet_departments(scenario, (s.department for s in shared)) if quiet_fetch_wait_ms else frozenset()
    group = shared_group(scenario.platform.id, worker, workers)
    # the departments that receive only quiet entries read apart, so that the frequent fetches
    # name only the partitions real-time records arrive on (as the router's two lanes)
    for lane, members in (("", [s for s in shared if s.department not in quiet]), ("-quiet", [s for s in shared if s.department in quiet])):
        if members:
            readers.append(
                SharedFetch(
                    members,
                    bootstrap=bootstrap,
                    group=group + lane,
                    fetch_wait_ms=fetch_wait_ms or 10,  # one client: Tansu's shortest wait costs little
                    auto_commit=not restartable,
                    session_timeout_ms=RESTARTABLE_SESSION_MS if restartable else 6000,
                    isolation_level=isolation_level(scenario),
                    quiet_fetch_wait_ms=quiet_fetch_wait_ms if lane else None,
                )
            )
    return readers


def _limit_and_schedule(scenario: Scenario, subscribers: list[Subscriber], schedule_file: Path | None) -> None:
    """Batch cycles, the warm-up's schedule file, and each department's consume rate and boundary gateway."""
    cycles = {e: int(p.every * 1e9) for e, p in scenario.entry_profiles().items() if p.kind == "batch"}
    for s in subscribers:
        s.cycles = cycles
        s.warmup_file = schedule_file  # the warm-up's end, once the producers have started (exchange/runner/warmup.py)
        limit = scenario.department_ids[s.department].consume_rate
        gateway = scenario.gateway_of(s.department)
        if gateway is not None:  # what crosses its boundary gateway is held up and capped there
            s.gateway_latency_ns = int(gateway.latency_ms * 1e6)
            if gateway.max_records_per_s is not None:
                limit = min(limit or gateway.max_records_per_s, gateway.max_records_per_s)
        if limit is not None:
            s.consume_rate = limit
            s._max_records = max(1, int(limit / 10))  # read in tenths of a second's worth


def _restore(state: dict, subscribers: list[Subscriber], accountant: Accountant | None) -> None:
    for s in subscribers:
        if s.department in state["subscribers"]:
            s.restore(state["subscribers"][s.department])
    if accountant is not None and state.get("accountant") is not None:
        accountant.restore(state["accountant"])


def _listen(
    scenario: Scenario, subscribers: list[Subscriber], reactions: ReactionEngine, workflows: WorkflowTracker, sampler: DeliverySampler
) -> None:
    """Hook the sampler, the reactions and the workflow tracker to every delivery."""
    for s in subscribers:
        s.sampling, s.sampler = sampler.flows_of(scenario, s.department), sampler.take
        if reactions.active:
            s.listeners.append(reactions.on_delivery)
        if scenario.workflows:
            s.listeners.append(lambda consumer, entry, key, h, now: workflows.on_delivery(entry, key, h, now))


async def _read_until_stopped(reader: Subscriber | SharedFetch | Accountant, stop: asyncio.Event) -> None:
    # each reader on its own: one quiet topic must not hold up the others' polls
    while not stop.is_set():
        if getattr(reader, "paused", False):
            await asyncio.sleep(PAUSE_POLL_S)
            continue
        await reader.poll(100)
    while await reader.poll(50):  # whatever arrived before the stop
        pass


async def _report(
    scenario: Scenario,
    status: StatusWriter,
    stop: asyncio.Event,
    subscribers: list[Subscriber],
    accountant: Accountant | None,
    reactions: ReactionEngine,
    at_once: bool,
) -> None:
    """A ``stats`` message every second (the first at once after a restart: it shows the backlog
    the process starts from), and the consumer metrics."""
    if not at_once:
        await asyncio.sleep(STATS_INTERVAL_S)
    while not stop.is_set():
        await asyncio.gather(*(s.refresh_lag() for s in subscribers))
        status.write(
            ConsumersStats(**_totals(subscribers, accountant, reactions), **_interval(subscribers), lag_known=all(s.lag_known for s in subscribers))
        )
        if accountant is not None:
            accountant.flush_metrics(scenario.platform.id)
        for s in subscribers:
            metrics.CONSUMER_LAG.labels(s.platform, s.department).set(s.lag())
        await asyncio.sleep(STATS_INTERVAL_S)


async def _write_samples(
    sampler: DeliverySampler, scenario: Scenario, bootstrap: str, run_id: str, samples_path: Path | None
) -> SamplesReport | None:
    """Find the samples' source records and write them to ``samples_path``; None when nothing was sampled."""
    if samples_path is None or not sampler.samples:
        return None
    started = time.monotonic()
    missing = await find_sources(sampler, scenario, bootstrap, run_id)
    try:
        written = write_samples(sampler, scenario, samples_path)
    except OSError as exc:  # an aid, not a figure of the run: say so, and go on to the final report
        log.warning("delivery samples: cannot write %s: %s", samples_path, exc)
        written = 0
    if missing:
        log.warning("delivery samples: %d of %d without their source record", missing, written)
    return SamplesReport(written=written, without_source=missing, lookup_s=round(time.monotonic() - started, 3), **sampler.lookup)


def _final(
    subscribers: list[Subscriber],
    accountant: Accountant | None,
    hops: HopStats,
    reactions: ReactionEngine,
    workflows: WorkflowTracker,
    samples: SamplesReport | None,
) -> ConsumersFinal:
    """The final report: counts per flow, path and workflow, encoded histograms, the accountant's counters."""
    flows = {
        name: FlowReport(
            within_cycle=f.within_cycle,
            delivered=f.delivered,
            duplicates=f.duplicates,
            e2e=encode(f.e2e),
            e2e_intended=encode(f.e2e_intended),
            warmup_delivered=f.warmup_delivered,
            warmup_e2e=encode(f.warmup_e2e),
            warmup_e2e_intended=encode(f.warmup_e2e_intended),
        )
        for s in subscribers
        for name, f in s.flows.items()
    }
    return ConsumersFinal(
        **_totals(subscribers, accountant, reactions),
        flows=flows,
        hops={name: encode(h) for name, h in hops.segments.items()},
        warmup_hops=dict(hops.warmup_segments),
        paths={
            name: PathReport(hubs=hops.path_hubs[name], e2e=encode(hops.paths[name]), warmup=hops.warmup_paths.get(name, 0))
            for name in (*hops.paths, *(p for p in hops.warmup_paths if p not in hops.paths))
        },
        decisions=DecisionCount.rows(accountant.decisions) if accountant else [],
        dead_letters=DeadLetterCount.rows(accountant.dead_letters) if accountant else [],
        undecodable=DeadLetterCount.rows(accountant.undecodable) if accountant else [],
        foreign_dead_letters=DeadLetterCount.rows(accountant.foreign_dead_letters) if accountant else [],
        quality_events=QualityEventCount.rows(accountant.quality_events) if accountant else [],
        samples=samples,
        workflows={
            name: WorkflowReport(completed=workflows.completed[name], incomplete=workflows.incomplete().get(name, 0), times=encode(h))
            for name, h in workflows.times.items()
        },
    )


async def _watch_pauses(path: Path, subscribers: list[Subscriber]) -> None:
    """Pause and resume departments as the run controller's pause file says (``--chaos``).

    The file holds a JSON list of paused departments, replaced atomically by the
    controller; a restarted process reads the same file, so a pause survives a kill.
    """
    seen_mtime = None
    while True:
        try:
            mtime = path.stat().st_mtime_ns
            if mtime != seen_mtime:
                paused = set(orjson.loads(path.read_bytes()))
                seen_mtime = mtime
                for s in subscribers:
                    s.paused = s.department in paused
        except FileNotFoundError:
            pass
        except orjson.JSONDecodeError:  # pragma: no cover - the controller replaces it whole
            log.warning("unreadable pause file %s", path)
        await asyncio.sleep(PAUSE_POLL_S)


async def _checkpoints(path: Path, seen: SeenSet, subscribers: list[Subscriber], accountant: Accountant | None) -> None:
    """Checkpoint, then commit: committed offsets never run ahead of the counts saved."""
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        # one synchronous step: no record is read between the snapshots
        subs = {s.department: s.snapshot() for s in subscribers}
        checkpoint.save(path, {"seen": seen.snapshot(), "subscribers": subs, "accountant": accountant.snapshot() if accountant else None})
        for s in subscribers:
            try:
                await s.commit(subs[s.department]["positions"])
            except Exception as exc:  # noqa: BLE001 - a later commit covers it; the checkpoint is saved
                log.warning("commit for %s failed: %r", s.department, exc)


def _interval(subscribers: list[Subscriber]) -> dict:
    """This interval's end-to-end figures, overall and per flow; the samples are then dropped."""
    everything: list[int] = []
    flows = {}
    for s in subscribers:
        for name, flow in s.flows.items():
            if flow.interval:
                samples, flow.interval = flow.interval, []
                everything.extend(samples)
                q = sample_quantiles(samples)
                flows[name] = FlowInterval(p50_ms=q["50pct"], p99_ms=q["99pct"], n=len(samples))
    return {"e2e": sample_quantiles(everything), "flow_latency": flows}


def _totals(subscribers: list[Subscriber], accountant: Accountant | None, reactions: ReactionEngine) -> dict:
    """The fields of :class:`~schemas.status.ConsumersTotals` (the accountant's zero on a worker without it)."""
    return {
        "received": sum(s.received for s in subscribers),
        "first_ns": min((s.first_ns for s in subscribers if s.first_ns), default=0),
        "last_ns": max((s.last_ns for s in subscribers), default=0),
        "delivered": sum(f.delivered for s in subscribers for f in s.flows.values()),
        "duplicates": sum(f.duplicates for s in subscribers for f in s.flows.values()) + (accountant.duplicates if accountant else 0),
        "unlabelled": sum(s.unlabelled for s in subscribers),
        "foreign": sum(s.foreign for s in subscribers) + (accountant.foreign if accountant else 0),
        "denied": accountant.denied if accountant else 0,
        "dead_lettered": accountant.dead_outcomes if accountant else 0,
        "dead_letter_records": sum(accountant.dead_letters.values()) if accountant else 0,
        "audited_deliveries": accountant.audited_deliveries if accountant else 0,
        "conflicts": sum(accountant.quality_events.values()) if accountant else 0,
        "lag": {s.department: s.lag() for s in subscribers},
        "clock_skew": _clock_skew(subscribers),
        "reactions_produced": dict(reactions.produced),
        "reactions_pending": reactions.pending,
    }


def _clock_skew(subscribers: list[Subscriber]) -> dict:
    """Deliveries with a latency that cannot be true, per source department (see exchange/results/latency.py)."""
    total = ClockSkew()
    for s in subscribers:
        total.merge(s.clock_skew)
    return total.report()


def samples_file(worker: int, workers: int) -> str:
    """The samples file a worker writes beside its status file: ``samples.jsonl`` alone, ``samples-K.jsonl``
    as worker K of several (the controller joins them into ``samples.jsonl``)."""
    return SAMPLES_FILE if workers == 1 else f"{Path(SAMPLES_FILE).stem}-{worker}{Path(SAMPLES_FILE).suffix}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m consumers", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--status", type=Path)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (0: a free one)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file: resume from it if present, write it every second")
    parser.add_argument("--pause-file", type=Path, help="JSON list of departments to pause, written by the run controller")
    parser.add_argument(
        "--schedule-file", type=Path, help="the producers' schedule file: deliveries intended before its warm-up end are measured apart"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_PER_FLOW,
        help=f"deliveries kept per flow, with their source records, in {SAMPLES_FILE} beside the status file (0: none)",
    )
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=None,
        help="subscribers' fetch wait (default: 10-100 ms by department count, tuned for Tansu; 500 on Kafka)",
    )
    parser.add_argument(
        "--subscriber-clients",
        choices=MODES,
        default="auto",
        help="shared: one Kafka consumer reads the departments (those with a consume rate or a gateway read alone); "
        "per-department: each its own consumer and group, as their systems would; auto: per-department on Tansu "
        "(--broker-kind tansu), else shared",
    )
    parser.add_argument(
        "--quiet-fetch-wait-ms",
        type=int,
        default=QUIET_FETCH_WAIT_MS,
        help="fetch wait of the shared client of the departments that receive only daily, monthly and batch entries; "
        f"0: they read with the others (default {QUIET_FETCH_WAIT_MS})",
    )
    add_clock_arguments(parser)
    offset_gaps.add_broker_kind_argument(parser)
    parser.add_argument("--workers", type=int, default=1, help="consumer workers of the run, the departments divided between them")
    parser.add_argument("--worker-index", type=int, default=0, help="this worker's number, 0 … WORKERS-1 (0 also reads the audit trail)")
    args = parser.parse_args(argv)
    scenario = Scenario.from_runtime_json(args.scenario.read_bytes())
    if not 0 <= args.worker_index < args.workers:
        parser.error(f"--worker-index {args.worker_index} is not in 0 … {args.workers - 1} (--workers {args.workers})")
    try:
        assign_departments(scenario, args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    worker = str(args.worker_index)
    offset_gaps.install_for(args.broker_kind)
    status = StatusWriter(args.status, sender(Role.consumers, args.run_id, worker))
    report_crashes(status)  # a task or thread that crashes fails the run, though this process lives on
    sd_file = metrics.expose(
        "consumers", worker, scenario, args.status.parent if args.status else None, args.metrics_port, args.run_id, worker=worker
    )

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        samples = args.status.parent / samples_file(args.worker_index, args.workers) if args.status and args.samples > 0 else None
        await run(
            scenario,
            args.bootstrap,
            status,
            stop,
            args.run_id,
            args.seed,
            args.checkpoint,
            args.pause_file,
            samples,
            args.samples,
            args.fetch_wait_ms,
            args.schedule_file,
            clock_offset=offset,
            worker=args.worker_index,
            workers=args.workers,
            clients_per_department=subscriber_clients(args.subscriber_clients, args.broker_kind) == "per-department",
            quiet_fetch_wait_ms=args.quiet_fetch_wait_ms,
        )

    try:
        offset = clock_at_start(args, args.bootstrap, "consumers")
        asyncio.run(_main())
    except ExchangeError as exc:  # expected (no clock server answered): one line
        status.write(Error(message=str(exc)))
        print(f"{exc.label}: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        status.write(Error(message=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        metrics.remove_sd_target(sd_file)
        status.close()
