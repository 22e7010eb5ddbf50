"""A department's publisher: which broker errors it resends, and which fail the run at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)

from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka.batching import retriable
from exchange.kafka.gateway import GatewayGate
from producers.publisher import DepartmentPublisher, PublishFailed, PublishStats
from schemas.scenario import Gateway


@pytest.mark.parametrize("exc", [KafkaConnectionError(), KafkaTimeoutError(), NotLeaderForPartitionError(), NotEnoughReplicasError()], ids=type)
def test_errors_resending_can_cure_are_retriable(exc):
    assert retriable(exc)


@pytest.mark.parametrize("exc", [MessageSizeTooLargeError(), RecordTooLargeError(), TopicAuthorizationFailedError(), ValueError("a bug")], ids=type)
def test_errors_resending_cannot_cure_are_not(exc):
    assert not retriable(exc)


async def test_a_refused_batch_fails_the_publisher_with_one_clear_line_instead_of_resending_forever():
    stats = PublishStats()
    publisher = DepartmentPublisher("DG-RS", 1, [], "127.0.0.1:1", stats, "run")
    try:
        ack = asyncio.get_running_loop().create_future()
        ack.set_exception(MessageSizeTooLargeError("the record is larger than the broker takes"))
        chunk = [(b"k", b"v" * 10, [], 0, "open")] * 3
        publisher._in_flight = 3
        await publisher._await_ack(ack, "dx.t1.in.open", 2, chunk, 0)
        assert publisher._in_flight == 0 and stats.retried == 0 and stats.sent == 0
        failure = publisher.failed
        assert isinstance(failure, PublishFailed) and isinstance(failure, ExchangeError) and failure.exit_code == EXIT_FAILED
        assert str(failure) == (
            "DG-RS: the broker refused 3 records for dx.t1.in.open[2] with MessageSizeTooLargeError "
            "([Error 10] MessageSizeTooLargeError: the record is larger than the broker takes), "
            "which resending cannot cure"
        )
        with pytest.raises(PublishFailed):  # the run stops at its next tick
            await publisher.run(0, 1.0)
    finally:
        await publisher.stop()


async def test_records_behind_a_gateway_wait_its_latency_then_go_out_together_in_order():
    """One pump per publisher, not a task per tick: aiokafka sends a partition's next batch
    only after the previous request returns, so per-tick tasks of a record or two queued
    without bound (guizhou-cascade's police-net records once waited a minute)."""
    gateway = Gateway(id="net", name="公安网", latency_ms=300)
    publisher = DepartmentPublisher("psb", 1, [], "127.0.0.1:1", PublishStats(), "run", gate=GatewayGate(gateway))
    calls: list[tuple[float, str, int, list]] = []
    sending = [0, 0]  # now, most at once

    async def send_records(topic, partition, records, sent_ns):  # a request's round trip, as aiokafka sends a partition's batches
        calls.append((time.time_ns(), topic, partition, [r[0] for r in records]))
        sending[0] += 1
        sending[1] = max(sending)
        await asyncio.sleep(0.02)
        sending[0] -= 1

    publisher._send_records = send_records
    try:
        start = time.time_ns()
        for tick in range(5):  # five ticks' records, two partitions, 1 ms apart
            await publisher._send({("t", 0): [(b"a%d" % tick, b"v", [], start, "e")], ("t", 1): [(b"b%d" % tick, b"v", [], start, "e")]})
            await asyncio.sleep(0.001)
        assert publisher._in_flight == 10 and calls == []  # held at the gateway
        await asyncio.gather(*list(publisher._tasks))
        assert not publisher._tasks and publisher._in_flight == 0  # the pump ends with its queue
        assert all(at - start >= 300e6 for at, *_ in calls)
        assert [k for _, t, p, keys in calls if p == 0 for k in keys] == [b"a%d" % i for i in range(5)]
        assert [k for _, t, p, keys in calls if p == 1 for k in keys] == [b"b%d" % i for i in range(5)]
        assert sending[1] == 1 and len(calls) < 10  # one send at a time; what fell due meanwhile goes out together
    finally:
        await publisher.stop()
