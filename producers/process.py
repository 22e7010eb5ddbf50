"""The producer process: every publishing department of a scenario, on one event loop.

Started by the run controller (``python -m producers``); reports through status lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from pathlib import Path

from exchange import metrics
from exchange.errors import ExchangeError
from exchange.kafka.gateway import GatewayGate
from exchange.results.latency import encode, sample_quantiles
from exchange.runner.processes import report_crashes
from exchange.runner.status import StatusWriter, sender
from exchange.runner.warmup import warmup_end_ns, write_schedule
from producers.publisher import DepartmentPublisher, PublishStats, Schedule
from producers.records import RecordFactory, entity_pool
from schemas.envelope import IngressLayout
from schemas.scenario import DeliveryGuarantee, Scenario
from schemas.status import Error, ProducersFinal, ProducersReady, ProducersStats, Role

STATS_INTERVAL_S = 1.0
log = logging.getLogger(__name__)


def build_publishers(
    scenario: Scenario, bootstrap: str, seed: int, stats: PublishStats, run_id: str = "", rate_multiplier: float = 1.0
) -> list[DepartmentPublisher]:
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
            GatewayGate(gateway) if (gateway := scenario.gateway_of(dept)) else None,
            idempotent=scenario.guarantee is DeliveryGuarantee.exactly_once,
        )
        for dept, schedules in sorted(by_dept.items(), key=lambda kv: order[kv[0]])
    ]


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
) -> PublishStats:
    stats = PublishStats()
    publishers = build_publishers(scenario, bootstrap, seed, stats, run_id, rate_multiplier)
    reporter = None
    try:
        await asyncio.gather(*(p.start() for p in publishers))
        for p in publishers:
            p.prepare(duration)
        status.write(ProducersReady(departments=len(publishers)))
        start_ns = time.time_ns()
        stats.warmup_end_ns = warmup_end_ns(start_ns, warmup_s) if warmup_s else 0
        if schedule_path is not None:  # before the first record: whoever receives one can read it
            write_schedule(schedule_path, start_ns, warmup_s)
        reporter = asyncio.create_task(_report(stats, status, start_ns))
        await asyncio.gather(*(p.run(start_ns, duration) for p in publishers))
    finally:
        if reporter is not None:
            reporter.cancel()
        for p, stopped in zip(publishers, await asyncio.gather(*(p.stop() for p in publishers), return_exceptions=True), strict=True):
            if isinstance(stopped, Exception):  # logged, not raised over what ended the run
                log.error("stopping %s's producer failed", p.department, exc_info=stopped)
    status.write(
        ProducersFinal(
            elapsed_s=(time.time_ns() - start_ns) / 1e9,
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


async def _report(stats: PublishStats, status: StatusWriter, start_ns: int) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        delay, latency = stats.take_interval()
        status.write(
            ProducersStats(
                t=(time.time_ns() - start_ns) / 1e9,
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
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (0: a free one)")
    args = parser.parse_args(argv)
    scenario = Scenario.from_runtime_json(args.scenario.read_bytes())
    status = StatusWriter(args.status, sender(Role.producers, args.run_id))
    report_crashes(status)  # a task or thread that crashes fails the run, though this process lives on
    sd_file = metrics.expose("producers", "0", scenario, args.status.parent if args.status else None, args.metrics_port, args.run_id)
    try:
        asyncio.run(
            run(scenario, args.bootstrap, args.seed, args.duration, status, args.run_id, args.rate_multiplier, args.warmup, args.schedule_file)
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
