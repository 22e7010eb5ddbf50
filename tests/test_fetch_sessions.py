"""Incremental fetch sessions (KIP-227, exchange/kafka/fetch_sessions.py).

The request a session sends is checked against its rules without a broker (which partitions it
names, what it forgets, how the epoch moves, what makes it start over). On real brokers: every
record reaches a session consumer exactly once and in order, through idle spells, a broker that
forgets the session or refuses its epoch, a seek back, a paused partition and a second group
member; on Kafka an idle fetch names no partition, and on Tansu (no sessions) every fetch stays
full.
"""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v4, FetchRequest_v11

from exchange.kafka import clients
from exchange.kafka.fetch_sessions import (
    FETCH_SESSION_ID_NOT_FOUND,
    INVALID_FETCH_SESSION_EPOCH,
    FetchSession,
    SessionConsumer,
    SessionFetchRequest,
    SessionStats,
)
from exchange.kafka.topics import create_topics

from .harness import broker_kinds, running_broker

# ------------------------------------------------------------------ the requests, no broker


def base(parts: dict[tuple[str, int], int]) -> FetchRequest:
    by_topic: dict[str, list] = {}
    for (topic, p), offset in parts.items():
        by_topic.setdefault(topic, []).append((p, offset, 1024))
    return FetchRequest(500, 1, 8192, 0, list(by_topic.items()))


def answer(session_id: int, parts: list[tuple[str, int]] = (), error: int = 0):
    by_topic: dict[str, list] = {}
    for topic, p in parts:
        by_topic.setdefault(topic, []).append((p, 0, 10, 10, 0, [], -1, b""))
    return SimpleNamespace(error_code=error, session_id=session_id, topics=list(by_topic.items()))


def sent(struct) -> dict[tuple[str, int], int]:
    return {(topic, p[0]): p[2] for topic, parts in struct.topics for p in parts}


def test_a_session_sends_everything_once_then_only_what_moved_and_what_went() -> None:
    session, stats = FetchSession(node_id=1), SessionStats()
    wanted = {("a", 0): 5, ("a", 1): 7, ("b", 0): 0}
    first = SessionFetchRequest(base(wanted), session, stats)
    struct = first.build(FetchRequest_v11)
    assert (struct.session_id, struct.session_epoch) == (0, 0)  # full: opens a session
    assert sent(struct) == wanted and struct.forgotten_topics_data == []
    first.answered(answer(42, [("a", 0)]))
    assert (session.id, session.epoch) == (42, 1)

    moved = {("a", 0): 9, ("a", 1): 7}  # a-0 read on, b-0 no longer fetched (paused, moved away)
    second = SessionFetchRequest(base(moved), session, stats)
    struct = second.build(FetchRequest_v11)
    assert (struct.session_id, struct.session_epoch) == (42, 1)
    assert sent(struct) == {("a", 0): 9}
    assert struct.forgotten_topics_data == [("b", [0])]
    second.answered(answer(42))
    assert session.epoch == 2 and session.partitions == {TopicPartition(t, p): (o, 1024) for (t, p), o in moved.items()}

    idle = SessionFetchRequest(base(moved), session, stats).build(FetchRequest_v11)
    assert sent(idle) == {} and idle.forgotten_topics_data == [] and idle.session_epoch == 2
    assert (stats.full, stats.incremental, stats.partitions_sent) == (1, 1, 4)


def test_the_epoch_wraps_to_one() -> None:
    session = FetchSession(node_id=1, id=7, epoch=2**31 - 1)
    SessionFetchRequest(base({("a", 0): 0}), session, SessionStats()).answered(answer(7))
    assert session.epoch == 1


@pytest.mark.parametrize(
    "error, after", [(FETCH_SESSION_ID_NOT_FOUND, (0, 0)), (INVALID_FETCH_SESSION_EPOCH, (42, 0))], ids=["id-not-found", "bad-epoch"]
)
def test_a_refused_session_starts_over_with_a_full_fetch_and_its_answer_is_not_used(error, after) -> None:
    """Java's FetchSessionHandler: an evicted session is opened again (id 0); any other error
    closes the session with the next fetch (its id, epoch 0)."""
    session, stats = FetchSession(node_id=1, id=42, epoch=5, partitions={TopicPartition("a", 0): (3, 1024)}), SessionStats()
    request = SessionFetchRequest(base({("a", 0): 3}), session, stats)
    response = answer(0, [("a", 0)], error=error)
    request.answered(response)
    assert (session.id, session.epoch) == after and response.topics == [] and stats.resets == 1
    full = SessionFetchRequest(base({("a", 0): 3}), session, stats).build(FetchRequest_v11)
    assert full.session_epoch == 0 and sent(full) == {("a", 0): 3}


def test_an_answer_naming_a_partition_the_session_does_not_hold_is_dropped() -> None:
    session = FetchSession(node_id=1, id=42, epoch=3, partitions={TopicPartition("a", 0): (3, 1024)})
    request = SessionFetchRequest(base({("a", 0): 3}), session, SessionStats())
    response = answer(42, [("a", 0), ("zz", 4)])
    request.answered(response)
    assert response.topics == [] and session.epoch == 0  # the next fetch is full


def test_a_failed_or_cancelled_request_makes_the_next_fetch_full() -> None:
    session = FetchSession(node_id=1, id=42, epoch=3)
    SessionFetchRequest(base({("a", 0): 3}), session, SessionStats()).failed()
    assert (session.id, session.epoch) == (42, 0)


def test_no_session_offered_keeps_every_fetch_full() -> None:
    """A broker that keeps no session answers id 0 (Tansu); one too old for sessions (Fetch < v7)
    gets aiokafka's own full request."""
    session = FetchSession(node_id=1)
    request = SessionFetchRequest(base({("a", 0): 3}), session, SessionStats())
    request.build(FetchRequest_v11)
    request.answered(answer(0, [("a", 0)]))
    assert (session.id, session.epoch) == (0, 0)
    old = SessionFetchRequest(base({("a", 0): 3}), session, SessionStats())
    struct = old.build(FetchRequest_v4)
    assert struct.topics == [("a", [(0, 3, 1024)])]
    old.answered(answer(0, [("a", 0)]))
    assert not session.offered
    assert SessionFetchRequest(base({("a", 0): 3}), session, SessionStats()).build(FetchRequest_v11).session_epoch == -1


async def test_the_quiet_consumers_fetch_in_sessions() -> None:
    """The router's quiet lane (profile router_quiet) and, by argument, the subscribers' quiet
    shared client (consumers/shared.py); other consumers fetch as aiokafka does."""
    assert isinstance(clients.consumer("router_quiet", "127.0.0.1:9092"), SessionConsumer)
    assert not isinstance(clients.consumer("subscriber", "127.0.0.1:9092"), SessionConsumer)
    assert isinstance(clients.consumer("subscriber", "127.0.0.1:9092", fetch_sessions=True), SessionConsumer)


# ------------------------------------------------------------------ on real brokers

PARTITIONS = {"fs.a": 40, "fs.b": 3}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def broker(request, tmp_path_factory):
    async with running_broker(request.param, log_path=tmp_path_factory.mktemp(f"sessions-{request.param}") / "broker.log") as b:
        yield b


class Reader:
    """A :class:`SessionConsumer` in ``group`` and what it has read, by partition."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        self.consumer = clients.consumer(
            "subscriber", bootstrap, *topics, group_id=group, fetch_sessions=True, fetch_max_wait_ms=300, auto_offset_reset="earliest"
        )
        self.got: dict[tuple[str, int], list[int]] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Reader:
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _read(self) -> None:
        while True:
            for tp, msgs in (await self.consumer.getmany(timeout_ms=500)).items():
                self.got.setdefault((tp.topic, tp.partition), []).extend(int(m.value) for m in msgs)

    @property
    def stats(self) -> SessionStats:
        return self.consumer.fetcher.stats

    def count(self) -> int:
        return sum(map(len, self.got.values()))


async def until(check, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def publish(producer, topics: dict[str, int], n: int, start: int, rng: random.Random, sent: dict) -> None:
    for i in range(start, start + n):
        topic = rng.choice(sorted(topics))
        p = rng.randrange(topics[topic])
        await producer.send(topic, str(i).encode(), partition=p)
        sent.setdefault((topic, p), []).append(i)
    await producer.flush()


@pytest.mark.asyncio(loop_scope="module")
async def test_every_record_arrives_once_in_order_through_idle_spells_and_refused_sessions(broker) -> None:
    topics = {f"{t}.1": n for t, n in PARTITIONS.items()}
    await create_topics(broker.bootstrap, topics, replication_factor=broker.replication_factor)
    rng, sent = random.Random(1), {}
    async with (
        clients.started(clients.producer("control", broker.bootstrap), broker.bootstrap, "sessions") as producer,
        Reader(broker.bootstrap, "fs-1", sorted(topics)) as reader,
    ):
        await until(lambda: reader.consumer.assignment())
        await publish(producer, topics, 200, 0, rng, sent)
        await until(lambda: reader.count() >= 200)
        # idle: fetches go on (each ends with its wait), naming nothing on Kafka once the
        # fetch after the last records has sent their partitions' new offsets
        await asyncio.sleep(1.0)
        before = SessionStats(**vars(reader.stats))
        await asyncio.sleep(2.0)
        idle_fetches = reader.stats.incremental + reader.stats.full - before.incremental - before.full
        idle_named = reader.stats.partitions_sent - before.partitions_sent
        assert idle_fetches >= 3
        sessions = reader.consumer.fetcher.sessions
        if broker.kind == "kafka":
            assert idle_named == 0 and reader.stats.incremental > reader.stats.full
            # the broker forgets the session, then refuses its epoch: each time the next
            # fetch is full, a new session follows, and no record is lost
            for error, change in (
                (FETCH_SESSION_ID_NOT_FOUND, lambda s: setattr(s, "id", s.id + 1000)),
                (INVALID_FETCH_SESSION_EPOCH, lambda s: setattr(s, "epoch", s.epoch + 5)),
            ):
                # with every partition paused no fetch is out: the change is the next fetch's
                parts = reader.consumer.assignment()
                reader.consumer.pause(*parts)
                await asyncio.sleep(1.0)
                for node in sessions.values():
                    change(node)
                reader.consumer.resume(*parts)
                await until(lambda error=error: reader.stats.errors.get(error))
                await publish(producer, topics, 100, sum(map(len, sent.values())), rng, sent)
                await until(lambda: reader.count() >= sum(map(len, sent.values())))
            await until(lambda: all(node.id != 0 and node.epoch > 0 for node in sessions.values()))
        else:  # Tansu keeps no session: every fetch names every partition
            assert reader.stats.incremental == 0 and idle_named == idle_fetches * sum(topics.values())
            assert all(node.id == 0 for node in sessions.values())
            await publish(producer, topics, 200, 200, rng, sent)
            await until(lambda: reader.count() >= 400)
        await asyncio.sleep(1.0)  # nothing more comes
    assert reader.got == sent


@pytest.mark.asyncio(loop_scope="module")
async def test_a_seek_back_and_a_paused_partition_are_read_again_and_in_full(broker) -> None:
    topics = {f"{t}.2": n for t, n in PARTITIONS.items()}
    await create_topics(broker.bootstrap, topics, replication_factor=broker.replication_factor)
    tp = TopicPartition("fs.a.2", 7)
    async with (
        clients.started(clients.producer("control", broker.bootstrap), broker.bootstrap, "sessions") as producer,
        Reader(broker.bootstrap, "fs-2", sorted(topics)) as reader,
    ):
        await until(lambda: reader.consumer.assignment())
        for i in range(5):
            await producer.send_and_wait(tp.topic, str(i).encode(), partition=tp.partition)
        await until(lambda: reader.count() >= 5)
        await asyncio.sleep(1.0)  # a few idle incremental fetches: the session holds offset 5
        reader.consumer.seek(tp, 2)
        await until(lambda: reader.count() >= 8)
        reader.consumer.pause(tp)
        await asyncio.sleep(1.0)  # fetches without it: the session forgets it
        for i in range(5, 10):
            await producer.send_and_wait(tp.topic, str(i).encode(), partition=tp.partition)
        await asyncio.sleep(1.0)
        assert reader.count() == 8
        reader.consumer.resume(tp)
        await until(lambda: reader.count() >= 13)
        await asyncio.sleep(0.5)
    assert reader.got == {(tp.topic, tp.partition): [0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8, 9]}


@pytest.mark.asyncio(loop_scope="module")
async def test_a_second_member_takes_partitions_and_nothing_is_lost(broker) -> None:
    """A rebalance moves partitions out of one member's session and into another's; each new
    assignment starts with a full fetch."""
    topics = {f"{t}.3": n for t, n in PARTITIONS.items()}
    await create_topics(broker.bootstrap, topics, replication_factor=broker.replication_factor)
    rng, sent = random.Random(3), {}
    async with (
        clients.started(clients.producer("control", broker.bootstrap), broker.bootstrap, "sessions") as producer,
        Reader(broker.bootstrap, "fs-3", sorted(topics)) as first,
    ):
        await until(lambda: first.consumer.assignment())
        await publish(producer, topics, 150, 0, rng, sent)
        await until(lambda: first.count() >= 150)
        await first.consumer.commit()
        async with Reader(broker.bootstrap, "fs-3", sorted(topics)) as second:
            await until(lambda: second.consumer.assignment(), timeout=60)
            await until(lambda: len(first.consumer.assignment()) < sum(topics.values()), timeout=60)
            # each member's new partition states learn their high watermarks (a full fetch after
            # the new assignment), idle partitions included
            for member in (first, second):
                await until(lambda m=member: all(m.consumer.highwater(tp) is not None for tp in m.consumer.assignment()))
            await publish(producer, topics, 150, 150, rng, sent)
            # at-least-once across a rebalance: each record read by one member or both
            await until(lambda: all(set(v) <= set(first.got.get(k, []) + second.got.get(k, [])) for k, v in sent.items()), timeout=60)
    for key, values in sent.items():
        both = first.got.get(key, []) + second.got.get(key, [])
        assert set(both) == set(values), key
