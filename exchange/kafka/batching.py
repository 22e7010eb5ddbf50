"""Publish many records with few futures: one aiokafka batch per topic partition.

``AIOKafkaProducer.send`` costs a future and a partitioner call per record; appending
to ``create_batch()`` builders and ``send_batch`` costs one future per partition batch.
That difference is most of the gap between a naive router and one that keeps up with
the broker (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from exchange.runner import clock

Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def retriable(exc: BaseException) -> bool:
    """Whether sending a batch again can succeed: aiokafka's retriable errors (a leader
    moved, not enough replicas, a request timed out…), a lost connection, and a batch that
    expired while the broker did not answer (``KafkaTimeoutError``: a paused or restarting
    broker). Anything else (a record too large, a topic not authorised, a bug) is not."""
    return isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)) or (isinstance(exc, KafkaError) and exc.retriable)


class Partitioner:
    """Kafka's default (murmur2) key partitioning, with a cache: master keys repeat."""

    def __init__(self, producer: AIOKafkaProducer, cache_size: int = 1_000_000) -> None:
        self._producer = producer
        self._murmur = DefaultPartitioner()
        self._cache: dict[tuple[str, bytes], int] = {}
        self._partitions: dict[str, list[int]] = {}
        self._round_robin = 0
        self._cache_size = cache_size

    async def partitions(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            found = None
            for _ in range(100):
                found = await self._producer.partitions_for(topic)
                if found:
                    break
                await asyncio.sleep(0.05)
            if not found:
                raise RuntimeError(f"topic {topic!r} does not exist (topics are created before a run starts)")
            parts = self._partitions[topic] = sorted(found)
        return parts

    def of(self, topic: str, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            self._round_robin += 1
            return parts[self._round_robin % len(parts)]
        found = self._cache.get((topic, key))
        if found is None:
            found = self._murmur(key, parts, parts)
            if len(self._cache) < self._cache_size:
                self._cache[(topic, key)] = found
        return found


async def send_batches(
    producer: AIOKafkaProducer, topic: str, partition: int, messages: list, out: list | None = None
) -> list[tuple[asyncio.Future, list]]:
    """Append messages to as few batches as fit and send each.

    Returns (future, the messages of that batch) pairs; a future resolves on the broker's
    ack. Messages may carry extra fields after (key, value, headers); they are ignored.
    ``out``, when given, receives each pair as its batch is appended, so a caller still has
    the batches that went out when a later one raises (their messages are the first
    ``sum(len(m) for _, m in out)``).
    """
    futures = [] if out is None else out
    start = 0
    while start < len(messages):
        batch = producer.create_batch()
        # CreateTime in the run's time base (exchange/runner/clock.py); aiokafka's own when uncorrected
        stamp = clock.now_ns() // 1_000_000 if clock.offset_ns() else None
        end = start
        while end < len(messages):
            key, value, headers = messages[end][:3]
            if batch.append(key=key, value=value, timestamp=stamp, headers=headers) is None:
                break
            end += 1
        if end == start:
            raise ValueError(f"a message for {topic} is larger than the producer's max_batch_size")
        futures.append((await _send_batch(producer, batch, topic, partition), messages[start:end]))
        start = end
    return futures


async def _send_batch(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> asyncio.Future:
    """``producer.send_batch``, waiting up to the producer's ``request_timeout_ms`` for room.

    aiokafka's accumulator (0.12-0.14, ``MessageAccumulator.add_batch``) subtracts the time
    waited since its *first* wait on every turn of its loop, so where several batches queue for
    one partition (a boundary gateway releasing a second's worth at once) it raises
    ``KafkaTimeoutError`` after a fraction of ``request_timeout_ms`` while the partition drains.
    The batch was not appended then, so asking again is safe; a real timeout still raises.
    """
    deadline = time.monotonic() + producer._request_timeout_ms / 1000
    while True:
        try:
            return await producer.send_batch(batch, topic, partition=partition)
        except KafkaTimeoutError:
            if time.monotonic() >= deadline:
                raise


Sent = tuple[asyncio.Future, str, int, list]  # (ack future, topic, partition, messages)


class BatchSender:
    """Groups messages by partition and sends them; each batch comes back with its future."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitioner = Partitioner(producer)

    async def send(self, topic: str, messages: Iterable[Message], partition: int | None = None) -> list[Sent]:
        parts = await self.partitioner.partitions(topic)
        by_partition: dict[int, list[Message]] = {}
        if partition is not None:
            by_partition[partition] = list(messages)
        else:
            of = self.partitioner.of
            for m in messages:
                by_partition.setdefault(of(topic, m[0], parts), []).append(m)
        sent: list[Sent] = []
        for p, msgs in by_partition.items():
            sent.extend((f, topic, p, chunk) for f, chunk in await send_batches(self.producer, topic, p, msgs))
        return sent

    async def acknowledged(self, sent: list[Sent], retry_backoff_s: float = 0.5, max_attempts: int = 20) -> None:
        """Resolves once every batch is acked; batches that failed with a :func:`retriable`
        error are sent again, up to ``max_attempts`` times; raises the first error that is
        not retriable, or the last one."""
        attempt = 0
        while sent:
            results = await asyncio.gather(*(f for f, *_ in sent), return_exceptions=True)
            failed = [s for s, r in zip(sent, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                return
            for r in results:
                if isinstance(r, BaseException) and not retriable(r):
                    raise r
            attempt += 1
            if attempt >= max_attempts:
                raise failed[0][0].exception() or RuntimeError("send failed")
            await asyncio.sleep(retry_backoff_s)
            sent = []
            for _, topic, p, msgs in failed:
                sent.extend((f, topic, p, chunk) for f, chunk in await send_batches(self.producer, topic, p, msgs))
