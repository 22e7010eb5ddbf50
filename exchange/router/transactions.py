"""Exactly-once routing: each batch's outputs and its input offsets in one Kafka transaction.

Consume-transform-produce (KIP-98): the router's producer is transactional; the outputs of
the batches routed since the last commit (deliveries, audit blocks, dead letters, quality
events, authority changelog writes) and the ingress offsets those batches reach are
committed together with ``send_offsets_to_transaction`` and ``commit_transaction``.
A transaction holds one consumer group's offsets (aiokafka adds one group to a transaction):
a batch of the quiet lane's group (:mod:`exchange.router.quiet`) commits the transaction
open for the main group first, and the other way round.
Subscribers read ``read_committed``, so they see a batch's outputs once or never: a router
killed mid-transaction leaves it open, its restarted incarnation (the same
``transactional.id``) fences it and the broker aborts it, and the ingress is re-read from
the offsets of the last committed transaction.

Like Kafka Streams under ``exactly_once_v2`` (``commit.interval.ms`` 100), a transaction
spans the batches of :data:`COMMIT_INTERVAL_S` (or :data:`MAX_BATCHES_PER_TRANSACTION`),
so the commit's four round trips are paid per interval, not per batch; outputs become
visible to subscribers at the commit, which is what exactly-once costs in latency.

:class:`TransactionalCommits` has the interface of
:class:`~exchange.router.commits.CommitPipeline` (``add``, ``flush``, ``stop``,
``commit_seconds``, ``failed``) plus :meth:`~TransactionalCommits.batch`, which every
sender of the producer holds while it sends: a transaction is open then, and no commit
runs in the middle of a batch. A transaction that fails is aborted and the worker stops
committing (``failed``, raised by the next ``add``): nothing past it is ever committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from exchange.kafka import clients

log = logging.getLogger(__name__)

#: seconds a transaction stays open for more batches (Kafka Streams' EOS commit.interval.ms: 100 ms)
COMMIT_INTERVAL_S = 0.1
#: a transaction is committed early once it holds this many batches (bounds what an abort re-routes)
MAX_BATCHES_PER_TRANSACTION = 64
#: seconds between two looks at the group's committed offsets while waiting for a commit to show
VISIBLE_POLL_S = 0.02

TP = Hashable  # Faust's TP or aiokafka's TopicPartition: anything with .topic and .partition


def transactional_id(group: str, worker: str, run_id: str = "") -> str:
    """The router worker's ``transactional.id``: stable across its restarts (so a restarted
    worker fences the one it replaces), distinct per worker, hub and run."""
    return f"{group}-{worker}" + (f"-{run_id}" if run_id else "")


class TransactionalCommits:
    """Commits routed batches' outputs and input offsets in Kafka transactions (see module docstring)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        group_id: str,
        bootstrap: str,
        interval_s: float = COMMIT_INTERVAL_S,
        max_batches: int = MAX_BATCHES_PER_TRANSACTION,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._producer = producer
        self._group = group_id
        self._bootstrap = bootstrap
        self._interval = interval_s
        self._max_batches = max_batches
        self._observe = observe  # seconds from a batch added to its transaction committed
        self._lock = asyncio.Lock()
        self._open_since: float | None = None  # monotonic time the open transaction began
        self._offsets: dict[TP, int] = {}
        self._done: list[asyncio.Future] = []
        self._added: list[float] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._txn_group = group_id  # the group whose offsets the open transaction holds
        self._committed: dict[str, dict[TopicPartition, int]] = {}  # by group: offsets of the last transactions committed
        self._unseen: set[str] = set()  # groups that may not show their committed offsets yet
        self._admin: AIOKafkaAdminClient | None = None
        self.failed: BaseException | None = None
        self.commit_seconds = 0.0
        self.committed = 0  # transactions committed
        self.aborted = 0

    @contextlib.asynccontextmanager
    async def batch(self, group: str | None = None) -> AsyncIterator[None]:
        """Hold while sending: a transaction is open, and none is committed until the block ends.

        ``group``: the consumer group whose offsets the block adds (the main group's when None);
        a transaction open with another group's offsets is committed first."""
        group = group or self._group
        async with self._lock:
            if self.failed is not None:
                raise self.failed
            if self._open_since is not None and self._offsets and group != self._txn_group:
                await self._commit_locked()
                if self.failed is not None:
                    raise self.failed
            self._txn_group = group
            if self._open_since is None:
                await self._producer.begin_transaction()
                self._open_since = time.monotonic()
                if self._task is None:
                    self._task = asyncio.ensure_future(self._run())
            yield

    async def add(self, offsets: dict[TP, int], done: Awaitable[None]) -> None:
        """A batch routed inside :meth:`batch`: ``offsets`` (next offset to read, per ingress
        partition) go into the open transaction; ``done`` resolves when its outputs are acked."""
        if self.failed is not None:
            raise self.failed
        self._offsets.update(offsets)
        self._done.append(asyncio.ensure_future(done))
        self._added.append(time.monotonic())
        if len(self._done) >= self._max_batches:
            self._full.set()

    async def _run(self) -> None:
        while self.failed is None:
            if self._open_since is None:
                await asyncio.sleep(self._interval)
                continue
            wait = self._open_since + self._interval - time.monotonic()
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait)
            await asyncio.shield(self._commit())

    async def _commit(self) -> None:
        async with self._lock:
            await self._commit_locked()

    async def _commit_locked(self) -> None:
        """Commit the open transaction (the caller holds the lock)."""
        if self._open_since is None or self.failed is not None:
            return
        self._full.clear()
        group = self._txn_group
        offsets, self._offsets = self._offsets, {}
        done, self._done = self._done, []
        added, self._added = self._added, []
        t0 = time.perf_counter()
        try:
            # the offsets go to the coordinator while the outputs are still being acknowledged:
            # two round trips overlapped, not added (a failed output fails the commit below)
            if offsets:
                await self._producer.send_offsets_to_transaction(
                    {
                        TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(o, "")  # type: ignore[attr-defined]
                        for tp, o in offsets.items()
                    },
                    group,
                )
            if done:
                await asyncio.gather(*done)
            await self._producer.commit_transaction()
        except BaseException as exc:  # noqa: BLE001 - aborted below, then raised by the next add
            self.failed = exc
            log.error("transaction failed (%r); aborting it, its batches will be routed again by the next owner", exc)
            with contextlib.suppress(Exception):
                await self._producer.abort_transaction()
            self.aborted += 1
            return
        finally:
            self._open_since = None
            self.commit_seconds += time.perf_counter() - t0
        self.committed += 1
        if offsets:
            committed = self._committed.setdefault(group, {})
            committed.update((TopicPartition(tp.topic, tp.partition), o) for tp, o in offsets.items())  # type: ignore[attr-defined]  # faust TPs
            self._unseen.add(group)
        if self._observe is not None:
            now = time.monotonic()
            for at in added:
                self._observe(now - at)

    async def flush(self) -> None:
        """Commit the open transaction now, and wait until the group shows its offsets; called
        before partitions go away and at shutdown.

        The wait: the broker writes a transaction's offsets to the group when it writes the
        commit markers, after ``commit_transaction`` returns, and an offset fetch meanwhile
        answers the previous offsets (aiokafka asks without KIP-447's ``require_stable``). The
        worker that gets the partitions after this rebalance (this one, or a restart) would
        re-route the committed batches and deliver them twice.

        Shielded: a caller that stops waiting (a rebalance's timeout) does not cut the commit
        short, which would leave the producer committing while the next batch begins."""
        await asyncio.shield(self._commit())
        for group in sorted(self._unseen):
            if self.failed is None:
                await self._until_visible(group)

    async def _until_visible(self, group: str) -> None:
        if self._admin is None:
            self._admin = clients.admin("topology", self._bootstrap, client_id=f"{self._group}-offsets")
            await self._admin.start()
        want = dict(self._committed[group])
        while True:
            shown = await self._admin.list_consumer_group_offsets(group, partitions=list(want))
            if all(shown.get(tp) is not None and shown[tp].offset >= o for tp, o in want.items()):
                self._unseen.discard(group)
                return
            await asyncio.sleep(VISIBLE_POLL_S)

    async def stop(self) -> None:
        """Commit the open transaction (:meth:`flush`), then stop the committer task."""
        try:
            await self.flush()
        finally:
            if self._task is not None:
                self._task.cancel()
            if self._admin is not None:
                await self._admin.close()
