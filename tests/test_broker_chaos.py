"""Faults only a cluster can have: ``--chaos kill-broker`` and ``pause-broker:NODE`` on ``kafka:3``.

One three-node Apache Kafka cluster (RF 3, min ISR 2) serves the whole module: each test
is a real run (``exchange.runner.controller.run``) on it, with real router, producer and
consumer processes, and the fault is a real SIGKILL or SIGSTOP of one broker JVM. With
``acks=all`` everywhere, nothing produced may be lost: every run must pass the
conservation check, and the fault must be in the result with its recovery time. The
refusals (Tansu, one Kafka node, ``--bootstrap``) are checked without a cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from exchange.kafka.apache import KafkaBroker
from exchange.kafka.timesync import MIN_SAMPLES, ClockServer, clock_topic, measure_offset
from exchange.kafka.topics import ingress_topics
from exchange.runner.controller import RunOptions, run
from exchange.runner.status import read_messages
from exchange.scenarios.loader import load
from schemas.clock import ClockOffset
from schemas.results import Result

from .harness import ROOT, kafka_missing, pids_mentioning


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if kafka_missing():
        pytest.skip(kafka_missing())
    broker = KafkaBroker(nodes=3, log_path=tmp_path_factory.mktemp("cluster") / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        assert not pids_mentioning(f"dx-kafka-{os.getpid()}-"), "a Kafka JVM outlived the module"


def cluster_run(tmp_path, cluster: KafkaBroker, spec: str, duration: float = 14, rate_multiplier: float = 0.2) -> Result:
    for node in sorted(cluster.down):  # a test that left a node down: the next one starts whole
        cluster.restart_node(node)
    asyncio.run(cluster.wait_ready())
    options = RunOptions(
        load("demo"),
        duration=duration,
        out=tmp_path / "run",
        rate_multiplier=rate_multiplier,
        chaos=spec,
        drain_timeout=60,
        broker="kafka:3",
        broker_instance=cluster,
    )
    result, run_dir = asyncio.run(run(options))
    assert result.conservation.ok, result.conservation.message  # acks=all, RF 3, min ISR 2: nothing lost
    c = result.counts
    assert c.unaccounted == 0 and c.expected == c.delivered + c.denied + c.dead_lettered
    assert "3 nodes, RF 3, min ISR 2" in (result.run.broker or "")
    assert cluster.running  # the run leaves the caller's cluster running
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert [f["spec"] for f in on_disk["faults"]] == spec.split(",")
    return result


@pytest.mark.kafka
def test_the_busiest_broker_killed_and_restarted_loses_nothing(tmp_path, cluster):
    ingress = ingress_topics(load("demo"))
    result = cluster_run(tmp_path, cluster, "kill-broker@4s+restart")
    (fault,) = result.faults
    assert fault.kind == "kill-broker" and fault.target is None and fault.node in (1, 2, 3)
    assert fault.node_chosen is not None and fault.node_chosen.startswith("leads ")
    assert fault.recovered_after_s is not None and fault.recovered_after_s >= fault.lag_recovered_after_s
    actions = [json.loads(line).get("action") for line in (tmp_path / "run" / "chaos.jsonl").read_text().splitlines()]
    assert f"broker node {fault.node} restarted on its storage" in " ".join(a for a in actions if a)
    # the node is back, as a follower: its leaderships moved to the others and stay there
    # until Kafka's preferred-leader check (every 300 s) hands them back
    assert not cluster.down and len(cluster.pids) == 3
    leaders = cluster.partition_leaders(ingress)
    assert leaders and set(leaders.values()) <= {1, 2, 3}
    led = sum(1 for leader in leaders.values() if leader == fault.node)
    assert led < int(fault.node_chosen.split()[1]), (fault.node_chosen, leaders)


@pytest.mark.kafka
def test_a_paused_broker_node_stalls_its_partitions_and_loses_nothing(tmp_path, cluster):
    result = cluster_run(tmp_path, cluster, "pause-broker:2@4s+4s")
    (fault,) = result.faults
    assert fault.kind == "pause-broker" and fault.target == "2" and fault.node == 2 and fault.node_chosen is None
    assert fault.recovered_after_s is not None
    actions = [json.loads(line).get("action") for line in (tmp_path / "run" / "chaos.jsonl").read_text().splitlines()]
    assert [a.split(" (")[0] for a in actions if a] == ["broker node 2 stopped", "broker node 2 resumed"]
    assert cluster.node_pid(2) is not None and cluster.running
    with open(f"/proc/{cluster.node_pid(2)}/status") as f:
        assert next(line for line in f if line.startswith("State:")).split()[1] != "T"  # continued


@pytest.mark.kafka
def test_a_router_restarted_while_a_node_is_down_for_good_starts_and_nothing_is_lost(tmp_path, cluster):
    """Two nodes of three still make min ISR 2. The restarted worker must not ask the dead node
    for anything it cannot retry: Faust would send CreateTopics for its own topics to the
    metadata's controller (a dead node there) and exit; on Kafka they exist already."""
    result = cluster_run(tmp_path, cluster, "kill-broker:3@4s,kill-router:0@5s")
    broker, router = result.faults
    assert broker.node == 3 and broker.recovered_after_s is not None and router.recovered_after_s is not None
    assert cluster.down == {3} and cluster.node_pid(3) is None
    assert len({m.sender.pid for m in read_messages(tmp_path / "run" / "router-0.jsonl")}) == 2  # two incarnations


@pytest.mark.kafka
def test_a_worker_started_while_the_clock_topics_leader_is_dead_measures_once_the_leadership_moves(cluster):
    """What the restarted router of the test above needs: the clock topic's one partition led by
    a node killed the moment before. Kafka keeps the dead node as its leader until the node's
    session times out (9 s): the controller's 3 s to answer count from the first probe the
    broker took, not from the start (that failed: 0 of 32 answered)."""

    async def measure() -> tuple[int, float, ClockOffset, int]:
        for node in sorted(cluster.down):
            cluster.restart_node(node)
        await cluster.wait_ready()
        topic = clock_topic(f"leaderless-{os.getpid()}")
        async with ClockServer(bootstrap=cluster.bootstrap, topic=topic, replication_factor=3, broker_kind="kafka"):
            dead = cluster.partition_leaders([topic])[(topic, 0)]
            cluster.kill_node(dead)
            started = time.monotonic()
            got = await measure_offset(bootstrap=cluster.bootstrap, topic=topic, worker="restarted", timeout_s=3.0)
            return dead, time.monotonic() - started, got, cluster.partition_leaders([topic])[(topic, 0)]

    dead, took, got, leader = asyncio.run(measure())
    assert got.samples >= MIN_SAMPLES and abs(got.offset_ns) <= got.error_ns + 20_000_000, got
    assert leader != dead and took > 3.0, (dead, leader, took)  # it waited for the leadership to move


def test_broker_node_faults_are_refused_on_tansu_before_anything_starts(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--duration", "5", "--out", str(tmp_path / "x"), "--chaos", "kill-broker@2s+restart"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "'kill-broker@2s+restart': kill-broker needs a Kafka cluster (--broker kafka:3), not the embedded Tansu broker" in lines[0]
    assert not (tmp_path / "x").exists()
