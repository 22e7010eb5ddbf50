"""The router's quiet lane: the quiet ingress topics on a second consumer with a long fetch wait.

Which topics are quiet: :mod:`exchange.router.lanes`. The lane is a plain aiokafka consumer
in its own group, ``dx-<platform>-router-quiet`` (Faust's group speaks Faust's own assignor
protocol, so a second member with other topics cannot join it); the group spreads the quiet
partitions over the hub's workers and moves them when one dies, as the main group does.

Its batches go through the same handler as the main consumer's (routed, audited, accounted
the same), and their offsets are committed the same way:

- at-least-once: by a :class:`~exchange.router.commits.CommitPipeline` of its own, through
  this consumer, each batch's offsets once its outputs are acknowledged;
- exactly-once: in the router producer's transactions (the app's
  :class:`~exchange.router.transactions.TransactionalCommits`), under the lane's group. A
  Kafka transaction carries one group's offsets in aiokafka, so a quiet batch closes the
  transaction open for the main group and routes in one of its own (quiet batches are rare:
  the cut costs one commit per quiet batch).

A partition is read by one consumer in one order, so each entry's records keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError

from exchange.kafka import clients
from exchange.router.commits import CommitPipeline

log = logging.getLogger(__name__)

#: How long one ``getmany`` waits for the fetcher (ms); the fetch wait itself is the consumer's.
POLL_TIMEOUT_MS = 1000
REVOKE_FLUSH_TIMEOUT_S = 5.0


def quiet_group_id(group: str) -> str:
    """The quiet lane's consumer group: the main group's id with ``-quiet``."""
    return f"{group}-quiet"


class _Revoked(ConsumerRebalanceListener):
    def __init__(self, lane: QuietLane) -> None:
        self.lane = lane

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # commit what is acknowledged; the partitions' next owner re-reads the rest
        try:
            await asyncio.wait_for(self.lane.flush(), REVOKE_FLUSH_TIMEOUT_S)
        except TimeoutError:
            log.info("quiet partitions revoked before batches in flight were committed (%s s)", REVOKE_FLUSH_TIMEOUT_S)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass


class QuietLane:
    """Reads ``topics`` with a consumer of group ``group`` waiting ``fetch_wait_ms`` per fetch,
    and hands each fetched batch to ``app``'s bulk handler (see the module docstring).

    ``app`` is the router's :class:`~exchange.router.faust_bulk.BulkApp`: its ``bulk_handler``,
    ``sending(group)`` and, under exactly-once, its transactional ``commits``.
    """

    def __init__(self, app: Any, bootstrap: str, topics: Iterable[str], group: str, fetch_wait_ms: int, client_id: str) -> None:
        self.app = app
        self.topics = sorted(topics)
        self.group = group
        self._settings = dict(bootstrap=bootstrap, group_id=group, client_id=client_id, fetch_max_wait_ms=fetch_wait_ms)
        self.consumer: AIOKafkaConsumer | None = None  # made in start(): aiokafka wants the running loop
        self._commits: CommitPipeline | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._crashing: asyncio.Future | None = None
        self._routing = False  # inside a batch: stop lets it finish (its outputs and offsets go together)
        self.batches = 0

    @property
    def commits(self) -> Any:
        """Where this lane's offsets go: the app's transactions under exactly-once, else its own pipeline."""
        if self.app.exactly_once:
            return self.app.commits
        if self._commits is None:
            self._commits = CommitPipeline(self._commit, observe=self.app.observe_commit)
        return self._commits

    async def _commit(self, offsets: dict) -> bool:
        if self.consumer is None:
            return False
        try:
            await self.consumer.commit({TopicPartition(tp.topic, tp.partition): o for tp, o in offsets.items()})
        except (ConsumerStoppedError, KafkaError) as exc:  # rebalanced or stopping: the next owner re-reads
            log.info("quiet lane commit skipped: %r", exc)
            return False
        return True

    async def start(self) -> None:
        """Start the consumer (subscribed, its group joined on the first fetch) and the fetch loop."""
        settings = dict(self._settings)
        self.consumer = consumer = clients.consumer(
            "router_quiet", settings.pop("bootstrap"), isolation_level="read_committed" if self.app.exactly_once else "read_uncommitted", **settings
        )
        await consumer.start()
        consumer.subscribe(self.topics, listener=_Revoked(self))
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("the quiet lane failed; the worker stops", exc_info=exc)
        self._crashing = asyncio.ensure_future(self.app.crash(exc))  # as Faust does with an agent that fails

    def highwater(self, tp: Any) -> int | None:
        """The end offset of ``tp`` at the last fetch, None before one."""
        return None if self.consumer is None else self.consumer.highwater(TopicPartition(tp.topic, tp.partition))

    async def _run(self) -> None:
        handler: Callable[[Any], Awaitable[Awaitable[None]]] = self.app.bulk_handler
        consumer = self.consumer
        assert consumer is not None
        while not self._stopping:
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            batch = {tp: recs for tp, recs in batch.items() if recs}
            if not batch:
                continue
            self._routing = True
            try:
                async with self.app.sending(self.group):  # exactly-once: a transaction of this group's
                    done = await handler(batch)
                    await self.commits.add({tp: recs[-1].offset + 1 for tp, recs in batch.items()}, done)
            finally:
                self._routing = False
            self.batches += 1

    async def flush(self) -> None:
        """Commit what is acknowledged (under exactly-once: the open transaction)."""
        await self.commits.flush()

    async def stop(self) -> None:
        """Stop fetching, commit every batch whose outputs are acknowledged, stop the consumer.
        Called before the app's own commits stop (they may be the same transactions)."""
        self._stopping = True
        if self._task is not None:
            if not self._routing:  # waiting for a fetch: nothing half done
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was reported by _ended
                await self._task
        if self._commits is not None:
            await self._commits.stop()
        elif self.app.exactly_once:
            await self.app.commits.flush()
        if self.consumer is not None:
            await self.consumer.stop()
