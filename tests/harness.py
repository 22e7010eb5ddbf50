"""Integration-test harness: a real broker and a real router worker process.

Nothing is mocked: the router is ``python -m exchange.router``, exactly as a run starts
it; records go in through Kafka and are read back from Kafka. The broker is the embedded
Tansu one or Apache Kafka (:func:`broker_kinds` parametrizes a test or fixture over both;
the Kafka cases skip, with the one-line reason, where Java or Kafka is missing).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from exchange.kafka import brokers, clients
from exchange.kafka.apache import KafkaUnavailable, locate
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.topics import create_router_internal_topics, create_topics, topic_plan
from exchange.runner.processes import spawn, terminate
from exchange.runner.status import StatusReader
from exchange.scenarios.loader import parse
from schemas.envelope import H_RUN, Topics, record_headers
from schemas.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in Path(f"/proc/{entry}/status").read_text().splitlines() if line.startswith("State:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
        if text in cmd and " Z" not in state:
            found.append(int(entry))
    return found


@cache
def kafka_missing() -> str | None:
    """Why Apache Kafka cannot run here (one line), or None."""
    try:
        locate()
    except KafkaUnavailable as exc:
        return str(exc)
    return None


def broker_kinds(*kinds: str) -> list:
    """pytest params for broker specs (default tansu and kafka); Kafka ones are marked
    ``kafka`` and skip with the reason where Java or Kafka is missing."""
    out = []
    for kind in kinds or ("tansu", "kafka"):
        if kind.startswith("kafka"):
            reason = kafka_missing()
            out.append(pytest.param(kind, id=kind, marks=[pytest.mark.kafka, pytest.mark.skipif(reason is not None, reason=reason or "")]))
        else:
            out.append(pytest.param(kind, id=kind))
    return out


@contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port this process holds (bound and listening) until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@asynccontextmanager
async def running_broker(spec: str, log_path: Path | None = None):
    """A started broker of the given spec (tansu, kafka, kafka:3), stopped on exit."""
    async with brokers.make(spec, log_path=log_path) as broker:
        yield broker


class RouterProcess:
    """A router worker for one scenario on a given broker, started like a run starts it.

    ``kind`` is the broker's kind: on Kafka the router long-polls as a run makes it; ``env``,
    variables added to the worker's environment. ``async with`` starts and stops it."""

    def __init__(
        self, scenario: Scenario, bootstrap: str, workdir: Path, worker: str = "0", kind: str = "tansu", env: dict[str, str] | None = None
    ) -> None:
        self.scenario = scenario
        self.kind = kind
        self.env = env
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.worker = worker
        self.topics = Topics.of(scenario)  # ingress topics as the scenario's layout names them
        self.proc: subprocess.Popen | None = None
        self.status_path = workdir / f"router-{worker}.jsonl"
        self.log_path = workdir / f"router-{worker}.log"

    async def start(self, timeout: float = 60.0) -> float:
        self.workdir.mkdir(parents=True, exist_ok=True)
        scenario_json = self.workdir / "scenario.json"
        scenario_json.write_text(self.scenario.model_dump_json())
        await create_topics(self.bootstrap, topic_plan(self.scenario))
        if self.kind == "kafka":
            await create_router_internal_topics(self.bootstrap, self.scenario)
        argv = [
            sys.executable,
            "-m",
            "exchange.router",
            "--scenario",
            str(scenario_json),
            "--bootstrap",
            self.bootstrap,
            "--status",
            str(self.status_path),
            "--worker",
            self.worker,
            "--datadir",
            str(self.workdir / f"data-{self.worker}"),
        ]
        if brokers.fetch_wait_ms(self.kind):
            argv += ["--fetch-wait-ms", str(brokers.fetch_wait_ms(self.kind))]
        started = time.monotonic()
        self.proc = spawn(argv, log_path=self.log_path, env={**os.environ, **self.env} if self.env else None)
        reader = StatusReader(self.status_path)
        while time.monotonic() - started < timeout:
            if any(m.kind == "ready" for m in reader.read()):
                return time.monotonic() - started
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError("router not ready")

    def stop(self) -> int | None:
        """SIGTERM the worker (SIGKILL after 5 s); its exit code."""
        return terminate(self.proc) if self.proc is not None else None

    async def __aenter__(self) -> RouterProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def router_on_embedded_broker(workdir: Path, scenario: Scenario | None = None, env: dict[str, str] | None = None) -> Iterator[RouterProcess]:
    """A started embedded broker and a ready router worker on it (default: the sharing
    scenario), for synchronous fixtures; both stopped when the block ends."""
    with EmbeddedBroker() as broker:
        router = RouterProcess(scenario or sharing_scenario(), broker.bootstrap, workdir, env=env)
        try:
            asyncio.run(router.start())
            yield router
        finally:
            router.stop()


def envelope(entry: str, source: str, trace: str, run: str) -> list[tuple[str, bytes]]:
    now = time.time_ns()
    return record_headers(trace.encode(), entry, source, now, now, run)


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None, list]]) -> None:
    producer = clients.producer("control", bootstrap, client_id="dx-test")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, *, run: str | None = None, until: int | None = None, timeout: float = 15.0, idle: float = 1.5):
    """Every record on a topic (of one run, when given), read until ``until`` records or an idle spell."""
    consumer = clients.consumer("topic_reader", bootstrap, client_id="dx-test")
    await consumer.start()
    out = []
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if run is None or dict(r.headers).get(H_RUN, b"").decode() == run or _dlq_run(r) == run:
                        out.append(r)
                        last_new = time.monotonic()
            if until is not None and len(out) >= until and time.monotonic() - last_new > 0.3:
                break
            if until is None and time.monotonic() - last_new > idle:
                break
    finally:
        await consumer.stop()
    return out


def _dlq_run(record) -> str | None:
    """The run id inside a dead letter (its original headers are kept base64-encoded)."""
    try:
        letter = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(letter, dict) or "headers" not in letter:
        return None
    import base64

    for k, v in letter["headers"]:
        if k == H_RUN:
            return base64.b64decode(v).decode(errors="replace")
    return None


def small_run(out: Path, scenario: str, *args: str) -> dict:
    """``exchange run SCENARIO`` for 4 s at a fifth of its rates, seed 5, into ``out``: its
    result.json, after asserting it exited 0 (the output's tail in the failure)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exchange", "run", scenario, "--duration", "4", "--rate-multiplier", "0.2", "--seed", "5", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return orjson.loads((out / "result.json").read_bytes())


def new_run() -> str:
    return "t" + secrets.token_hex(4)


SHARING_SCENARIO = """
name: sharing-rules
platform: {id: t1, name: 测试平台, level: municipal, region: "441900"}
departments:
  - {id: prov, name: 提供部门}
  - {id: a, name: 甲局}
  - {id: b, name: 乙局}
  - {id: c, name: 丙局}
catalogue:
  - id: open
    name: 无条件资源
    provider: prov
    sharing: 无条件共享
    partitions: 2
    items:
      - {key: person.id, name: 身份证号, type: resident_id, sensitivity: personal}
      - {key: person.name, name: 姓名, type: person_name, sensitivity: personal}
      - {key: person.status, name: 状态, type: status}
  - id: cond
    name: 有条件资源
    provider: prov
    sharing: 有条件共享
    partitions: 2
    items:
      - {key: enterprise.code, name: 信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name}
      - {key: enterprise.phone, name: 电话, type: phone, sensitivity: personal}
      - {key: enterprise.count, name: 人数, type: integer}
  - id: secret
    name: 不予共享资源
    provider: prov
    sharing: 不予共享
    partitions: 2
    items:
      - {key: person.id, name: 身份证号, type: resident_id, sensitivity: personal}
      - {key: person.name, name: 姓名, type: person_name, sensitivity: personal}
subscriptions:
  - {consumer: a, entry: open}
  - {consumer: a, entry: cond, purpose: 测试, items: [enterprise.code, enterprise.name], status: approved}
  - {consumer: b, entry: cond, purpose: 测试, status: pending}
  - {consumer: c, entry: secret, purpose: 测试}
  - {consumer: b, entry: secret, purpose: 测试}
"""


def sharing_scenario() -> Scenario:
    return parse(SHARING_SCENARIO, "sharing-rules.yaml")
