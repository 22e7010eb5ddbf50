"""The delivery guarantee (``--guarantee``, the scenario's ``guarantee``): exactly-once on Apache
Kafka survives a killed router with no redelivery at all; Tansu refuses it in one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from exchange.bench.guarantee import cost
from exchange.kafka.apache import KafkaBroker
from exchange.kafka.topics import create_router_internal_topics
from exchange.runner.controller import run
from exchange.runner.options import GuaranteeError, RunOptions, resolve_guarantee
from exchange.runner.status import StatusReader
from exchange.scenarios.loader import load
from schemas.envelope import H_RUN, H_SUBSCRIPTION, H_TRACE, Topics
from schemas.scenario import DeliveryGuarantee

from .harness import ROOT, kafka_missing


def test_the_guarantee_comes_from_the_option_else_the_scenario_and_takes_chinese_terms():
    demo = load("demo")
    assert demo.guarantee is DeliveryGuarantee.at_least_once
    assert resolve_guarantee(RunOptions(demo, broker="kafka")) is DeliveryGuarantee.at_least_once
    eos = demo.model_validate({**demo.model_dump(mode="json"), "guarantee": "精确一次"})
    assert eos.guarantee is DeliveryGuarantee.exactly_once
    assert resolve_guarantee(RunOptions(eos, broker="kafka:3")) is DeliveryGuarantee.exactly_once
    assert resolve_guarantee(RunOptions(eos, broker="kafka", guarantee="at-least-once")) is DeliveryGuarantee.at_least_once
    assert resolve_guarantee(RunOptions(eos, bootstrap="127.0.0.1:9092")) is DeliveryGuarantee.exactly_once
    with pytest.raises(GuaranteeError, match="expected at-least-once or exactly-once"):
        resolve_guarantee(RunOptions(demo, broker="kafka", guarantee="at-most-once"))


def test_exactly_once_on_the_embedded_broker_is_refused_before_anything_starts(tmp_path):
    eos = load("demo")
    eos = eos.model_validate({**eos.model_dump(mode="json"), "guarantee": "exactly-once"})
    with pytest.raises(GuaranteeError, match=r"demo: guarantee exactly-once needs Apache Kafka .* Tansu broker rejects idempotent"):
        asyncio.run(run(RunOptions(eos, duration=5, out=tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_cli_refuses_exactly_once_on_tansu_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--guarantee", "exactly-once", "--duration", "5", "--out", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --guarantee exactly-once needs Apache Kafka (--broker kafka, kafka:3 or --bootstrap): "
        "the embedded Tansu broker rejects idempotent and transactional producers"
    ]
    assert not (tmp_path / "x").exists()


def test_the_guarantee_bench_refuses_tansu_and_states_the_cost_in_percent(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "bench", "--guarantee-cost", "demo", "--out", str(tmp_path / "b")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "needs Apache Kafka" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
    alo = {"records_per_s": 2000, "e2e_p50_ms": 40.0, "e2e_p99_ms": 100.0, "publish_p99_ms": 5.0}
    eos = {"records_per_s": 1800, "e2e_p50_ms": 90.0, "e2e_p99_ms": 150.0, "publish_p99_ms": None}
    assert cost(alo, eos) == {
        "records_per_s_change_pct": -10.0,
        "e2e_p50_ms_change_pct": 125.0,
        "e2e_p99_ms_change_pct": 50.0,
        "publish_p99_ms_change_pct": None,
    }


def test_the_report_and_compare_name_the_guarantee_and_older_results_read_as_at_least_once():
    from exchange.results.compare import comparison
    from exchange.results.report import run_meta

    assert "<span>guarantee <b>exactly-once</b></span>" in run_meta({"run": {"guarantee": "exactly-once"}})
    older, eos = {"run": {"run_id": "a"}}, {"run": {"run_id": "b", "guarantee": "exactly-once"}}
    (row,) = [r for section in comparison(older, eos) for r in section.rows if r.label == "delivery guarantee"]
    assert (row.a, row.b) == ("at-least-once", "exactly-once")


# On Apache Kafka: one node for the module -------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kafka(tmp_path_factory):
    if kafka_missing():
        pytest.skip(kafka_missing())
    async with KafkaBroker(log_path=tmp_path_factory.mktemp("kafka") / "broker.log") as b:
        yield b


async def uncommitted_redeliveries(bootstrap: str, topics: list[str], run_id: str) -> int:
    """Records of the run on ``topics`` that a ``read_uncommitted`` reader sees twice (aborted
    transactions' records are in the log; only ``read_committed`` skips them)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, isolation_level="read_uncommitted"
    )
    await consumer.start()
    seen: Counter = Counter()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                break
            for records in batches.values():
                for r in records:
                    h = dict(r.headers)
                    if h.get(H_RUN) == run_id.encode():
                        seen[(h[H_SUBSCRIPTION], h[H_TRACE])] += 1
    finally:
        await consumer.stop()
    return sum(n - 1 for n in seen.values())


@pytest.mark.kafka
@pytest.mark.asyncio(loop_scope="module")
async def test_exactly_once_survives_a_killed_router_with_no_duplicate(kafka, tmp_path):
    scenario = load("demo")
    await create_router_internal_topics(kafka.bootstrap, scenario)  # what a run that starts its own Kafka does
    # late enough that the first worker is routing (it can take seconds to get its partitions on a loaded machine)
    options = RunOptions(
        scenario,
        duration=16,
        out=tmp_path / "run",
        bootstrap=kafka.bootstrap,
        chaos="kill-router@12s",
        guarantee="exactly-once",
        drain_timeout=60,
        ready_timeout=180,
    )
    result, run_dir = await run(options)
    assert result.run.guarantee == "exactly-once" and "exactly-once" in result.driver
    assert result.conservation.ok and result.counts.unaccounted == 0, result.conservation.message
    (fault,) = result.faults
    assert fault.kind == "kill-router" and fault.injected_at_s is not None
    routed: dict[int, int] = {}
    for m in StatusReader(run_dir / "router-0.jsonl").read():
        if m.kind == "stats":
            routed[m.pid] = m.body.records
    killed, restarted = routed  # in start order
    assert routed[killed] > 0 and routed[restarted] > 0  # killed while routing, and routed on by its restart
    # before the subscribers' own dedupe: nothing arrived twice, on deliveries or the audit trail
    assert result.counts.duplicates == 0
    assert all(f.duplicates == 0 for f in result.flows.values())
    c = result.counts
    assert c.expected == c.delivered + c.denied + c.dead_lettered
    # the kill cut a transaction short: its records are in the log, and only read_committed keeps them out
    deliveries = sorted({Topics(scenario.platform.id).delivery(s.consumer) for s in scenario.subscriptions})
    aborted = await uncommitted_redeliveries(kafka.bootstrap, deliveries, result.run.run_id)
    print(f"records of aborted transactions a read_uncommitted reader would count twice: {aborted}")
