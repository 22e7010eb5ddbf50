"""The router's quiet lane: daily, monthly and batch entries read by a second consumer with a
long fetch wait (exchange/router/lanes.py, exchange/router/quiet.py). The rule is unit-tested;
the lane runs on real brokers with a real Faust worker: a quiet entry's records, published while
the worker runs, are routed, audited, counted and committed like a real-time entry's, in order."""

from __future__ import annotations

import random

import orjson
import pytest
from aiokafka import TopicPartition

from exchange.kafka import clients
from exchange.router.app import group_id
from exchange.router.lanes import QUIET_MAX_RATE, entry_is_quiet, quiet_topics, split_ingress
from exchange.router.quiet import quiet_group_id
from exchange.runner.status import StatusReader
from exchange.scenarios.loader import load, parse
from producers.records import EntityPool, RecordFactory, regions_of
from schemas.envelope import H_RUN, H_TRACE, Topics
from schemas.envelope import audit_records as rows_of

from .harness import RouterProcess, broker_kinds, envelope, new_run, publish, read_all, running_broker

LANES = """
name: lanes
platform: {id: ql, name: 测试平台, level: municipal, region: "441900"}
departments:
  - {id: prov, name: 提供部门}
  - {id: a, name: 甲局}
load:
  producers:
    - {department: prov, rate: 3}
catalogue:
  - id: gps
    name: 实时定位
    provider: prov
    sharing: 无条件共享
    partitions: 2
    items: &items
      - {key: enterprise.code, name: 信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name}
  - {id: daily, name: 每日报表, provider: prov, sharing: 无条件共享, update_cycle: 每日, partitions: 2, items: *items}
  - {id: files, name: 批量文件, provider: prov, sharing: 无条件共享, exchange_mode: file, items: *items}
subscriptions:
  - {consumer: a, entry: gps}
  - {consumer: a, entry: daily}
  - {consumer: a, entry: files}
"""


def lanes_scenario(guarantee: str = "at-least-once"):
    return parse(LANES + f"guarantee: {guarantee}\n", "lanes.yaml")


# ------------------------------------------------------------------------- the rule


def test_slow_cycles_and_batch_modes_are_quiet_unless_the_load_is_busy():
    s = lanes_scenario()
    gps, daily, files = (s.entries[e] for e in ("gps", "daily", "files"))
    assert not entry_is_quiet(gps, 0.0)  # declared real-time: never quiet, however slow
    assert entry_is_quiet(daily, 0.0) and entry_is_quiet(daily, QUIET_MAX_RATE)
    assert entry_is_quiet(files, 0.5)  # a batch exchange mode, though its cycle is real-time
    assert not entry_is_quiet(daily, QUIET_MAX_RATE * 2)  # busy in this scenario: real-time whatever it declares


def test_a_shared_topic_is_quiet_only_if_every_entry_on_it_is():
    s = lanes_scenario()
    entries = list(s.catalogue)
    per_entry = quiet_topics(entries, {}, lambda e: e.id)
    assert per_entry == {"daily", "files"}
    shared = quiet_topics(entries, {}, lambda e: "one" if e.id in ("gps", "daily") else e.id)
    assert shared == {"files"}  # gps keeps the topic it shares with daily on the real-time lane
    assert quiet_topics(entries, {"daily": 5.0}, lambda e: e.id) == {"files"}


def test_dongguan_reads_its_daily_tables_quietly_and_its_streams_on_the_main_consumer():
    s = load("dongguan")
    topics = Topics(s.platform.id)
    realtime, quiet = split_ingress(s, sorted(s.live_entries), lambda e: topics.ingress(e.id))
    rates = s.entry_rates()
    assert len(quiet) >= 1300 and len(realtime) + len(quiet) == len(s.live_entries)
    by_topic = {topics.ingress(e): e for e in s.live_entries}
    assert max(rates.get(by_topic[t], 0) for t in quiet) <= QUIET_MAX_RATE
    assert max(rates[by_topic[t]] for t in realtime) > 1000  # the GPS stream


# --------------------------------------------------------------- on a real broker


def _records(scenario, entry: str, n: int, run: str):
    pool = EntityPool(5, regions_of(scenario.platform.region), people=50, enterprises=50, vehicles=5)
    factory = RecordFactory(scenario.entries[entry], pool, random.Random(entry))
    return [
        (key, orjson.dumps(value), envelope(entry, "prov", f"{entry}.{i:04d}", run))
        for i, (key, value) in enumerate(factory.make() for _ in range(n))
    ]


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    async with clients.started(clients.consumer("topic_reader", bootstrap, group_id=group), bootstrap, "reading offsets") as consumer:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum([await consumer.committed(tp) or 0 for tp in tps])


async def _read_committed(bootstrap: str, topic: str, run: str, until: int) -> list:
    """``read_all`` as an exactly-once subscriber reads: only committed transactions' records."""
    import asyncio
    import time

    async with clients.started(
        clients.consumer("topic_reader", bootstrap, client_id="dx-test", isolation_level="read_committed"), bootstrap, "reading"
    ) as consumer:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                out += [r for r in recs if dict(r.headers).get(H_RUN, b"").decode() == run]
            if len(out) >= until:
                await asyncio.sleep(1.0)  # anything more (a duplicate) would show now
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    out += [r for r in recs if dict(r.headers).get(H_RUN, b"").decode() == run]
                break
        return out


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", broker_kinds())
async def test_quiet_entries_are_routed_audited_counted_and_committed_like_real_time_ones(kind, tmp_path):
    """Records of a daily and a batch entry, published while the worker runs, reach the
    subscriber once and in order, with audit rows, in the worker's final count, and with
    their offsets committed by the quiet lane's group. On Kafka under exactly-once: the quiet
    lane's offsets ride the router's transactions, cut from the main group's."""
    guarantee = "exactly-once" if kind == "kafka" else "at-least-once"
    scenario = lanes_scenario(guarantee)
    group = group_id(scenario.platform.id)
    async with running_broker(kind, log_path=tmp_path / "broker.log") as broker:
        router = RouterProcess(scenario, broker.bootstrap, tmp_path, kind=broker.kind)
        await router.start()
        try:
            run = new_run()
            sent = {e: _records(scenario, e, n, run) for e, n in (("gps", 30), ("daily", 20), ("files", 10))}
            for part in (0, 1):  # interleaved: both lanes busy at once
                for entry, messages in sent.items():
                    half = len(messages) // 2
                    await publish(broker.bootstrap, router.topics.ingress(entry), messages[:half] if part == 0 else messages[half:])
            total = sum(len(m) for m in sent.values())
            if guarantee == "exactly-once":
                got = await _read_committed(broker.bootstrap, router.topics.delivery("a"), run, total)
            else:
                got = await read_all(broker.bootstrap, router.topics.delivery("a"), run=run, until=total, timeout=30)
            traces = [dict(r.headers)[H_TRACE].decode() for r in got]
            assert sorted(traces) == sorted(dict(h)[H_TRACE].decode() for m in sent.values() for _, _, h in m)  # each once
            for key in {r.key for r in got}:  # per key (one ingress partition), in the order published
                mine = [t for r, t in zip(got, traces, strict=True) if r.key == key]
                for entry in sent:
                    seq = [t for t in mine if t.startswith(f"{entry}.")]
                    assert seq == sorted(seq), (entry, seq)
            blocks = await read_all(broker.bootstrap, router.topics.audit, idle=1.5)
            audit = [row for b in blocks for row in rows_of(orjson.loads(b.value)) if row["run"] == run]
            delivered = {row["trace"] for row in audit if row["decision"] == "delivered"}
            assert delivered == set(traces)
        finally:
            code = router.stop()
        assert code == 0, router.log_path.read_text()[-3000:]
        final = [m.body for m in StatusReader(router.status_path).read() if m.kind == "final"]
        assert len(final) == 1 and final[0].records == total
        assert sum(d.n for d in final[0].decisions if d.decision == "delivered") == total
        for entry in ("daily", "files"):
            topic = router.topics.ingress(entry)
            assert await _committed(broker.bootstrap, quiet_group_id(group), topic) == len(sent[entry])
            assert await _committed(broker.bootstrap, group, topic) == 0  # never read by the main consumer
        assert await _committed(broker.bootstrap, group, router.topics.ingress("gps")) == len(sent["gps"])
