"""A Faust app whose high-volume topics skip the per-event pipeline.

Faust turns every fetched record into an Event and passes it through a queue, a stream
and an agent, one await at a time; on this machine that tops out near 9,000 records/s,
while Faust's own consumer fetches over 200,000/s. :class:`BulkApp` keeps everything
Faust gives a router (consumer group membership and rebalancing, offset tracking,
tables and their changelogs, agents for low-volume topics) and hands the records of the
topics it is told about to one batch handler, straight from the fetcher.

At-least-once by default, pipelined: the handler routes a batch and returns an awaitable that
resolves when the broker has acknowledged everything the batch produced. The next fetch
does not wait for it; :class:`~exchange.router.commits.CommitPipeline` commits each batch's
offsets only after its outputs, and those of every batch before it, are acknowledged.
Exactly-once (:meth:`BulkApp.use_transactions`): batches are routed inside the router
producer's open transaction and their offsets committed in it
(:mod:`exchange.router.transactions`); the consumer reads ``read_committed``.

Quiet topics (daily, monthly, batch entries: :mod:`exchange.router.lanes`) go to the same
handler from a second consumer with a long fetch wait (:mod:`exchange.router.quiet`), so the
main consumer's frequent fetches name only the real-time partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from exchange.router.commits import CommitPipeline
from exchange.router.quiet import QuietLane
from exchange.router.transactions import TransactionalCommits

log = logging.getLogger(__name__)

# Tansu holds an empty fetch for the whole wait (it does not answer early when data
# arrives), so this is roughly the latency one idle hop adds. Faust hard-codes 1.5 s.
FETCH_MAX_WAIT_MS = 10
REVOKE_FLUSH_TIMEOUT_S = 5.0

BatchHandler = Callable[[Mapping[TP, list[Any]]], Awaitable[Awaitable[None]]]


class AssignmentCache:
    """Faust's view (a frozenset of ``TP``) of an aiokafka assignment, converted once per assignment.

    aiokafka hands out the same frozenset of ``TopicPartition`` until the next rebalance, so
    a conversion is reused while the object is the same one. Faust's thread ``_commit``
    (faust-streaming 0.11-0.15) asks for the assignment once per committed offset: converting
    all ``n`` assigned partitions each time made a commit cost ``n`` x offsets (1,325 x 1,325
    for ``dongguan``, a quarter of the router's CPU).
    """

    def __init__(self) -> None:
        self._source: object = None
        self._tps: frozenset[TP] = frozenset()

    def __call__(self, assigned: AbstractSet[Any]) -> frozenset[TP]:
        """``assigned`` (aiokafka ``TopicPartition`` or ``TP``) as a frozenset of ``TP``."""
        if assigned is not self._source:
            self._tps = frozenset(ensure_TPset(assigned))
            self._source = assigned
        return self._tps


class BulkConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the app's ``fetch_max_wait_ms`` (ms) on its aiokafka consumer,
    and its assignment converted once per rebalance (:class:`AssignmentCache`)."""

    _assignment_cache: AssignmentCache | None = None

    def assignment(self) -> frozenset[TP]:  # type: ignore[override]  # read-only, as every caller in Faust uses it
        """The assigned partitions (read-only: a frozenset shared until the next rebalance)."""
        cache = self._assignment_cache
        if cache is None:
            cache = self._assignment_cache = AssignmentCache()
        return cache(self._ensure_consumer().assignment())

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        if self.app.exactly_once:  # read when the consumer starts (aiokafka's Fetcher takes it then)
            consumer._isolation_level = "read_committed"
        return consumer


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, diverting bulk topics to the app's batch handler."""

    def _new_consumer_thread(self):
        return BulkConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float):
        records, active = await super()._wait_next_records(timeout)
        app: BulkApp = self.app  # type: ignore[assignment]
        if records and app.bulk_topics:
            bulk = {tp: recs for tp, recs in records.items() if tp.topic in app.bulk_topics and recs}
            if bulk:
                records = {tp: recs for tp, recs in records.items() if tp not in bulk}
                async with app.sending():  # exactly-once: the batch and its offsets in the open transaction
                    t0 = time.perf_counter()
                    done = await app.bulk_handler(bulk)
                    app.handle_seconds += time.perf_counter() - t0
                    await app.commits.add({tp: recs[-1].offset + 1 for tp, recs in bulk.items()}, done)
        return records, active

    async def on_partitions_revoked(self, revoked) -> None:
        """Before giving partitions up, commit what is acknowledged (waiting at most
        ``REVOKE_FLUSH_TIMEOUT_S``); the next owner re-reads the rest."""
        app: BulkApp = self.app  # type: ignore[assignment]
        try:  # commit what is done; whatever is not is re-read by the partitions' next owner
            await asyncio.wait_for(app.commits.flush(), REVOKE_FLUSH_TIMEOUT_S)
        except TimeoutError:
            log.info("partitions revoked before batches in flight were committed (%s s)", REVOKE_FLUSH_TIMEOUT_S)
        await super().on_partitions_revoked(revoked)


class BulkTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the :class:`BulkConsumer`."""

    Consumer = BulkConsumer


class BulkApp(faust.App):
    """A Faust app with ``bulk_topics`` routed to ``bulk_handler`` in batches."""

    bulk_topics: frozenset[str] = frozenset()
    bulk_handler: BatchHandler
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    #: exactly-once: read ``read_committed`` (skip aborted transactions' records), and route each
    #: batch inside the transaction given to :meth:`use_transactions` (waited for until then)
    exactly_once: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handle_seconds = 0.0
        self._commits: CommitPipeline | None = None
        self.quiet_lane: QuietLane | None = None
        self.observe_commit: Callable[[float], None] | None = None  # seconds from a batch routed to its offsets committed

    @property
    def commits(self) -> CommitPipeline:
        """The worker's commit pipeline, made on first use (the consumer thread exists by then)."""
        if self._commits is None:
            self._commits = CommitPipeline(self._commit_offsets, observe=self.observe_commit)
        return self._commits

    async def _commit_offsets(self, offsets) -> bool:
        try:
            return await self.consumer._thread.commit(offsets)  # type: ignore[attr-defined]
        except ConsumerNotStarted:  # stopping: the partitions' next owner re-reads from the last commit
            return False

    def use_transactions(self, commits: TransactionalCommits) -> None:
        """Exactly-once: commit offsets in the router producer's transactions instead of through the consumer."""
        self._commits = commits

    @contextlib.asynccontextmanager
    async def sending(self, group: str | None = None) -> AsyncIterator[None]:
        """Hold while sending with the router's producer: the open transaction under exactly-once, else nothing.

        ``group``: the consumer group whose offsets are added meanwhile (None: the app's own)."""
        if not self.exactly_once:
            yield
            return
        while not isinstance(self._commits, TransactionalCommits):  # the producer is not started yet
            await asyncio.sleep(0.01)
        async with self._commits.batch(group):
            yield

    def _new_transport(self):
        return BulkTransport(self.conf.broker_consumer, self)

    async def _stop_consumer(self) -> None:
        # Faust's on_stop: the fetcher is stopped here, the consumer thread only later (with
        # the app's children), so the batches still in flight can be committed in between.
        # The quiet lane first: under exactly-once its offsets ride the same transactions.
        if self.quiet_lane is not None:
            await self.quiet_lane.stop()
        await super()._stop_consumer()
        if self._commits is not None:
            await self._commits.stop()

    def route_in_bulk(self, topics: frozenset[str], handler: BatchHandler) -> None:
        """Send the records of ``topics`` to ``handler`` a fetched batch at a time, instead of
        Faust's agents; the awaitable the handler returns resolves when the outputs are acked."""
        self.bulk_topics = frozenset(topics)
        self.bulk_handler = handler

    def read_quietly(self, lane: QuietLane) -> None:
        """Read ``lane``'s topics (a second consumer) into the bulk handler too; started with
        :meth:`start_quiet_lane`, stopped before the app's commits."""
        self.quiet_lane = lane

    async def start_quiet_lane(self) -> None:
        """Start the quiet lane's consumer (call once the handler can take batches)."""
        if self.quiet_lane is not None:
            await self.quiet_lane.start()
