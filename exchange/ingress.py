"""The router's high-volume topics, read by aiokafka on the worker's own event loop.

Faust runs its consumer on a thread of its own: every fetch crossed threads twice and
the two threads shared the GIL, which cost the router about a third of its throughput
and tens of milliseconds per hop (README, "Performance"). The ingress and transit topics
are therefore read here, in the consumer group ``dx-<hub>-ingress`` (round-robin over
every partition of every topic, so workers scale out as in any Kafka group), and Faust
keeps what it is good at: the control agent, the tables and their changelogs, timers.

At-least-once: a batch's offsets are committed only after everything it produced is
acknowledged (:class:`~exchange.commits.CommitPipeline`); partitions taken away by a
rebalance are committed up to what is done before they go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from .commits import CommitPipeline

log = logging.getLogger(__name__)

# Tansu holds an empty fetch for the whole wait (it does not answer early when data
# arrives), so this is roughly the latency one idle hop adds. Faust hard-codes 1.5 s.
FETCH_MAX_WAIT_MS = 10
REVOKE_FLUSH_TIMEOUT_S = 5.0

BatchHandler = Callable[[Mapping[TopicPartition, list[Any]]], Awaitable[Awaitable[None]]]


def ingress_group(platform: str) -> str:
    return f"dx-{platform}-ingress"


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    def __init__(self, ingress: IngressConsumer) -> None:
        self.ingress = ingress

    async def on_partitions_revoked(self, revoked) -> None:
        try:  # commit what is done; what is not is re-read by the partitions' next owner
            await asyncio.wait_for(self.ingress.commits.flush(), REVOKE_FLUSH_TIMEOUT_S)
        except Exception as exc:
            log.info("partitions revoked before batches in flight were committed: %r", exc)

    async def on_partitions_assigned(self, assigned) -> None:
        self.ingress.rebalances += 1
        if self.ingress.on_assigned is not None:
            self.ingress.on_assigned()


class IngressConsumer:
    """Fetches batches, hands them to ``handler``, commits each once its outputs are acked.

    ``handler(batch)`` routes a batch and returns an awaitable that resolves when the
    broker has acknowledged everything the batch produced.
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: list[str],
        handler: BatchHandler,
        *,
        client_id: str,
        fetch_wait_ms: int,
        session_timeout_s: float,
        heartbeat_s: float,
        max_records: int = 1000,
        on_assigned: Callable[[], None] | None = None,
        observe_commit: Callable[[float], None] | None = None,
    ) -> None:
        self.on_assigned = on_assigned
        self._handler = handler
        self._max_records = max_records
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._handling = False
        self.rebalances = 0
        self.handle_seconds = 0.0
        self._config = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,  # Tansu holds an empty fetch for the whole wait
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=int(heartbeat_s * 1000),
            rebalance_timeout_ms=int(session_timeout_s * 2000),
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        self.consumer: AIOKafkaConsumer | None = None  # made in start(): aiokafka binds it to the running loop
        self._topics = topics
        self.commits = CommitPipeline(self._commit, observe=observe_commit)

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(**self._config)
        self.consumer.subscribe(self._topics, listener=_CommitBeforeRevoke(self))
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())

    @property
    def done(self) -> asyncio.Task | None:
        """The fetch loop; it only ends by :meth:`stop` or by failing."""
        return self._task

    async def _run(self) -> None:
        getmany, handler, commits = self.consumer.getmany, self._handler, self.commits
        while not self._stopping:
            batch = await getmany(timeout_ms=1000, max_records=self._max_records)
            if not batch or self._stopping:
                continue
            self._handling = True
            t0 = time.perf_counter()
            done = await handler(batch)
            self.handle_seconds += time.perf_counter() - t0
            await commits.add({tp: recs[-1].offset + 1 for tp, recs in batch.items()}, done)
            self._handling = False

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self.consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if mine:  # a partition a rebalance took away is re-read from its last commit by its new owner
            await self.consumer.commit(mine)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.consumer.highwater(tp) if self.consumer is not None else None

    async def stop(self) -> None:
        """Stop fetching, wait for the batches in flight, commit, leave the group."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            if not self._handling:  # waiting for a fetch: nothing to finish
                self._task.cancel()
            try:  # a batch being handled is finished, so its offsets can be committed
                await asyncio.wait_for(self._task, REVOKE_FLUSH_TIMEOUT_S)
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await asyncio.wait_for(self.commits.stop(), REVOKE_FLUSH_TIMEOUT_S)
        except Exception as exc:
            log.warning("batches in flight at shutdown were not all committed: %r", exc)
        if self.consumer is not None:
            await self.consumer.stop()
