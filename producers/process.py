"""The producer process: every publishing department of a scenario, on one event loop.

Started by the run controller (``python -m producers``); reports through status lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from pathlib import Path

from exchange import metrics
from exchange.errors import ExchangeError
from exchange.kafka.gateway import GatewayGate
from exchange.kafka.timesync import add_clock_arguments, clock_at_start
from exchange.results.latency import encode, sample_quantiles
from exchange.runner import clock
from exchange.runner.processes import report_crashes, settle_heap
from exchange.runner.status import StatusWriter, sender
from exchange.runner.warmup import read_schedule_start, warmup_end_ns, write_schedule
from producers.publisher import DepartmentPublisher, PublishStats, Schedule, WorkerShare
from producers.records import RecordFactory, entity_pool
from schemas.clock import ClockOffset
from schemas.envelope import IngressLayout
from schemas.scenario import DeliveryGuarantee, Gateway, Scenario
from schemas.status import Error, ProducersFinal, ProducersReady, ProducersStats, Role

STATS_INTERVAL_S = 1.0
SCHEDULE_POLL_S = 0.01
log = logging.getLogger(__name__)


def build_publishers(
    scenario: Scenario,
    bootstrap: str,
    seed: int,
    stats: PublishStats,
    run_id: str = "",
    rate_multiplier: float = 1.0,
    share: WorkerShare | None = None,
) -> list[DepartmentPublisher]:
    """One publisher per publishing department; with ``share``, each publishes that worker's
    share of its schedules (:class:`~producers.publisher.WorkerShare`) through its gateway's
    cap divided between the workers."""
    share = share or WorkerShare()
    pool = entity_pool(scenario, seed)
    by_dept: dict[str, list[Schedule]] = {}
    profiles = scenario.entry_profiles()
    layout = IngressLayout(scenario)  # the scenario's `topics` layout: an entry's topic may be shared (the entry-id header tells)
    for n, (entry_id, rate) in enumerate(sorted(scenario.entry_rates().items())):
        entry = scenario.entries[entry_id]
        copies = tuple(scenario.copied_items(entry_id))
        factory = RecordFactory(entry, pool, random.Random(seed * 7919 + n), scenario.load.record_size, copies, scenario.load.mismatch_rate)
        by_dept.setdefault(entry.provider, []).append(
            # each department publishes into its own hub
            Schedule(entry_id, layout.topic_of[entry_id], rate * rate_multiplier, factory, profiles.get(entry_id))
        )
    order = {d.id: i for i, d in enumerate(scenario.departments)}
    return [
        DepartmentPublisher(
            dept,
            order[dept] + 1,
            schedules,
            bootstrap,
            stats,
            run_id,
            scenario.platform_of(dept),
            worker_gate(scenario.gateway_of(dept), share.workers),
            idempotent=scenario.guarantee is DeliveryGuarantee.exactly_once,
            share=share,
        )
        for dept, schedules in sorted(by_dept.items(), key=lambda kv: order[kv[0]])
    ]


def worker_gate(gateway: Gateway | None, workers: int) -> GatewayGate | None:
    """The department's boundary gateway, its records/s cap shared evenly by the producer workers."""
    if gateway is None:
        return None
    if gateway.max_records_per_s is not None and workers > 1:
        gateway = gateway.model_copy(update={"max_records_per_s": gateway.max_records_per_s / workers})
    return GatewayGate(gateway)


async def run(
    scenario: Scenario,
    bootstrap: str,
    seed: int,
    duration: float,
    status: StatusWriter,
    run_id: str = "",
    rate_multiplier: float = 1.0,
    warmup_s: float = 0.0,
    schedule_path: Path | None = None,
    clock_offset: ClockOffset | None = None,
    schedule_lead_s: float = 0.0,
    share: WorkerShare | None = None,
    wait_for_schedule: bool = False,
) -> PublishStats:
    """Publish the schedule (this worker's ``share`` of it) for ``duration`` s, reporting on ``status``.

    The schedule starts now, and its start goes to ``schedule_path``; with
    ``wait_for_schedule`` (several producer workers) it starts when the run controller
    writes ``schedule_path`` instead, at the start written there, the same for every worker.
    """
    stats = PublishStats()
    publishers = build_publishers(scenario, bootstrap, seed, stats, run_id, rate_multiplier, share)
    reporter = None
    try:
        await asyncio.gather(*(p.start() for p in publishers))
        for p in publishers:
            p.prepare(duration)
        settle_heap()  # the entity pool and every publisher's schedule live all run long
        status.write(ProducersReady(departments=len(publishers), clock=clock_offset))
        if wait_for_schedule and schedule_path is not None:  # several workers: the controller writes one start
            start_ns = await _scheduled_start(schedule_path)
        else:
            # the schedule starts ``schedule_lead_s`` after it is written: time for the file to
            # reach consumers on other machines before any record does (docs/distributed.md)
            start_ns = clock.now_ns() + round(schedule_lead_s * 1e9)
            if schedule_path is not None:  # before the first record: whoever receives one can read it
                write_schedule(schedule_path, start_ns, warmup_s)
        stats.warmup_end_ns = warmup_end_ns(start_ns, warmup_s) if warmup_s else 0
        await asyncio.sleep(max(0.0, (start_ns - clock.now_ns()) / 1e9))
        reporter = asyncio.create_task(_report(stats, status, start_ns))
        await asyncio.gather(*(p.run(start_ns, duration) for p in publishers))
    finally:
        if reporter is not None:
            reporter.cancel()
        for p, stopped in zip(publishers, await asyncio.gather(*(p.stop() for p in publishers), return_exceptions=True), strict=True):
            if isinstance(stopped, Exception):  # logged, not raised over what ended the run
                log.error("stopping %s's producer failed", p.department, exc_info=stopped)
        if reporter is not None:
            # the last, partial interval, once the producers flushed: records held back at the end
            # (a broker paused late in the run) are sent in it, and a fault's publish delay is
            # read from these lines
            _write_interval(stats, status, start_ns)
    status.write(
        ProducersFinal(
            elapsed_s=(clock.now_ns() - start_ns) / 1e9,
            produced=dict(stats.produced),
            sent=stats.sent,
            retried=stats.retried,
            publish_delay=encode(stats.publish_delay),
            publish_latency=encode(stats.publish_latency),
            warmup_published=stats.warmup_published,
            warmup_publish_delay=encode(stats.warmup_delay),
            warmup_publish_latency=encode(stats.warmup_latency),
        )
    )
    return stats


async def _scheduled_start(path: Path) -> int:
    """The schedule's start (epoch ns) once the run controller has written it to ``path``,
    after a short wait until then if it lies ahead."""
    while True:
        try:
            start_ns = read_schedule_start(path)
            break
        except FileNotFoundError:
            await asyncio.sleep(SCHEDULE_POLL_S)
    if (ahead := start_ns - clock.now_ns()) > 0:
        await asyncio.sleep(ahead / 1e9)
    return start_ns


async def _report(stats: PublishStats, status: StatusWriter, start_ns: int) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        _write_interval(stats, status, start_ns)


def _write_interval(stats: PublishStats, status: StatusWriter, start_ns: int) -> None:
    """One ``stats`` line: the totals so far and the publish figures of the interval since the last."""
    delay, latency = stats.take_interval()
    status.write(
        ProducersStats(
            t=(clock.now_ns() - start_ns) / 1e9,
            produced=stats.total,
            sent=stats.sent,
            retried=stats.retried,
            publish_latency=sample_quantiles(latency),
            publish_delay_us=sample_quantiles(delay, 1e3),
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m producers", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True, help="scenario as JSON (written by the run controller)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--status", type=Path)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--rate-multiplier", type=float, default=1.0, help="scales every rate of the scenario")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of warm-up at the start of the schedule (exchange/runner/warmup.py)")
    parser.add_argument("--schedule-file", type=Path, help="where to write the schedule's start and warm-up end before publishing")
    parser.add_argument(
        "--schedule-lead", type=float, default=0.0, help="seconds between writing the schedule file and its start (for consumers on other machines)"
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (0: a free one)")
    add_clock_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="producer workers of the run: each publishes one record in WORKERS of every entry")
    parser.add_argument(
        "--worker-index", type=int, default=0, help="this worker's number, 0 … WORKERS-1: it publishes positions i with i %% WORKERS == it"
    )
    parser.add_argument(
        "--wait-for-schedule",
        action="store_true",
        help="start at the time the run controller writes to --schedule-file (several workers, one schedule) instead of writing it",
    )
    args = parser.parse_args(argv)
    try:
        share = WorkerShare(args.worker_index, args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    if args.wait_for_schedule and args.schedule_file is None:
        parser.error("--wait-for-schedule needs --schedule-file")
    scenario = Scenario.from_runtime_json(args.scenario.read_bytes())
    worker = str(share.index)
    status = StatusWriter(args.status, sender(Role.producers, args.run_id, worker))
    report_crashes(status)  # a task or thread that crashes fails the run, though this process lives on
    run_dir = args.status.parent if args.status else None
    sd_file = metrics.expose("producers", worker, scenario, run_dir, args.metrics_port, args.run_id, worker=worker)
    try:
        offset = clock_at_start(args, args.bootstrap, "producers")
        asyncio.run(
            run(
                scenario,
                args.bootstrap,
                args.seed,
                args.duration,
                status,
                args.run_id,
                args.rate_multiplier,
                args.warmup,
                args.schedule_file,
                schedule_lead_s=args.schedule_lead,
                clock_offset=offset,
                share=share,
                wait_for_schedule=args.wait_for_schedule,
            )
        )
    except ExchangeError as exc:  # expected (a broker that refuses records for good): one line
        status.write(Error(message=str(exc)))
        print(f"{exc.label}: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        status.write(Error(message=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        metrics.remove_sd_target(sd_file)
        status.close()
