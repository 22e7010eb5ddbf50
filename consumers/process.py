"""The consumer process: every subscribing department, plus the accountant.

Started by the run controller (``python -m consumers``); runs until SIGTERM, then writes
its final report (counts per flow and encoded latency histograms) as a status line.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from exchange import metrics
from exchange.latency import encode, sample_quantiles
from exchange.status import StatusWriter
from producers.process import entity_pool
from schemas.envelope import Topics
from schemas.scenario import Scenario

from .accountant import Accountant
from .dedupe import SeenSet
from .hops import HopStats
from .reactions import ReactionEngine, WorkflowTracker
from .subscriber import Subscriber

STATS_INTERVAL_S = 1.0


def fanout(scenario: Scenario) -> dict[str, int]:
    """Outcomes one record of each entry accounts for: one per subscription, at least one."""
    subs = scenario.subscriptions_by_entry
    return {e.id: max(1, len(subs.get(e.id, ()))) for e in scenario.catalogue}


async def run(scenario: Scenario, bootstrap: str, status: StatusWriter, stop: asyncio.Event, run_id: str = "", seed: int = 1) -> None:
    seen = SeenSet()
    hops = HopStats()
    departments = sorted({s.consumer for s in scenario.subscriptions})
    # Tansu answers an empty fetch only when the wait ends: 10 ms keeps an idle hop short,
    # but a hundred consumers polling every 10 ms cost the broker more than the data does.
    wait_ms = min(100, max(10, len(departments)))
    subscribers = [
        Subscriber(dept, Topics(hub).delivery(dept), bootstrap, f"dx-{hub}-sub-{dept}", seen, run_id, wait_ms, hub, hops)
        for dept, hub in ((d, scenario.platform_of(d)) for d in departments)
    ]
    cycles = {e: int(p.every * 1e9) for e, p in scenario.entry_profiles().items() if p.kind == "batch"}
    for s in subscribers:
        s.cycles = cycles
        limit = scenario.department_ids[s.department].consume_rate
        gateway = scenario.gateway_of(s.department)
        if gateway is not None:  # what crosses its boundary gateway is held up and capped there
            s.gateway_latency_ns = int(gateway.latency_ms * 1e6)
            if gateway.max_records_per_s is not None:
                limit = min(limit or gateway.max_records_per_s, gateway.max_records_per_s)
        if limit is not None:
            s.consume_rate = limit
            s._max_records = max(1, int(limit / 10))  # read in tenths of a second's worth
    accountant = Accountant([Topics(hub) for hub in scenario.hubs_in_use], bootstrap, fanout(scenario), run_id)
    reactions = ReactionEngine(scenario, bootstrap, entity_pool(scenario, seed) if scenario.reactions else None, seed, run_id)
    workflows = WorkflowTracker(scenario)
    for s in subscribers:
        if reactions.active:
            s.listeners.append(reactions.on_delivery)
        if scenario.workflows:
            s.listeners.append(lambda consumer, entry, key, h, now: workflows.on_delivery(entry, key, h, now))
    await asyncio.gather(*(s.start() for s in subscribers), accountant.start(), reactions.start())
    status.write("ready", subscribers=len(subscribers))
    readers = [*subscribers, accountant]

    async def read_until_stopped(reader) -> None:
        # each reader on its own: one quiet topic must not hold up the others' polls
        while not stop.is_set():
            await reader.poll(100)
        while await reader.poll(50):  # whatever arrived before the stop
            pass

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(STATS_INTERVAL_S)
            status.write("stats", **_totals(subscribers, accountant), **_reactions(reactions), **_interval(subscribers))
            accountant.flush_metrics(scenario.platform.id)
            for s in subscribers:
                metrics.CONSUMER_LAG.labels(s.platform, s.department).set(s.lag())

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(read_until_stopped(r) for r in readers))
    finally:
        reporter.cancel()
        await reactions.stop()
        await asyncio.gather(*(r.stop() for r in readers), return_exceptions=True)
    flows = {}
    for s in subscribers:
        for name, f in s.flows.items():
            flows[name] = {
                "within_cycle": f.within_cycle,
                "delivered": f.delivered,
                "duplicates": f.duplicates,
                "e2e": encode(f.e2e),
                "e2e_intended": encode(f.e2e_intended),
            }
    status.write(
        "final",
        **_totals(subscribers, accountant),
        flows=flows,
        hops={name: encode(h) for name, h in hops.segments.items()},
        paths={name: {"hubs": hops.path_hubs[name], "e2e": encode(h)} for name, h in hops.paths.items()},
        decisions=[[*k, v] for k, v in accountant.decisions.items()],
        dead_letters=[[*k, v] for k, v in accountant.dead_letters.items()],
        quality_events=[[*k, v] for k, v in accountant.quality_events.items()],
        **_reactions(reactions),
        workflows={
            name: {"completed": workflows.completed[name], "incomplete": workflows.incomplete().get(name, 0), "times": encode(h)}
            for name, h in workflows.times.items()
        },
    )


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
                flows[name] = {"50pct": q["50pct"], "99pct": q["99pct"], "n": len(samples)}
    return {"e2e": sample_quantiles(everything), "flow_latency": flows}


def _reactions(reactions: ReactionEngine) -> dict:
    return {"reactions_produced": dict(reactions.produced), "reactions_pending": reactions.pending}


def _totals(subscribers: list[Subscriber], accountant: Accountant) -> dict:
    return {
        "received": sum(s.received for s in subscribers),
        "first_ns": min((s.first_ns for s in subscribers if s.first_ns), default=0),
        "last_ns": max((s.last_ns for s in subscribers), default=0),
        "delivered": sum(f.delivered for s in subscribers for f in s.flows.values()),
        "duplicates": sum(f.duplicates for s in subscribers for f in s.flows.values()) + accountant.duplicates,
        "unlabelled": sum(s.unlabelled for s in subscribers),
        "foreign": sum(s.foreign for s in subscribers) + accountant.foreign,
        "denied": accountant.denied,
        "dead_lettered": accountant.dead_outcomes,
        "dead_letter_records": sum(accountant.dead_letters.values()),
        "audited_deliveries": accountant.audited_deliveries,
        "conflicts": sum(accountant.quality_events.values()),
        "lag": {s.department: s.lag() for s in subscribers},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m consumers", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--status", type=Path)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (0: a free one)")
    args = parser.parse_args(argv)
    scenario = Scenario.model_validate_json(args.scenario.read_bytes())
    status = StatusWriter(args.status)
    sd_file = metrics.expose("consumers", "0", scenario, args.status.parent if args.status else None, args.metrics_port, args.run_id)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(scenario, args.bootstrap, status, stop, args.run_id, args.seed)

    try:
        asyncio.run(_main())
    except Exception as exc:
        status.write("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        metrics.remove_sd_target(sd_file)
        status.close()
