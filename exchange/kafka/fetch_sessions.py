"""Incremental fetch sessions (KIP-227) for consumers of many quiet partitions.

aiokafka sends a *full* fetch every time: every assigned partition, in the request and in the
answer. For the router's quiet lane (Dongguan's 1,319 daily and monthly tables) that is
~8 ms to encode a request and ~10 ms to decode an empty answer, about once a second, for
partitions that carry a record a day (docs/performance.md, "The idle Dongguan router").

Kafka's remedy, in every Java consumer since 1.1, is the fetch session: the first fetch to a
broker is full and the broker answers with a session id; each later fetch names only the
partitions whose fetch offset changed (or were added, or ``forgotten_topics_data`` when
removed), and the broker answers only partitions that have records, a changed high
watermark or log start offset, or an error. An idle incremental fetch is a few dozen bytes
each way.

The bookkeeping follows the Java client's ``FetchSessionHandler`` (clients/src/main/java/
org/apache/kafka/clients/FetchSessionHandler.java):

- ``epoch`` 0 asks for a full fetch; with ``session_id`` 0 it opens a session, with the
  session's id it closes that one and opens another. Epoch 1 is the first incremental fetch;
  each answered fetch adds one, wrapping to 1.
- ``FETCH_SESSION_ID_NOT_FOUND`` (the broker evicted the session) starts over with id 0; any
  other error, a failed or cancelled request, or an answer that names a partition the session
  does not hold, closes the session with the next (full) fetch. Nothing in such an answer is
  used: the next full fetch reads those partitions again from the consumer's positions.
- An answer with session id 0 means the broker keeps no session (Tansu: every fetch stays
  full, as plain aiokafka's).
- A new assignment (a rebalance) makes the next fetch to each broker full, so the new partition
  states learn every high watermark again.
- A stopped consumer does not close its sessions: the broker evicts an idle one when it needs
  the slot (``max.incremental.fetch.session.cache.slots``, 1,000; idle for
  ``min.incremental.fetch.session.eviction.ms``, 2 min). A run opens one per quiet consumer.

The broker keeps a fetch offset per session partition and serves from it; it never moves that
offset itself. The consumer's position moves only as records are consumed, and each moved
position is sent with the next fetch, so a record answered but not consumed (a seek, a
rebalance) is answered again: nothing is skipped.

A :class:`SessionConsumer` is an :class:`aiokafka.AIOKafkaConsumer` that fetches in sessions
(``clients.consumer`` makes one for a profile with ``fetch_sessions``, and for
``fetch_sessions=True``); :func:`use_fetch_sessions` gives one to a consumer already started.
Counters for tests and benchmarks: :attr:`SessionFetcher.stats`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.protocol.fetch import FetchRequest

log = logging.getLogger(__name__)

#: Kafka's error codes for a fetch session (org.apache.kafka.common.protocol.Errors).
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71
#: The lowest Fetch version with sessions.
SESSION_VERSION = 7
_MAX_EPOCH = 2**31 - 1

#: One partition's fetch parameters as the session holds them: (fetch offset, max bytes).
_Params = tuple[int, int]


@dataclass
class FetchSession:
    """The client's side of one broker's fetch session (see the module docstring).

    ``partitions`` is what the broker holds for the session once the last request it took is
    applied: partition → (fetch offset, max bytes), in the order sent.
    """

    node_id: int
    id: int = 0
    epoch: int = 0
    partitions: dict[TopicPartition, _Params] = field(default_factory=dict)
    #: False once the broker spoke a Fetch version without sessions (< 7): every fetch is then
    #: sessionless, as aiokafka's. A broker that answers session id 0 is asked again each time.
    offered: bool = True

    @property
    def full(self) -> bool:
        return self.epoch == 0

    def close_existing(self) -> None:
        """The next fetch is full and replaces the session (Java: ``nextCloseExisting``)."""
        self.epoch = 0

    def forget(self) -> None:
        """The broker has no such session: the next fetch opens a new one (``INITIAL``)."""
        self.id = 0
        self.epoch = 0


@dataclass
class SessionStats:
    """Counts for one fetcher: requests by kind and the partitions they named."""

    full: int = 0
    incremental: int = 0
    partitions_sent: int = 0
    partitions_answered: int = 0
    resets: int = 0
    #: fetches the broker refused, by Kafka error code
    errors: dict[int, int] = field(default_factory=dict)


class SessionFetchRequest(FetchRequest):
    """A fetch in a session: ``topics`` is every partition fetched, at the offsets the answer
    is checked against (what aiokafka's fetcher reads back); the request sent names only the
    partitions the session does not already hold at those parameters."""

    def __init__(self, base: FetchRequest, session: FetchSession, stats: SessionStats) -> None:
        super().__init__(base._max_wait_ms, base._min_bytes, base._max_bytes, base._isolation_level, base._topics, rack_id=base._rack_id)
        self.session = session
        self.stats = stats
        wanted: dict[TopicPartition, _Params] = {}
        for topic, partitions in base.topics:
            for partition, offset, max_bytes in partitions:
                wanted[TopicPartition(topic, partition)] = (offset, max_bytes)
        self.wanted = wanted
        # fixed here, as the request is made: the session's state moves on with the answer
        self.session_id = session.id if session.offered else 0
        self.epoch = session.epoch if session.offered else -1
        if self.epoch <= 0:
            self.sent = list(base.topics)
            self.forgotten: list[tuple[str, list[int]]] = []
        else:
            held = session.partitions
            changed: dict[str, list[tuple[int, int, int]]] = {}
            for tp, params in wanted.items():
                if held.get(tp) != params:
                    changed.setdefault(tp.topic, []).append((tp.partition, params[0], params[1]))
            gone: dict[str, list[int]] = {}
            for tp in held:
                if tp not in wanted:
                    gone.setdefault(tp.topic, []).append(tp.partition)
            self.sent = list(changed.items())
            self.forgotten = list(gone.items())
        self.version: int | None = None

    def build(self, request_struct_class: Any) -> Any:
        self.version = version = request_struct_class.API_VERSION
        if version < SESSION_VERSION or self.epoch < 0:
            self.epoch = -1  # sessionless: a full fetch, as aiokafka sends it
            self.sent, self.forgotten = list(self._topics), []
            return super().build(request_struct_class)
        leader_epoch = version >= 9
        topics = [
            (topic, [(p, -1, offset, -1, max_bytes) if leader_epoch else (p, offset, -1, max_bytes) for p, offset, max_bytes in parts])
            for topic, parts in self.sent
        ]
        args: list[Any] = [
            -1,
            self._max_wait_ms,
            self._min_bytes,
            self._max_bytes,
            self._isolation_level,
            self.session_id,
            self.epoch,
            topics,
            self.forgotten,
        ]
        if version >= 11:
            args.append(self._rack_id)
        return request_struct_class(*args)

    # ------------------------------------------------------------------ the answer
    def failed(self) -> None:
        """The request failed or was cancelled: whether the broker applied it is unknown."""
        if self.epoch >= 0:
            self.session.close_existing()
            self.stats.resets += 1

    def answered(self, response: Any) -> None:
        """Move the session on from ``response``; an answer the session cannot use is emptied
        (its partitions are read again by the next, full, fetch)."""
        session, stats = self.session, self.stats
        if self.epoch < 0:
            stats.full += 1
            stats.partitions_sent += len(self.wanted)
            if self.version is not None and self.version < SESSION_VERSION:
                session.offered = False
            return
        stats.partitions_sent += sum(len(parts) for _, parts in self.sent)
        if self.epoch == 0:
            stats.full += 1
        else:
            stats.incremental += 1
        error = getattr(response, "error_code", 0)
        if error:
            log.info("fetch session %s on node %s: error %s; the next fetch is full", self.session_id, session.node_id, error)
            stats.errors[error] = stats.errors.get(error, 0) + 1
            if error == FETCH_SESSION_ID_NOT_FOUND:
                session.forget()
            else:
                session.close_existing()
            stats.resets += 1
            response.topics = []
            return
        answered = {TopicPartition(topic, p[0]) for topic, parts in response.topics for p in parts}
        stats.partitions_answered += len(answered)
        if not answered <= self.wanted.keys():
            log.info("fetch session %s on node %s answered partitions it does not hold; the next fetch is full", self.session_id, session.node_id)
            session.close_existing()
            stats.resets += 1
            response.topics = []
            return
        session.partitions = self.wanted
        new_id = response.session_id
        if new_id == 0:
            # no session: the broker keeps none (Tansu), had no room for one, or closed it
            session.forget()
        elif self.epoch == 0:
            session.id, session.epoch = new_id, 1
        else:
            session.epoch = 1 if self.epoch >= _MAX_EPOCH else self.epoch + 1


class _SessionClient:
    """The consumer's client as its fetcher sees it: fetches in a session are followed to
    their answer; every other call goes to the client unchanged."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, **kwargs)
        except BaseException:
            request.failed()
            raise
        request.answered(response)
        return response


class SessionFetcher(Fetcher):
    """aiokafka's :class:`~aiokafka.consumer.fetcher.Fetcher` with one fetch session per
    broker (module docstring)."""

    def __init__(self, client: Any, subscriptions: Any, **kwargs: Any) -> None:
        self.sessions: dict[int, FetchSession] = {}
        self.stats = SessionStats()
        self._assignment: Any = None
        super().__init__(_SessionClient(client), subscriptions, **kwargs)

    def _get_actions_per_node(self, assignment: Any) -> Any:
        if assignment is not self._assignment:
            # a new assignment has new partition states (high watermarks unknown): one full
            # fetch per broker reports them all again, as the Java client's would
            self._assignment = assignment
            for session in self.sessions.values():
                session.close_existing()
        fetch_requests, *rest = super()._get_actions_per_node(assignment)
        wrapped = []
        for node_id, request in fetch_requests:
            session = self.sessions.get(node_id)
            if session is None:
                session = self.sessions[node_id] = FetchSession(node_id)
            wrapped.append((node_id, SessionFetchRequest(request, session, self.stats)))
        return (wrapped, *rest)


class SessionConsumer(AIOKafkaConsumer):
    """An :class:`aiokafka.AIOKafkaConsumer` whose fetches are in sessions (module docstring);
    same arguments. Its fetcher, once started: :attr:`fetcher`."""

    async def start(self) -> None:
        await super().start()
        await use_fetch_sessions(self)

    @property
    def fetcher(self) -> SessionFetcher | None:
        return self._fetcher if isinstance(self._fetcher, SessionFetcher) else None


async def use_fetch_sessions(consumer: AIOKafkaConsumer) -> SessionFetcher:
    """Give a started ``consumer`` a :class:`SessionFetcher` in place of aiokafka's fetcher.

    Call it right after ``start()``: the old fetcher is closed, and whatever it had fetched
    and not handed out is dropped (positions are the subscription's, so the new fetcher reads
    it again). Returns the new fetcher."""
    old = consumer._fetcher
    if isinstance(old, SessionFetcher):
        return old
    fetcher = SessionFetcher(
        consumer._client,
        consumer._subscription,
        key_deserializer=consumer._key_deserializer,
        value_deserializer=consumer._value_deserializer,
        fetch_min_bytes=consumer._fetch_min_bytes,
        fetch_max_bytes=consumer._fetch_max_bytes,
        fetch_max_wait_ms=consumer._fetch_max_wait_ms,
        max_partition_fetch_bytes=consumer._max_partition_fetch_bytes,
        check_crcs=consumer._check_crcs,
        fetcher_timeout=consumer._consumer_timeout,
        retry_backoff_ms=consumer._retry_backoff_ms,
        auto_offset_reset=consumer._auto_offset_reset,
        isolation_level=consumer._isolation_level,
        client_rack=consumer._client_rack,
    )
    consumer._fetcher = fetcher
    await closing_fetches(old.close())
    return fetcher


async def closing_fetches(awaitable: Awaitable[Any]) -> None:
    """Await an aiokafka fetcher's ``close()`` or a consumer's ``stop()``. Those re-raise the
    cancellation of a fetch task of their own caught mid-backoff (aiokafka 0.12-0.14,
    ``Fetcher.close``): that one is swallowed; a cancellation of the awaiting task is not."""
    try:
        await awaitable
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
