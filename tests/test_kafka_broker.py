"""exchange.kafka.apache: Apache Kafka's lifecycle, its settings, and a clear line when it is missing.

The same guarantees as tests/test_broker.py proves for Tansu: a real round trip, nothing
left after a stop, a failed start, an exception, Ctrl-C, or a SIGKILLed parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import TopicPartition

from exchange.kafka import apache as kafka_broker
from exchange.kafka import brokers, clients
from exchange.kafka.apache import KafkaBroker, KafkaUnavailable
from exchange.kafka.tansu import BrokerError
from exchange.kafka.topics import create_topics

from .harness import ROOT, busy_port, kafka_missing, pids_mentioning
from .test_broker import CHILD_ATEXIT_PROBE, alive, subreaper, wait_gone  # noqa: F401 - subreaper is a fixture


def jvms_of(python_pid: int) -> list[int]:
    """Kafka JVMs (brokers and storage tools) started by the Python process ``python_pid``."""
    return pids_mentioning(f"dx-kafka-{python_pid}-")


# Settings and where Kafka comes from (no JVM) ----------------------------------------------------
def test_settings_follow_cluster_env_capped_at_the_nodes():
    three, one = kafka_broker.broker_settings(3), kafka_broker.broker_settings(1)
    assert three["default.replication.factor"] == "3" and three["min.insync.replicas"] == "2"
    assert three["transaction.state.log.min.isr"] == "2" and three["offsets.topic.replication.factor"] == "3"
    assert one["default.replication.factor"] == "1" and one["min.insync.replicas"] == "1"
    assert one["offsets.topic.replication.factor"] == one["transaction.state.log.replication.factor"] == "1"
    for s in (one, three):
        assert s["auto.create.topics.enable"] == "false" and s["group.initial.rebalance.delay.ms"] == "0"
        assert int(s["group.min.session.timeout.ms"]) <= 2000  # the router's session (exchange/router/app.py)
    assert kafka_broker.env_to_property("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") == "listener.security.protocol.map"
    assert kafka_broker.env_to_property("KAFKA_A__B___C") == "a_b-c"


def test_cluster_ids_never_look_like_an_option(monkeypatch):
    ids = iter([b"\xf8" + bytes(15), bytes(16)])  # the first encodes to "-A…"
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: type("U", (), {"bytes": next(ids)})())
    cid = kafka_broker.new_cluster_id()
    assert cid == "AAAAAAAAAAAAAAAAAAAAAA" and len(cid) == 22


@pytest.mark.parametrize("spec, parsed", [("tansu", ("tansu", 1)), ("kafka", ("kafka", 1)), ("kafka:3", ("kafka", 3)), ("KAFKA:1", ("kafka", 1))])
def test_broker_specs(spec, parsed):
    assert brokers.parse(spec) == parsed


@pytest.mark.parametrize("spec", ["rabbit", "tansu:3", "kafka:0", "kafka:9", "kafka:x", ""])
def test_bad_broker_specs_say_what_is_accepted(spec):
    with pytest.raises(brokers.BrokerSpecError, match=r"tansu, kafka or kafka:NODES|1 to 5"):
        brokers.parse(spec)


def test_missing_java_is_one_line_with_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(KafkaUnavailable) as caught:
        kafka_broker.locate()
    message = str(caught.value)
    assert "\n" not in message and "Java 17" in message and "apt-get install openjdk-17" in message


def test_missing_kafka_is_one_line_naming_the_fetch_command(monkeypatch, tmp_path):
    if not kafka_broker.shutil.which("java"):
        pytest.skip("no java: the Java message comes first")
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(KafkaUnavailable, match=r"^Apache Kafka \S+ is not fetched yet .*`exchange kafka fetch`[^\n]*$"):
        kafka_broker.locate()
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    with pytest.raises(KafkaUnavailable, match=r"KAFKA_HOME=.* has no libs/kafka_2\.13-<version>\.jar"):
        kafka_broker.locate()


@pytest.mark.parametrize(
    "args", [["run", "demo", "--broker", "kafka"], ["bench", "--broker", "kafka", "--broker-floor"], ["broker", "--kind", "kafka"]]
)
def test_cli_without_java_prints_one_line_and_starts_nothing(args, tmp_path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-jdk")}
    done = subprocess.run(
        [sys.executable, "-m", "exchange", *args, *(["--out", str(tmp_path / "r")] if args[0] == "run" else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Java 17+" in lines[0], done.stderr
    assert not (tmp_path / "r").exists()


def test_cli_rejects_an_unknown_broker():
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--broker", "rabbit"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "expected tansu, kafka or kafka:NODES" in done.stderr


# One node, shared by the module's tests ------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kafka(tmp_path_factory):
    if kafka_missing():
        pytest.skip(kafka_missing())
    log = tmp_path_factory.mktemp("kafka") / "broker.log"
    async with KafkaBroker(log_path=log) as b:
        yield b


@pytest.mark.kafka
@pytest.mark.asyncio(loop_scope="module")
async def test_roundtrip_with_an_idempotent_producer(kafka):
    """What Tansu refuses: the idempotent producer (the basis of exactly-once)."""
    assert kafka.running and kafka.is_alive() and kafka.bootstrap == f"127.0.0.1:{kafka.port}"
    assert kafka.describe().startswith(f"Apache Kafka {kafka_broker.pinned_version()} (KRaft, 1 node")
    assert kafka.start_seconds is not None and kafka.start_seconds > 0
    await create_topics(kafka.bootstrap, {"roundtrip": 2}, replication_factor=kafka.replication_factor)
    producer = clients.producer("control", kafka.bootstrap, idempotent=True)
    await producer.start()
    try:
        await producer.send_and_wait("roundtrip", b"hello", key=b"k1", partition=1)
    finally:
        await producer.stop()
    consumer = clients.consumer("topic_reader", kafka.bootstrap, fetch_max_wait_ms=clients.KAFKA_FETCH_WAIT_MS)
    await consumer.start()
    try:
        tp = TopicPartition("roundtrip", 1)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        t0 = time.monotonic()
        msg = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k1", b"hello")
    assert time.monotonic() - t0 < 5
    assert "Kafka Server started" in "\n".join(Path(kafka.log_path).read_text(errors="replace").splitlines()[-400:])


@pytest.mark.kafka
@pytest.mark.asyncio(loop_scope="module")
async def test_an_existing_cluster_is_told_apart_from_tansu(kafka):
    """``--bootstrap``: the run asks the cluster what it is (for its fetch waits and replication)."""
    from exchange.kafka.tansu import EmbeddedBroker

    found = await brokers.describe(kafka.bootstrap)
    assert (found.kind, found.brokers, found.replication_factor) == ("kafka", 1, 1)
    assert found.cluster_id and not found.cluster_id.startswith("tansu")
    with EmbeddedBroker() as tansu:
        assert (await brokers.describe(tansu.bootstrap)).kind == "tansu"


@pytest.mark.kafka
@pytest.mark.asyncio(loop_scope="module")
async def test_long_poll_answers_as_soon_as_data_arrives(kafka):
    """A 2 s fetch wait does not delay a record: Kafka answers when fetch_min_bytes (1) is there."""
    await create_topics(kafka.bootstrap, {"longpoll": 1})
    consumer = clients.consumer("topic_reader", kafka.bootstrap, fetch_max_wait_ms=2000)
    producer = clients.producer("control", kafka.bootstrap, acks=1)
    await consumer.start()
    await producer.start()
    try:
        tp = TopicPartition("longpoll", 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await asyncio.sleep(2.5)  # the consumer now sits in a long poll on an empty partition
        latencies = []
        for i in range(5):
            sent = time.monotonic()
            await producer.send_and_wait("longpoll", b"%d" % i)
            await asyncio.wait_for(consumer.getone(), 10)
            latencies.append(time.monotonic() - sent)
            await asyncio.sleep(0.3)
    finally:
        await producer.stop()
        await consumer.stop()
    assert sorted(latencies)[2] < 1.0, latencies  # median far below the 2 s wait


# Lifecycle: nothing is left behind -----------------------------------------------------------------
def spawn_child(body: str, prelude: str = "", **kw) -> tuple[subprocess.Popen, list[int]]:
    """A Python child that starts Kafka and prints its JVM pids; returns (child, pids)."""
    code = "import atexit, os, sys, time\nfrom exchange.kafka.apache import KafkaBroker\n" + textwrap.dedent(prelude) + textwrap.dedent(body)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    line = child.stdout.readline()
    if not line.strip():
        child.kill()
        pytest.fail(f"child did not report broker pids: {child.communicate()[1][-2000:]}")
    return child, [int(p) for p in line.split()]


@pytest.mark.kafka
def test_a_failed_start_raises_and_leaves_no_jvm(tmp_path):
    if kafka_missing():
        pytest.skip(kafka_missing())
    before = set(jvms_of(os.getpid()))  # the module's shared broker may be running
    b = KafkaBroker(log_path=tmp_path / "b.log", heap_mb=1)  # -Xmx1m below -Xms64m: the JVM refuses to start
    with pytest.raises(BrokerError, match=r"(?s)formatting Kafka storage of node 1 failed.*heap"):
        b.start()
    assert not b.running and b.pid is None
    assert set(jvms_of(os.getpid())) <= before
    data_dirs = list(Path(kafka_broker.tempfile.gettempdir()).glob(f"dx-kafka-{os.getpid()}-*"))
    assert len(data_dirs) <= len(before), f"data dir left behind: {data_dirs}"


@pytest.mark.kafka
def test_an_explicit_busy_port_names_the_port():
    if kafka_missing():
        pytest.skip(kafka_missing())
    before = set(jvms_of(os.getpid()))
    with busy_port() as port, pytest.raises(BrokerError, match=str(port)):
        KafkaBroker(port=port).start()
    assert set(jvms_of(os.getpid())) <= before


@pytest.mark.kafka
def test_jvm_dies_with_its_sigkilled_parent(subreaper):  # noqa: F811 - the fixture
    if kafka_missing():
        pytest.skip(kafka_missing())
    child, pids = spawn_child("""
        b = KafkaBroker().start()
        print(*b.pids, flush=True)
        time.sleep(120)
    """)
    assert all(alive(p) for p in pids)
    child.kill()
    child.wait()
    assert all(wait_gone(p, 10.0) for p in pids), "a Kafka JVM outlived its SIGKILLed parent"
    for p in pids:
        os.waitpid(p, 0)  # adopted zombies


@pytest.mark.kafka
def test_sigint_in_with_block_stops_every_jvm():
    if kafka_missing():
        pytest.skip(kafka_missing())
    child, pids = spawn_child(
        prelude=CHILD_ATEXIT_PROBE,
        body="""
        with KafkaBroker() as b:
            state["pid"] = b.pid
            print(*b.pids, flush=True)
            time.sleep(120)
    """,
        start_new_session=True,
    )
    os.killpg(child.pid, signal.SIGINT)  # a terminal's Ctrl-C: the JVM is in its own session, only Python gets it
    out, err = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert "broker-alive-at-exit False" in out
    assert all(wait_gone(p, 1.0) for p in pids)
    assert not jvms_of(child.pid)


@pytest.mark.kafka
def test_uncaught_exception_stops_the_jvm_via_atexit():
    if kafka_missing():
        pytest.skip(kafka_missing())
    child, pids = spawn_child(
        prelude=CHILD_ATEXIT_PROBE,
        body="""
        b = KafkaBroker().start()
        state["pid"] = b.pid
        print(*b.pids, flush=True)
        raise RuntimeError("boom")
    """,
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1 and "boom" in err
    assert "broker-alive-at-exit False" in out
    assert all(wait_gone(p, 1.0) for p in pids)


@pytest.mark.kafka
def test_ctrl_c_while_kafka_starts_leaves_no_jvm(tmp_path):
    """The hardest moment: storage being formatted or the JVM booting when Ctrl-C comes."""
    if kafka_missing():
        pytest.skip(kafka_missing())
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "run", "demo", "--broker", "kafka", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not jvms_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jvms_of(proc.pid), "no JVM started"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not jvms_of(proc.pid)


# Three nodes -------------------------------------------------------------------------------------------
@pytest.mark.kafka
async def test_three_nodes_replicate_and_enforce_min_isr(tmp_path):
    if kafka_missing():
        pytest.skip(kafka_missing())
    async with KafkaBroker(nodes=3, log_path=tmp_path / "broker.log") as b:
        assert len(b.pids) == 3 and len(b.bootstrap.split(",")) == 3 and b.replication_factor == 3
        assert "3 nodes, RF 3, min ISR 2" in b.describe()
        assert all((tmp_path / f"broker-{n}.log").exists() for n in (1, 2, 3))
        await create_topics(b.bootstrap, {"replicated": 3}, replication_factor=b.replication_factor)
        admin = clients.admin("topology", b.bootstrap)
        await admin.start()
        try:  # each node's metadata cache learns of the topic on its own: ask until the one asked knows it
            for _ in range(100):
                [topic] = await admin.describe_topics(["replicated"])
                if len(topic["partitions"]) == 3:
                    break
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        assert sorted(len(p["replicas"]) for p in topic["partitions"]) == [3, 3, 3]
        assert {p["leader"] for p in topic["partitions"]} == {1, 2, 3}  # leaders spread over the nodes
        producer = clients.producer("control", b.bootstrap, idempotent=True)
        await producer.start()
        try:
            meta = await producer.send_and_wait("replicated", b"x")
        finally:
            await producer.stop()
        assert meta.offset == 0
        pids = b.pids
    assert not b.running and all(wait_gone(p, 1.0) for p in pids)


def test_router_internal_topics_are_named_as_the_routers_faust_app_names_them(tmp_path):
    """Created up front on Kafka (exchange/kafka/topics.py), they must be the very topics Faust uses."""
    from exchange.kafka.topics import router_internal_topics
    from exchange.router.app import Router
    from exchange.runner.status import StatusWriter
    from exchange.scenarios.loader import load

    scenario = load("guizhou-cascade")
    planned = router_internal_topics(scenario)
    for hub in scenario.hubs_in_use[:2]:
        router = Router(scenario, "127.0.0.1:1", "0", StatusWriter(None), tmp_path / hub, platform=hub)
        for table in (router.approvals_table, router.authority_table):
            name = table.changelog_topic.get_topic_name()
            assert planned[name][0] == table.partitions and planned[name][1] == {"cleanup.policy": "compact"}
        assert f"{router.app.conf.id}-__assignor-__leader" in planned


@pytest.mark.kafka
def test_exchange_broker_kind_kafka_runs_in_the_foreground_until_ctrl_c(tmp_path):
    if kafka_missing():
        pytest.skip(kafka_missing())
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "broker", "--kind", "kafka", "--log", str(tmp_path / "b.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        bootstrap = proc.stdout.readline().strip()
        host, port = bootstrap.split(":")
        assert kafka_broker.metadata_brokers(host, int(port)) == 1
        assert jvms_of(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Apache Kafka" in err and "Traceback" not in err
    assert not jvms_of(proc.pid)
    assert "Kafka Server started" in (tmp_path / "b.log").read_text(errors="replace")


@pytest.mark.kafka
def test_a_kafka_broker_dying_fails_the_run_naming_kafka(tmp_path):
    if kafka_missing():
        pytest.skip(kafka_missing())
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "run", "demo", "--broker", "kafka", "--duration", "30", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (out / "producers.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        [jvm] = jvms_of(proc.pid)
        os.kill(jvm, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "Apache Kafka" in err and "a node died" in err and "memory" not in err.split("a node died")[1].splitlines()[0]
    assert not jvms_of(proc.pid)
