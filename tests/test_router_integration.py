"""The router on a real broker (the embedded Tansu one and Apache Kafka) and a real Faust
worker: sharing rules and bad input. Every test runs on both brokers, one broker per module each."""

from __future__ import annotations

import base64
import random

import orjson
import pytest
import pytest_asyncio

from producers.records import EntityPool, RecordFactory, regions_of
from schemas.envelope import H_SUBSCRIPTION, H_TRACE
from schemas.envelope import audit_records as rows_of

from .harness import RouterProcess, broker_kinds, envelope, new_run, publish, read_all, running_broker, sharing_scenario

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def exchange(request, tmp_path_factory):
    """One broker and one router for the module's tests (each test uses its own run id), per broker kind."""
    scenario = sharing_scenario()
    workdir = tmp_path_factory.mktemp(f"router-{request.param}")
    async with running_broker(request.param, log_path=workdir / "broker.log") as broker:
        router = RouterProcess(scenario, broker.bootstrap, workdir, kind=broker.kind)
        ready = await router.start()
        router.ready_seconds = ready
        try:
            yield router
        finally:
            router.stop()


def records_for(entry_id: str, n: int, seed: int = 3):
    scenario = sharing_scenario()
    pool = EntityPool(seed, regions_of(scenario.platform.region), people=200, enterprises=50, vehicles=10)
    factory = RecordFactory(scenario.entries[entry_id], pool, random.Random(seed))
    return [factory.make() for _ in range(n)]


async def produce(exchange, entry: str, n: int, run: str, source: str = "prov"):
    messages = [(key, orjson.dumps(value), envelope(entry, source, f"1.{i + 1}", run)) for i, (key, value) in enumerate(records_for(entry, n))]
    await publish(exchange.bootstrap, exchange.topics.ingress(entry), messages)
    return messages


def subscription_of(record) -> str:
    return dict(record.headers)[H_SUBSCRIPTION].decode()


async def test_worker_ready_in_seconds(exchange):
    assert exchange.ready_seconds < 10, f"router took {exchange.ready_seconds:.1f} s to join its group"


async def test_unconditional_entry_reaches_its_subscriber_masked(exchange):
    run = new_run()
    sent = await produce(exchange, "open", 40, run)
    got = await read_all(exchange.bootstrap, exchange.topics.delivery("a"), run=run, until=40)
    assert sorted(subscription_of(r) for r in got) == ["a.open"] * 40
    originals = {dict(h)[H_TRACE]: orjson.loads(v) for _, v, h in sent}
    for r in got:
        value = orjson.loads(r.value)
        original = originals[dict(r.headers)[H_TRACE]]
        assert value["person.status"] == original["person.status"]
        assert value["person.id"] != original["person.id"]  # personal items are masked by default
        assert value["person.id"][:6] == original["person.id"][:6] and value["person.id"][-4:] == original["person.id"][-4:]
        assert value["person.name"].startswith(original["person.name"][0]) and "*" in value["person.name"]


async def test_conditional_entry_delivers_only_approved_items_and_nothing_without_approval(exchange):
    run = new_run()
    await produce(exchange, "cond", 30, run)
    to_a = await read_all(exchange.bootstrap, exchange.topics.delivery("a"), run=run, until=30)
    assert len(to_a) == 30
    for r in to_a:
        assert subscription_of(r) == "a.cond"
        assert set(orjson.loads(r.value)) == {"enterprise.code", "enterprise.name"}  # not phone, not count
    to_b = await read_all(exchange.bootstrap, exchange.topics.delivery("b"), run=run, idle=2.0)
    assert [subscription_of(r) for r in to_b if subscription_of(r) == "b.cond"] == []  # pending: nothing
    audit = await audit_records(exchange, run)
    denied = [a for a in audit if a["subscription"] == "b.cond"]
    assert len(denied) == 30 and {a["reason"] for a in denied} == {"not_approved"}


async def test_not_shared_entry_never_reaches_any_delivery_topic(exchange):
    run = new_run()
    await produce(exchange, "secret", 25, run)
    for dept in ("a", "b", "c"):
        got = await read_all(exchange.bootstrap, exchange.topics.delivery(dept), run=run, idle=1.5)
        assert got == [], f"a not-shared record reached {dept}"
    audit = await audit_records(exchange, run)
    assert len(audit) == 50  # two subscriptions name it, each denied
    assert {(a["subscription"], a["decision"], a["reason"]) for a in audit} == {
        ("c.secret", "denied", "not_shared"),
        ("b.secret", "denied", "not_shared"),
    }


async def test_a_department_cannot_publish_into_another_departments_entry(exchange):
    run = new_run()
    await produce(exchange, "open", 10, run, source="b")
    assert await read_all(exchange.bootstrap, exchange.topics.delivery("a"), run=run, idle=1.5) == []
    audit = await audit_records(exchange, run)
    assert len(audit) == 10 and {a["reason"] for a in audit} == {"not_provider"}


async def audit_records(exchange, run: str) -> list[dict]:
    blocks = await read_all(exchange.bootstrap, exchange.topics.audit, idle=1.5)
    out = []
    for b in blocks:
        for a in rows_of(orjson.loads(b.value)):
            if a["run"] != run:
                continue
            # one row may record one rule denying the record to several subscriptions
            subs = a["subscription"] if isinstance(a["subscription"], list) else [a["subscription"]]
            out.extend({**a, "subscription": s} for s in subs)
    return out


BAD_INPUTS = {
    "bad_json": lambda run, env: (b"k", b"{not json", env()),
    "invalid_utf8": lambda run, env: (b"k", b'{"person.status": "\xff\xfe"}', env()),
    "not_an_object": lambda run, env: (b"k", b"[1, 2, 3]", env()),
    "wrong_type": lambda run, env: (b"k", b'{"person.status": 42}', env()),
    "unknown_item": lambda run, env: (b"k", b'{"person.salary": "1"}', env()),
    "missing_header": lambda run, env: (b"k", b"{}", [h for h in env() if h[0] != "source-dept"]),
    "duplicate_header": lambda run, env: (b"k", b"{}", [*env(), ("source-dept", b"prov")]),
    "entry_mismatch": lambda run, env: (b"k", b"{}", [(k, b"cond" if k == "entry-id" else v) for k, v in env()]),
    "deeply_nested": lambda run, env: (b"k", b"[" * 5000 + b"]" * 5000, env()),
    "value_too_large": lambda run, env: (b"k", orjson.dumps({"person.status": "x" * 200_000}), env()),
    "empty_value": lambda run, env: (b"k", None, env()),
}
EXPECTED_REASON = {"invalid_utf8": "bad_json", "deeply_nested": "bad_json"}


async def test_malformed_input_is_dead_lettered_with_a_reason_while_good_records_flow(exchange):
    run = new_run()
    good = records_for("open", 20)
    messages = []
    seq = 0
    kinds = list(BAD_INPUTS)
    for i, (key, value) in enumerate(good):
        seq += 1
        messages.append((key, orjson.dumps(value), envelope("open", "prov", f"1.{seq}", run)))
        if i < len(kinds):
            seq += 1
            trace = f"1.{seq}"
            messages.append(BAD_INPUTS[kinds[i]](run, lambda t=trace: envelope("open", "prov", t, run)))
    await publish(exchange.bootstrap, exchange.topics.ingress("open"), messages)

    delivered = await read_all(exchange.bootstrap, exchange.topics.delivery("a"), run=run, until=20)
    assert len(delivered) == 20
    letters = await read_all(exchange.bootstrap, exchange.topics.dead_letter, run=run, until=len(kinds))
    reasons = sorted(orjson.loads(r.value)["reason"] for r in letters)
    assert reasons == sorted(EXPECTED_REASON.get(k, k) for k in kinds)
    for r in letters:
        letter = orjson.loads(r.value)
        assert letter["detail"] and letter["topic"] == exchange.topics.ingress("open")
        original = next(m for m in messages if dict(m[2]).get(H_TRACE, b"").decode() == letter["trace"])
        assert base64.b64decode(letter["value_b64"]) == (original[1] or b"")  # the original bytes, kept whole
    assert exchange.proc.poll() is None, "the router must keep running on bad input"


async def test_bytes_from_an_independent_client_are_dead_lettered(exchange):
    """Raw bytes sent by kafka-python (not our producer) never crash the router."""
    kafka = pytest.importorskip("kafka")
    run = new_run()
    producer = kafka.KafkaProducer(bootstrap_servers=exchange.bootstrap, acks="all")
    try:
        for i in range(5):
            headers = [(k, v) for k, v in envelope("open", "prov", f"9.{i + 1}", run)]
            producer.send(exchange.topics.ingress("open"), value=random.Random(i).randbytes(64), key=None, headers=headers)
        producer.send(exchange.topics.ingress("open"), value=b"\x00\x01garbage", headers=None)
        producer.flush(10)
    finally:
        producer.close()
    letters = await read_all(exchange.bootstrap, exchange.topics.dead_letter, run=run, until=5)
    assert len(letters) == 5 and {orjson.loads(r.value)["reason"] for r in letters} == {"bad_json"}
    await produce(exchange, "open", 5, run)
    assert len(await read_all(exchange.bootstrap, exchange.topics.delivery("a"), run=run, until=5)) == 5
    assert exchange.proc.poll() is None


async def test_sigterm_commits_every_routed_batch_and_writes_the_final_report(tmp_path):
    """The router's stop (its Faust service's on_stop, after the app's): the offsets of every
    routed batch are committed (a restarted worker re-reads nothing) and the final report
    counts every record, before the output producer stops."""
    from aiokafka import TopicPartition

    from exchange.kafka import clients
    from exchange.router.app import group_id
    from exchange.runner.status import StatusReader

    scenario = sharing_scenario()
    async with running_broker("tansu", log_path=tmp_path / "broker.log") as broker:
        router = RouterProcess(scenario, broker.bootstrap, tmp_path, kind=broker.kind)
        await router.start()
        try:
            run = new_run()
            sent = await produce(router, "open", 50, run)
            await read_all(broker.bootstrap, router.topics.delivery("a"), run=run, until=50)
        finally:
            code = router.stop()
        assert code == 0, router.log_path.read_text()[-2000:]
        final = [m.body for m in StatusReader(router.status_path).read() if m.kind == "final"]
        assert len(final) == 1 and final[0].records == len(sent)
        topic = router.topics.ingress("open")
        async with clients.started(
            clients.consumer("topic_reader", broker.bootstrap, group_id=group_id(scenario.platform.id)), broker.bootstrap, "reading offsets"
        ) as consumer:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)]
            committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
        # a fresh broker: the test's records are all the topic holds, so their count is its end
        assert sum(committed.values()) == len(sent), committed


async def _partitions(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()
