"""How the consumer workers read the delivery topics (``exchange run --subscriber-clients``,
consumers/shared.py): one shared Kafka consumer for a worker's departments (the default), or
one consumer and group per department. Either way each department counts, deduplicates,
measures, pauses and reports its own records; a run counts the same."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from consumers.dedupe import SeenSet
from consumers.process import _readers, _subscribers
from consumers.shared import SharedFetch, quiet_departments, shared_group
from consumers.subscriber import Subscriber
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.topics import create_topics
from exchange.runner.options import subscriber_clients
from exchange.runner.status import read_messages
from exchange.scenarios.loader import parse
from schemas.envelope import H_SUBSCRIPTION, Topics
from schemas.status import ConsumersReady

from .harness import ROOT, envelope, new_run, publish, small_run

THREE = """
name: three-readers
platform: {id: sc, name: 测试平台, region: "441900"}
departments:
  - {id: prov, name: 提供部门}
  - {id: a, name: 甲局}
  - {id: b, name: 乙局}
  - {id: slow, name: 慢速部门, consume_rate: 400}
catalogue:
  - id: gps
    name: 定位
    provider: prov
    sharing: 无条件共享
    partitions: 2
    items:
      - {key: vehicle.plate, name: 车牌, type: plate}
subscriptions:
  - {consumer: a, entry: gps}
  - {consumer: b, entry: gps}
  - {consumer: slow, entry: gps}
load:
  producers:
    - {department: prov, rate: 50}
"""


def _ready(run_dir: Path) -> ConsumersReady:
    return next(m.body for m in read_messages(run_dir / "consumers.jsonl") if m.kind == "ready")


def test_shared_and_per_department_clients_count_the_same_and_say_how_they_read(tmp_path):
    """Same scenario and seed: every flow's delivered and denied counts equal, conservation
    holds, no duplicates; the ready message and result.json say how the departments read.
    The default on the embedded broker (Tansu) is a consumer per department."""
    shared = small_run(tmp_path / "shared", "demo", "--subscriber-clients", "shared")
    own = small_run(tmp_path / "own", "demo")
    for result in (shared, own):
        assert result["conservation"]["ok"], result["conservation"]["message"]
        assert result["counts"]["duplicates"] == 0 and result["counts"]["produced"] > 0
    assert {n: (f["delivered"], f["denied"]) for n, f in shared["flows"].items()} == {
        n: (f["delivered"], f["denied"]) for n, f in own["flows"].items()
    }
    assert shared["counts"] == own["counts"]
    assert (shared["run"]["subscriber_clients"], own["run"]["subscriber_clients"]) == ("shared", "per-department")
    ready_shared, ready_own = _ready(tmp_path / "shared"), _ready(tmp_path / "own")
    assert ready_shared.subscribers == ready_own.subscribers > 1
    assert (ready_shared.clients, ready_own.clients) == (1, ready_own.subscribers)  # demo: nobody holds back its reads


@pytest.mark.parametrize(
    ("requested", "kind", "mode"),
    [
        ("auto", "tansu", "per-department"),
        ("auto", "kafka", "shared"),
        ("auto", None, "shared"),  # a consumers process started without --broker-kind
        ("shared", "tansu", "shared"),
        ("per-department", "kafka", "per-department"),
    ],
)
def test_auto_reads_per_department_on_tansu_and_shared_on_kafka(requested, kind, mode):
    assert subscriber_clients(requested, kind) == mode


async def test_a_department_that_holds_back_its_reads_keeps_a_client_of_its_own():
    """A consume rate (or a boundary gateway) paces one department's reads: it reads alone,
    the others share one client in the worker's group; per-department, everyone reads alone."""
    scenario = parse(THREE, "three.yaml")
    subs = _subscribers(scenario, "127.0.0.1:1", SeenSet(), None, "r", None, restartable=False)  # type: ignore[arg-type]
    readers = _readers(scenario, subs, "127.0.0.1:1", None, restartable=False, worker=3, workers=4)
    alone = [r for r in readers if isinstance(r, Subscriber)]
    shared = [r for r in readers if isinstance(r, SharedFetch)]
    assert [s.department for s in alone] == ["slow"] and len(shared) == 1
    assert sorted(s.department for s in subs if s.shared) == ["a", "b"]
    assert shared[0]._consumer._group_id == shared_group("sc", 3, 4) == "dx-sc-subscribers-3-of-4"
    own = _subscribers(scenario, "127.0.0.1:1", SeenSet(), None, "r", None, restartable=False, clients_per_department=True)  # type: ignore[arg-type]
    assert all(isinstance(r, Subscriber) for r in _readers(scenario, own, "127.0.0.1:1", None, restartable=False, worker=0))


async def _poll_until(fetch: SharedFetch, done, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await fetch.poll(100)


def _test_fetch(subs: list[Subscriber], bootstrap: str, run: str) -> SharedFetch:
    """One shared client for ``subs`` in a group of this test's own, with a short fetch wait."""
    return SharedFetch(
        subs,
        bootstrap=bootstrap,
        group=f"dx-test-{run}",
        fetch_wait_ms=10,
        auto_commit=True,
        session_timeout_ms=6000,
        isolation_level="read_uncommitted",
    )


def _delivered(s: Subscriber) -> int:
    return sum(f.delivered for f in s.flows.values())


async def test_one_shared_client_gives_each_department_its_own_records_and_pauses_one_alone():
    """On a real broker: two departments' delivery topics read by one client. Each counts only
    its own records; pausing one holds its records back (its lag shows them) while the other
    reads on; resumed, it gets every one of them, once."""
    run = new_run()
    topics = Topics("sc")
    with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, {topics.delivery("a"): 2, topics.delivery("b"): 2})
        seen = SeenSet()
        subs = [Subscriber(d, topics.delivery(d), broker.bootstrap, "unused", seen, run, shared=True) for d in ("a", "b")]
        fetch = _test_fetch(subs, broker.bootstrap, run)
        a, b = subs

        async def deliver(dept: str, first: int, n: int) -> None:
            await publish(
                broker.bootstrap,
                topics.delivery(dept),
                [
                    (None, b"{}", [*envelope("gps", "prov", f"9.{i}", run), (H_SUBSCRIPTION, f"gps->{dept}".encode())])
                    for i in range(first, first + n)
                ],
            )

        await fetch.start()
        try:
            await _poll_until(fetch, lambda: bool(fetch._consumer.assignment()))
            await asyncio.gather(deliver("a", 0, 40), deliver("b", 100, 30))
            await _poll_until(fetch, lambda: _delivered(a) == 40 and _delivered(b) == 30)
            assert (_delivered(a), _delivered(b)) == (40, 30)
            assert set(a.flows) == {"gps->a"} and set(b.flows) == {"gps->b"}

            b.paused = True
            await fetch.poll(50)  # the pause reaches the client
            await asyncio.gather(deliver("a", 40, 25), deliver("b", 130, 35))
            await _poll_until(fetch, lambda: _delivered(a) == 65)
            for _ in range(10):  # b's records are there; paused, it takes none of them
                await fetch.poll(50)
            assert (_delivered(a), _delivered(b)) == (65, 30)
            await b.refresh_lag()
            await a.refresh_lag()
            # Tansu answers ListOffsets with the last batch's base offset + 1: a lower bound
            assert b.lag_known and 0 < b.lag() <= 35 and a.lag() == 0
            # a rebalance hands out partitions unpaused: the listener pauses b's again
            consumer = fetch._consumer
            consumer.resume(*consumer.paused())
            await fetch._listener.on_partitions_assigned(consumer.assignment())
            assert consumer.paused() == {tp for tp in consumer.assignment() if tp.topic == b.topic} and len(consumer.paused()) == 2
            for _ in range(5):
                await fetch.poll(50)
            assert _delivered(b) == 30

            b.paused = False
            await _poll_until(fetch, lambda: _delivered(b) == 65)
            for _ in range(5):
                await fetch.poll(50)
            assert (_delivered(a), _delivered(b)) == (65, 65)
            assert sum(f.duplicates for s in subs for f in s.flows.values()) == 0
        finally:
            await fetch.stop()


def test_an_unknown_way_of_reading_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--subscriber-clients", "one-each", "--out", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "one-each" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


async def test_lag_of_a_department_reading_normally_costs_no_request_even_on_partitions_it_had_nothing_from():
    """On a real broker: a department whose partitions have had no record yet (most of
    Dongguan's towns, most of the time) gets its lag from the fetcher's high-water marks and
    its positions, with no ListOffsets request; a paused one asks the broker (its marks go
    stale while nothing is fetched), which shows the spy counts."""
    run = new_run()
    topics = Topics("sc")
    with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, {topics.delivery("a"): 2, topics.delivery("b"): 3})
        subs = [Subscriber(d, topics.delivery(d), broker.bootstrap, "unused", SeenSet(), run, shared=True) for d in ("a", "b")]
        fetch = _test_fetch(subs, broker.bootstrap, run)
        a, b = subs
        await fetch.start()
        try:
            await _poll_until(fetch, lambda: bool(fetch._consumer.assignment()))
            # one key: every record on one of a's two partitions; b gets nothing at all
            await publish(
                broker.bootstrap,
                topics.delivery("a"),
                [(b"one-key", b"{}", [*envelope("gps", "prov", f"9.{i}", run), (H_SUBSCRIPTION, b"gps->a")]) for i in range(20)],
            )
            await _poll_until(fetch, lambda: _delivered(a) == 20)
            consumer = fetch._consumer
            await _poll_until(fetch, lambda: all(consumer.highwater(tp) is not None for tp in consumer.assignment()))
            asked = []
            end_offsets = consumer.end_offsets

            async def spy(partitions):
                asked.append(sorted(tp.topic for tp in partitions))
                return await end_offsets(partitions)

            consumer.end_offsets = spy
            for s in subs:
                await s.refresh_lag()
            assert (a.lag_known, b.lag_known, a.lag(), b.lag()) == (True, True, 0, 0)
            assert asked == []
            b.paused = True
            await b.refresh_lag()
            assert asked == [[topics.delivery("b")] * 3] and b.lag_known and b.lag() == 0
        finally:
            await fetch.stop()


QUIET = """
name: quiet-readers
platform: {id: sq, name: 测试平台, region: "441900"}
departments:
  - {id: prov, name: 提供部门}
  - {id: reg, name: 登记部门}
  - {id: a, name: 甲局}
  - {id: b, name: 乙局}
  - {id: q, name: 只收日表的部门}
catalogue:
  - id: gps
    name: 定位
    provider: prov
    sharing: 无条件共享
    partitions: 2
    items:
      - {key: vehicle.plate, name: 车牌, type: plate}
  - id: licences
    name: 许可证日表
    provider: reg
    sharing: 无条件共享
    update_cycle: 每日
    items:
      - {key: enterprise.credit_code, name: 统一社会信用代码, type: credit_code}
subscriptions:
  - {consumer: a, entry: gps}
  - {consumer: a, entry: licences}
  - {consumer: b, entry: gps}
  - {consumer: q, entry: licences}
load:
  producers:
    - {department: prov, rate: 50}
    - {department: reg, rate: 1}
"""


async def test_departments_that_receive_only_quiet_entries_share_a_client_of_their_own_that_waits():
    """q subscribes only to a daily table (1 record/s): it reads in the worker's quiet client,
    whose fetches wait 500 ms and, on Kafka, for 1 MiB; a (a daily table and GPS) and b (GPS)
    read in the frequent one, whose fetches then name only their partitions."""
    scenario = parse(QUIET, "quiet.yaml")
    assert quiet_departments(scenario, ["a", "q", "prov"]) == {"q", "prov"}  # prov subscribes to nothing
    subs = _subscribers(scenario, "127.0.0.1:1", SeenSet(), None, "r", None, restartable=False)  # type: ignore[arg-type]
    readers = _readers(scenario, subs, "127.0.0.1:1", None, restartable=False, worker=0)
    assert all(isinstance(r, SharedFetch) for r in readers) and len(readers) == 2
    frequent, quiet = readers
    topics = Topics("sq")
    assert (sorted(frequent._by_topic), sorted(quiet._by_topic)) == ([topics.delivery("a"), topics.delivery("b")], [topics.delivery("q")])
    assert (frequent.quiet, quiet.quiet) == (False, True)
    assert (frequent._consumer._group_id, quiet._consumer._group_id) == ("dx-sq-subscribers-0-of-1", "dx-sq-subscribers-0-of-1-quiet")
    assert (quiet._consumer._fetch_max_wait_ms, quiet._consumer._fetch_min_bytes) == (500, 1024 * 1024)
    assert (frequent._consumer._fetch_max_wait_ms, frequent._consumer._fetch_min_bytes) == (10, 1)
    # while its long fetch is out, the quiet client's fetch routine wakes once a second, not five
    # times, to walk its partitions (clients.QUIET_WAKE_MS; aiokafka's default 200 ms for the other)
    assert (quiet._consumer._consumer_timeout, frequent._consumer._consumer_timeout) == (1.0, 0.2)
    # --quiet-fetch-wait-ms: its wait; 0, no quiet client (as no quiet lane in the routers)
    (_, slower) = _readers(scenario, subs, "127.0.0.1:1", None, restartable=False, worker=0, quiet_fetch_wait_ms=250)
    assert slower._consumer._fetch_max_wait_ms == 250
    (single,) = _readers(scenario, subs, "127.0.0.1:1", None, restartable=False, worker=0, quiet_fetch_wait_ms=0)
    assert sorted(single._by_topic) == [topics.delivery(d) for d in ("a", "b", "q")] and not single.quiet


def test_a_quiet_client_beside_the_frequent_one_counts_what_a_client_per_department_counts(tmp_path):
    path = tmp_path / "quiet.yaml"
    path.write_text(QUIET, encoding="utf-8")
    results = {}
    for mode in ("shared", "per-department"):
        out = tmp_path / mode
        proc = subprocess.run(
            [sys.executable, "-m", "exchange", "run", str(path), "--duration", "6", "--seed", "5", "--out", str(out), "--subscriber-clients", mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results[mode] = orjson.loads((out / "result.json").read_bytes())
    shared, own = results["shared"], results["per-department"]
    for result in (shared, own):
        assert result["conservation"]["ok"], result["conservation"]["message"]
        assert result["counts"]["duplicates"] == 0
    assert shared["flows"]["q.licences"]["delivered"] > 0
    assert shared["run"]["quiet_fetch_wait_ms"] == 500  # the default, recorded
    assert {n: (f["delivered"], f["denied"]) for n, f in shared["flows"].items()} == {
        n: (f["delivered"], f["denied"]) for n, f in own["flows"].items()
    }
    assert (_ready(tmp_path / "shared").clients, _ready(tmp_path / "per-department").clients) == (2, 3)
