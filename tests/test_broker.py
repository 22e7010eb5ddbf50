"""Real-broker tests for exchange.kafka.tansu: lifecycle, Kafka round-trip, and no-orphan guarantees."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange.kafka import tansu as broker_mod
from exchange.kafka.tansu import BrokerError, EmbeddedBroker, free_port

from .harness import busy_port

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """Exists and is not a zombie (an unreaped dead child still has a /proc entry)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def spawn_child(body: str, prelude: str = "", **kw) -> tuple[subprocess.Popen, int]:
    """Run a Python child that starts a broker and prints its pid; return (child, broker pid)."""
    code = "import atexit, os, sys, time\nfrom exchange.kafka.tansu import EmbeddedBroker\n" + textwrap.dedent(prelude) + textwrap.dedent(body)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        pytest.fail(f"child did not report a broker pid: {line!r} {child.communicate()[1]}")
    return child, int(line)


# Child-side check that runs after every other atexit hook (atexit is LIFO): proves the
# broker was stopped by *our* cleanup, not merely by PDEATHSIG once the child exits.
CHILD_ATEXIT_PROBE = """
state = {}
def report():
    pid = state.get("pid")
    print("broker-alive-at-exit", pid is not None and os.path.exists(f"/proc/{pid}")
          and "State:\\tZ" not in open(f"/proc/{pid}/status").read(), flush=True)
atexit.register(report)
"""


async def test_roundtrip_through_real_kafka_clients(tmp_path):
    async with EmbeddedBroker(log_path=tmp_path / "broker.log") as b:
        assert b.running and b.is_alive()
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        admin = AIOKafkaAdminClient(bootstrap_servers=b.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("roundtrip", num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=b.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("roundtrip", b"hello", key=b"k1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition("roundtrip", 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            msg = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
        assert (msg.key, msg.value) == (b"k1", b"hello")
        pid = b.pid
    assert not b.running and b.pid is None
    assert wait_gone(pid, 0.5)
    assert "listening on" in b.tail_log()


def test_sync_context_manager_and_idempotent_stop():
    EmbeddedBroker().stop()  # never started: no-op
    with EmbeddedBroker() as b:
        pid = b.pid
        assert alive(pid) and b.is_alive()
    assert not alive(pid)  # stop() waited for (and reaped) it
    b.stop()
    b.stop(timeout=0.1)
    assert not b.running and not b.is_alive()


def test_started_from_short_lived_thread_survives_it():
    """PDEATHSIG is per forking thread: a worker thread exiting must not kill the broker."""
    b = EmbeddedBroker()
    t = threading.Thread(target=b.start)
    t.start()
    t.join()
    try:
        time.sleep(0.2)
        assert b.is_alive()
    finally:
        b.stop()


def test_explicit_busy_port_raises_naming_port():
    with busy_port() as port, pytest.raises(BrokerError, match=str(port)):
        EmbeddedBroker(port=port).start()


def test_explicit_port_lost_race_reports_port(monkeypatch, tmp_path):
    """Port taken after our pre-check: Tansu itself fails to bind (and exits 0!)."""
    monkeypatch.setattr(broker_mod, "_port_busy", lambda h, p: False)
    with busy_port() as port, pytest.raises(BrokerError, match=f"(?s){port}.*(AddrInUse|Address in use)"):
        EmbeddedBroker(port=port, log_path=tmp_path / "b.log").start()
    assert "tansu" not in subprocess.run(["pgrep", "-af", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout


def test_auto_port_retries_when_port_was_grabbed(monkeypatch):
    with busy_port() as taken:
        ports = iter([taken, taken])
        real = broker_mod.free_port
        monkeypatch.setattr(broker_mod, "free_port", lambda host: next(ports, None) or real(host))
        monkeypatch.setattr(broker_mod, "_port_busy", lambda h, p: False)  # only consulted for messages
        with EmbeddedBroker() as b:
            assert b.port != taken and b.is_alive()


def test_early_exit_and_timeout_raise_and_leave_nothing(tmp_path):
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\necho kaboom\nexit 3\n")
    crash.chmod(0o755)
    with pytest.raises(BrokerError, match=r"(?s)code 3.*kaboom"):
        EmbeddedBroker(binary=str(crash), log_path=tmp_path / "c.log").start()

    hang = tmp_path / "hang.sh"
    hang.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/hang.pid\nexec sleep 30\n")
    hang.chmod(0o755)
    b = EmbeddedBroker(binary=str(hang), ready_timeout=0.3)
    with pytest.raises(BrokerError, match="not ready"):
        b.start()
    assert b.pid is None and not b.running
    assert not alive(int((tmp_path / "hang.pid").read_text()))


@pytest.fixture
def subreaper():
    """Adopt orphaned grandchildren so we can reap them: PID 1 in a container may never
    reap, which would leave a (dead) <defunct> tansu entry behind after the test."""
    if not sys.platform.startswith("linux"):
        yield
        return
    import ctypes

    prctl = ctypes.CDLL(None).prctl
    prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    try:
        yield
    finally:
        prctl(36, 0)


def test_broker_dies_with_sigkilled_parent(subreaper):
    child, bpid = spawn_child("""
        b = EmbeddedBroker().start()
        print(b.pid, flush=True)
        time.sleep(60)
    """)
    assert alive(bpid)
    child.kill()
    child.wait()
    assert wait_gone(bpid, 3.0), "broker outlived its SIGKILLed parent"
    if sys.platform.startswith("linux"):
        _, status = os.waitpid(bpid, 0)  # it is our (adopted) zombie now
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_uncaught_exception_stops_broker_via_atexit():
    child, bpid = spawn_child(
        prelude=CHILD_ATEXIT_PROBE,
        body="""
        b = EmbeddedBroker().start()
        state["pid"] = b.pid
        print(b.pid, flush=True)
        raise RuntimeError("boom")
    """,
    )
    out, err = child.communicate(timeout=10)
    assert child.returncode == 1 and "boom" in err
    assert "broker-alive-at-exit False" in out
    assert wait_gone(bpid, 1.0)


def test_sigint_in_with_block_stops_broker():
    child, bpid = spawn_child(
        prelude=CHILD_ATEXIT_PROBE,
        body="""
        with EmbeddedBroker() as b:
            state["pid"] = b.pid
            print(b.pid, flush=True)
            time.sleep(60)
    """,
        start_new_session=True,
    )
    os.killpg(child.pid, signal.SIGINT)  # what a terminal Ctrl-C does to the foreground group
    out, err = child.communicate(timeout=10)
    assert "KeyboardInterrupt" in err
    assert "broker-alive-at-exit False" in out
    assert wait_gone(bpid, 1.0)


async def test_watch_reports_unexpected_death():
    b = await EmbeddedBroker().astart()
    try:
        deaths: list[int] = []
        task = asyncio.create_task(b.watch(deaths.append, interval=0.02))
        await asyncio.sleep(0.05)
        assert not task.done()
        os.kill(b.pid, signal.SIGKILL)
        await asyncio.wait_for(task, 3)
        assert deaths == [-signal.SIGKILL]
    finally:
        await b.astop()


async def test_watch_is_quiet_after_stop_and_wait_ready():
    b = EmbeddedBroker(port=free_port())
    await b.astart()
    await b.wait_ready()
    deaths: list[int] = []
    task = asyncio.create_task(b.watch(deaths.append, interval=0.02))
    await asyncio.sleep(0.05)
    await b.astop()
    await asyncio.wait_for(task, 3)
    assert deaths == []
    with pytest.raises(BrokerError):
        await b.wait_ready()
