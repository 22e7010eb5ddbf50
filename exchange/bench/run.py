"""``exchange bench``: is the simulator ever the bottleneck?

One invocation, one broker, the same records for every path:

1. the producer process publishes N records of the bench entry as fast as it can
   (generation included): producer records/s;
2. a raw aiokafka pass-through copies them to another topic: the baseline;
3. the router worker(s), full policy on (conditional approval check, item projection,
   masking, row filter, audit record per decision), route the same records:
   records/s, start-to-ready time, peak RSS;
4. a consumer process reads the N deliveries: consumer records/s;
5. a live run at half the router's rate gives end-to-end latency at that load.

Every path must process every record; the counts are part of the output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka import brokers
from exchange.kafka.topics import create_topics, topic_plan
from exchange.runner.controller import RunOptions, _Child, run
from exchange.runner.maxrate import find_max_rate
from exchange.runner.processes import terminate
from schemas.envelope import Topics
from schemas.scenario import Scenario
from schemas.status import ConsumersStats, Error, PassthroughFinal, ProducersFinal, RouterReady, RouterStats

ENTRY = "enterprise-registration"
FAST_RATE = 5_000_000.0  # records/s asked of the producer: "as fast as you can"


def bench_scenario(record_size: int, rate: float, duration: float) -> Scenario:
    """A provincial hub; one conditional entry; one approved, masked, row-filtered flow."""
    personal = {"sensitivity": "personal"}
    return Scenario.model_validate(
        {
            "name": "bench",
            "description": "one conditional entry, full policy on every record",
            "platform": {"id": "bench", "name": "广东省政务数据共享交换平台", "level": "provincial", "region": "440000"},
            "departments": [{"id": "market", "name": "市场监管局"}, {"id": "tax", "name": "东莞市税务局", "region": "441900"}],
            "catalogue": [
                {
                    "id": ENTRY,
                    "name": "企业登记信息",
                    "provider": "market",
                    "sharing": "有条件共享",
                    "partitions": 4,
                    "items": [
                        {"key": "enterprise.credit_code", "name": "统一社会信用代码", "type": "credit_code"},
                        {"key": "enterprise.name", "name": "企业名称", "type": "enterprise_name"},
                        {"key": "enterprise.address", "name": "住所", "type": "address"},
                        {"key": "enterprise.region", "name": "所在镇街", "type": "region_code"},
                        {"key": "enterprise.legal_rep", "name": "法定代表人", "type": "person_name", **personal},
                        {"key": "enterprise.legal_rep_id", "name": "法定代表人身份证号", "type": "resident_id", **personal},
                        {"key": "enterprise.phone", "name": "联系电话", "type": "phone", **personal},
                        {"key": "enterprise.registered_on", "name": "成立日期", "type": "date"},
                        {"key": "enterprise.status", "name": "登记状态", "type": "status"},
                    ],
                }
            ],
            "subscriptions": [
                {
                    "consumer": "tax",
                    "entry": ENTRY,
                    "purpose": "企业开办 — 发票申领",
                    "status": "approved",
                    "items": [
                        "enterprise.credit_code",
                        "enterprise.name",
                        "enterprise.address",
                        "enterprise.region",
                        "enterprise.legal_rep",
                        "enterprise.legal_rep_id",
                        "enterprise.registered_on",
                        "enterprise.status",
                    ],
                }
            ],
            # Records come from Dongguan; tax's jurisdiction (441900) is narrower than the
            # provincial platform's, so the row filter runs on every record and passes it.
            "load": {"duration": duration, "record_size": record_size, "regions": ["441900"], "producers": [{"department": "market", "rate": rate}]},
        }
    )


@dataclass
class BenchOptions:
    records: int = 200_000
    record_size: int = 1024
    workers: int = 1
    bootstrap: str | None = None
    out: Path | None = None
    latency_seconds: float = 10.0
    find_max_rate: bool = False  # measure latency at half the live maximum (found by search) instead
    broker: str = "tansu"  # started without bootstrap: tansu, kafka, kafka:3 (exchange/kafka/brokers.py)


class BenchFailed(ExchangeError, RuntimeError):
    """A bench run could not complete (exit code 1)."""

    exit_code = EXIT_FAILED
    label = "bench failed"


async def run_bench(options: BenchOptions, say=lambda text: None) -> dict[str, Any]:
    run_dir = options.out or Path("runs") / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    n = options.records
    scenario = bench_scenario(options.record_size, FAST_RATE, n / FAST_RATE)
    scenario_json = run_dir / "scenario.json"
    scenario_json.write_text(scenario.model_dump_json())
    topics = Topics.of(scenario)  # the raw pass-through reads the entry's ingress topic, as the scenario's layout names it
    raw_target = f"{topics.prefix}.raw-out"
    broker = None if options.bootstrap else brokers.make(options.broker, log_path=run_dir / "broker.log")
    children: list[_Child] = []
    out: dict[str, Any] = {"records": n, "record_size": options.record_size, "router_workers": options.workers}

    def start(name: str, argv: list[str]) -> _Child:
        child = _Child.spawn(run_dir, name, argv)
        children.append(child)
        return child

    try:
        if broker is not None:
            try:
                await broker.astart()
            except brokers.BrokerError as exc:
                raise BenchFailed(f"could not start the broker ({options.broker}): {exc}") from None
        bootstrap = options.bootstrap or broker.bootstrap
        out["broker"] = broker.describe() if broker is not None else f"Kafka at {bootstrap}"
        if broker is not None:
            out["broker_start_s"] = broker.start_seconds
        plan = topic_plan(scenario)
        plan[raw_target] = scenario.catalogue[0].partitions
        await create_topics(bootstrap, plan, replication_factor=broker.replication_factor if broker else 1)
        common = ["--scenario", str(scenario_json), "--bootstrap", bootstrap]

        say(f"producing {n:,} records of {options.record_size} bytes…")
        producers = start("producers", ["producers", *common, "--duration", str(n / FAST_RATE), "--run-id", "bench"])
        final = await _wait_event(producers, ProducersFinal, 600)
        produced = sum(final.produced.values())
        out["produced"] = produced
        out["producer_records_per_s"] = round(produced / final.elapsed_s)
        if broker is not None and broker.kind == "kafka":
            # the peer: Apache Kafka's own Java producer, same broker, records, size and acks
            say(f"Apache Kafka's ProducerPerformance: {n:,} records of {options.record_size} bytes…")
            from exchange.kafka.apache import producer_performance

            peer = f"{topics.prefix}.producer-performance"
            await create_topics(bootstrap, {peer: scenario.catalogue[0].partitions}, replication_factor=broker.replication_factor)
            java = await asyncio.to_thread(
                producer_performance,
                bootstrap,
                peer,
                n,
                options.record_size,
                run_dir / "producer-performance.log",
                {"acks": "all", "batch.size": str(512 * 1024)},
            )
            out["java_producer_records_per_s"] = java["records_per_s"]
            out["java_producer_p99_ms"] = java["p99_ms"]

        say("raw aiokafka pass-through…")
        raw = start(
            "raw",
            ["exchange.bench.raw", "--bootstrap", bootstrap, "--source", topics.ingress(ENTRY), "--target", raw_target, "--records", str(produced)],
        )
        copied = await _wait_event(raw, PassthroughFinal, 600)
        out["raw_records"] = copied.records
        out["raw_records_per_s"] = per_second(copied.records, copied.first_ns, copied.last_ns)

        say(f"router ({options.workers} worker{'s' if options.workers > 1 else ''}), full policy…")
        routers = [
            start(f"router-{i}", ["exchange.router", *common, "--worker", str(i), "--datadir", str(run_dir / f"router-{i}-data")])
            for i in range(options.workers)
        ]
        readies = [await _wait_event(r, RouterReady, 120) for r in routers]
        out["router_ready_s"] = max(e.seconds for e in readies)
        stats = await _wait_routed(routers, produced, 600)
        first = min(s.first_ns for s in stats if s.first_ns)
        last = max(s.last_ack_ns for s in stats)
        out["router_records"] = sum(s.acked for s in stats)
        out["router_records_per_s"] = per_second(out["router_records"], first, last)
        out["router_peak_rss_mb"] = round(max(s.peak_rss_bytes for s in stats) / 2**20, 1)
        out["ratio"] = round(out["router_records_per_s"] / out["raw_records_per_s"], 3)

        say("consumer…")
        consumers = start("consumers", ["consumers", *common, "--run-id", "bench"])
        totals = await _wait_delivered(consumers, produced, 600)
        out["consumer_records"] = totals.delivered
        out["consumer_records_per_s"] = per_second(totals.received, totals.first_ns, totals.last_ns)
        for child in [*routers, consumers]:
            await asyncio.to_thread(terminate, child.proc)

        half = out["router_records_per_s"] / 2
        # The live runs get a broker of their own each (None: run() starts one): Tansu serves
        # fetches from a partition holding hundreds of megabytes of backlog measurably slower,
        # and one trial's leftovers must not delay the next.
        live_bootstrap = options.bootstrap
        if options.find_max_rate:
            # the live maximum: producers, router, subscribers and broker together on this machine
            say("searching the live maximum sustainable rate (trials of 10 s)…")
            probe = bench_scenario(options.record_size, half / 4, 10.0)
            found = await find_max_rate(
                RunOptions(probe, 10.0, None, live_bootstrap, workers=options.workers, broker=options.broker),
                run_dir / "max-rate",
                slo_p99_ms=1000.0,
                trial_s=10.0,
                say=say,
            )
            out["live_max_records_per_s"] = found.max_rate_per_s
            half = found.max_rate_per_s / 2
        say(f"end-to-end latency at {half:,.0f} records/s for {options.latency_seconds:.0f} s…")
        live = bench_scenario(options.record_size, half, options.latency_seconds)
        result, _ = await run(
            RunOptions(live, options.latency_seconds, run_dir / "half-rate", live_bootstrap, workers=options.workers, broker=options.broker)
        )
        out["half_rate_records_per_s"] = round(half)
        out["half_rate_warmup_s"] = result.run.warmup_s  # its first seconds are kept out of the percentiles (exchange/runner/warmup.py)
        out["half_rate_e2e_p50_ms"] = result.aggregatedEndToEndLatency50pct
        out["half_rate_e2e_p99_ms"] = result.aggregatedEndToEndLatency99pct
        out["half_rate_publish_delay_p99_ms"] = round(result.aggregatedPublishDelayLatency99pct / 1000, 3)
        out["half_rate_conservation_ok"] = result.conservation.ok
        out["all_records_processed"] = produced == out["raw_records"] == out["router_records"] == out["consumer_records"] == n
        out["run_dir"] = str(run_dir)
        return out
    finally:
        await asyncio.gather(*(asyncio.to_thread(terminate, c.proc, 3.0) for c in children))
        if broker is not None:
            await broker.astop()


def per_second(records: int, first_ns: int, last_ns: int) -> int:
    """Records/s between the first record taken in and the last one done (at least 1 ms)."""
    return round(records / max((last_ns - first_ns) / 1e9, 1e-3))


T = TypeVar("T", bound=BaseModel)


async def _wait_event(child: _Child, body: type[T], timeout: float) -> T:
    """The child's first message of type ``body`` (a ready or final report)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.read()
        found = child.last(body)
        if found is not None:
            return found
        if child.last(Error) or child.proc.poll() not in (None, 0):
            raise BenchFailed(f"{child.name} failed:\n{child.tail()}")
        await asyncio.sleep(0.05)
    raise BenchFailed(f"{child.name}: no {body.__name__} message within {timeout:.0f} s")


async def _wait_routed(routers: list[_Child], records: int, timeout: float) -> list[RouterStats]:
    latest: dict[str, RouterStats] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in routers:
            for m in r.read():
                if isinstance(m.body, RouterStats):
                    latest[r.name] = m.body
            if r.proc.poll() is not None:
                raise BenchFailed(f"{r.name} exited:\n{r.tail()}")
        if len(latest) == len(routers) and sum(e.acked for e in latest.values()) >= records:
            return list(latest.values())
        await asyncio.sleep(0.1)
    raise BenchFailed(f"the router did not route {records:,} records within {timeout:.0f} s")


async def _wait_delivered(consumers: _Child, records: int, timeout: float) -> ConsumersStats:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = [m.body for m in consumers.read() if isinstance(m.body, ConsumersStats)]
        if stats and stats[-1].delivered >= records:
            return stats[-1]
        if consumers.proc.poll() is not None:
            raise BenchFailed(f"consumers exited:\n{consumers.tail()}")
        await asyncio.sleep(0.1)
    raise BenchFailed(f"the consumer did not receive {records:,} records within {timeout:.0f} s")
