"""A department's publisher: which broker errors it resends, and which fail the run at once."""

from __future__ import annotations

import asyncio

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
from producers.publisher import DepartmentPublisher, PublishFailed, PublishStats


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
