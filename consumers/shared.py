"""One Kafka consumer reading many subscribing departments' delivery topics for them.

A department's own consumer (``--subscriber-clients per-department``) is what a real
department runs: its own group, its own fetches. Thirty-odd of them in one Python process
cost the simulator more than the records do: each polls on its own, heartbeats its own
group and commits its own offsets, and every fetch is a request the broker answers (on
Dongguan at full rate, fetching, heartbeats and commits were ~45 % of the consumers
process and a good part of the broker's CPU; docs/performance.md). ``SharedFetch``
(``--subscriber-clients shared``; ``auto``, the default, on Apache Kafka) reads all of a consumer worker's plain
departments with one client in one group (:func:`shared_group`) and hands each
department its own partitions' records: counting, deduplication, latency, lag, pauses and
checkpoints stay per department (consumers/subscriber.py). Departments with a consume rate
or a boundary gateway keep a client of their own, since they hold back their own reads.
Departments that receive only quiet entries (daily, monthly, batch: :func:`quiet_departments`)
share a second client, group ``…-quiet``, whose fetches wait as the router's quiet lane does,
so that the frequent fetches name only the partitions real-time records arrive on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from consumers.subscriber import Subscriber, _Resume
from exchange.kafka import clients
from exchange.router.lanes import entry_is_quiet
from exchange.runner import clock
from schemas.scenario import Scenario

__all__ = ["MODES", "SharedFetch", "quiet_departments", "shared_group", "subscriber_clients", "wants_own_client"]

MODES = ("auto", "shared", "per-department")  # --subscriber-clients


def subscriber_clients(requested: str, broker_kind: str | None) -> str:
    """How the consumer workers read: ``requested`` (``auto``, ``shared`` or
    ``per-department``) unless ``auto``, which is ``per-department`` on Tansu and ``shared``
    on Apache Kafka (and whenever the kind is not known).

    Why not shared everywhere: on Dongguan at full rate (60 s, one sitting) one shared client
    on Tansu 0.6 fell further behind every second (router-to-subscriber p50 3.1 s, e2e p99
    21 s) where a consumer per department kept up (0.4 s, 2.1 s); on Kafka shared took that
    hop's p50 from 139 to 42 ms. The likeliest cause, not proven: Tansu serves one fetch's
    partitions one after another, each at a cost that grows with the batches it holds, so
    one client's fetches of 34 partitions are slower than 34 clients' fetches of one.
    """
    if requested != "auto":
        return requested
    return "per-department" if broker_kind == "tansu" else "shared"


def shared_group(platform: str, worker: int, workers: int) -> str:
    """The shared client's consumer group, ``dx-PLATFORM-subscribers-K-of-C``: one per consumer
    worker K of C (its departments are its own; another worker count deals them differently),
    per scenario platform, so runs of other scenarios on one cluster keep out of it."""
    return f"dx-{platform}-subscribers-{worker}-of-{workers}"


def quiet_departments(scenario: Scenario, departments: Iterable[str]) -> frozenset[str]:
    """Those of ``departments`` that subscribe only to quiet entries (daily, monthly and batch
    tables at 1 record/s or less: the router's quiet lane, exchange/router/lanes.py).

    A worker's shared client reads them apart (:class:`SharedFetch` with ``quiet_fetch_wait_ms``):
    aiokafka names every partition in every fetch, and on Dongguan 75 of the 116 subscribing
    departments receive only daily tables: 300 of the 464 partitions the one client fetched
    as often as GPS records came. A department with no subscription receives nothing and is
    quiet too.
    """
    rates = scenario.entry_rates()
    entries = scenario.entries
    subscribed: dict[str, list[str]] = defaultdict(list)
    for sub in scenario.subscriptions:
        subscribed[sub.consumer].append(sub.entry)
    return frozenset(d for d in departments if all(entry_is_quiet(entries[e], rates.get(e, 0.0)) for e in subscribed.get(d, ()) if e in entries))


def wants_own_client(scenario: Scenario, department: str) -> bool:
    """A department that holds back its own reads (a consume rate, a boundary gateway) reads alone."""
    return scenario.department_ids[department].consume_rate is not None or scenario.gateway_of(department) is not None


class SharedFetch:
    """One aiokafka consumer for ``subscribers`` (made with ``shared=True``), in ``group``.

    ``poll`` fetches once for all of them and gives each :meth:`Subscriber.ingest` its own
    partitions' records. A paused department's partitions are paused on the client
    (:meth:`aiokafka.AIOKafkaConsumer.pause`), so the others read on.
    """

    paused = False  # the process's read loop asks; pauses are per department, below

    def __init__(
        self,
        subscribers: list[Subscriber],
        *,
        bootstrap: str,
        group: str,
        fetch_wait_ms: int,
        auto_commit: bool,
        session_timeout_ms: int,
        isolation_level: str,
        quiet_fetch_wait_ms: int | None = None,
    ) -> None:
        """With ``quiet_fetch_wait_ms``, ``subscribers`` receive only quiet entries
        (:func:`quiet_departments`): the client's fetches wait that long (``exchange run
        --quiet-fetch-wait-ms``, :data:`~exchange.router.lanes.QUIET_FETCH_WAIT_MS` by default)
        instead of ``fetch_wait_ms`` and, on Kafka, for 1 MiB, as the router's quiet lane does. A
        quiet delivery can wait that much more; the client fetches twice a second instead of
        whenever one trickles in."""
        self._by_topic = {s.topic: s for s in subscribers}
        self.quiet = quiet_fetch_wait_ms is not None
        waits: dict = (
            dict(fetch_max_wait_ms=quiet_fetch_wait_ms, fetch_min_bytes=clients.MiB, consumer_timeout_ms=clients.QUIET_WAKE_MS, fetch_sessions=True)
            if self.quiet
            else dict(fetch_max_wait_ms=fetch_wait_ms)
        )
        self._consumer = clients.consumer(
            "subscriber",
            bootstrap,
            group_id=group,
            client_id=group,
            enable_auto_commit=auto_commit,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=min(500, session_timeout_ms // 6),
            isolation_level=isolation_level,
            **waits,
        )
        for s in subscribers:
            s._consumer = self._consumer
        self._paused_topics: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"SharedFetch({len(self._by_topic)} {'quiet ' if self.quiet else ''}departments)"

    async def start(self) -> None:
        await self._consumer.start()
        self._listener = _Resume(self._consumer, self._by_topic)  # re-pauses paused departments after a rebalance
        self._consumer.subscribe(sorted(self._by_topic), listener=self._listener)

    async def stop(self) -> None:
        await self._consumer.stop()

    def _sync_pauses(self) -> None:
        """Pause the partitions of paused departments, resume the others' (a rebalance resets them)."""
        paused = frozenset(topic for topic, s in self._by_topic.items() if s.paused)
        if not paused and not self._paused_topics:
            return
        consumer = self._consumer
        consumer.pause(*(tp for tp in consumer.assignment() if tp.topic in paused))
        resume = [tp for tp in consumer.paused() if tp.topic not in paused]
        if resume:
            consumer.resume(*resume)
        self._paused_topics = paused

    async def poll(self, timeout_ms: int = 200) -> int:
        """Fetch once for every department and record what each received; returns how many records were read."""
        self._sync_pauses()
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            return 0
        now = clock.now_ns()
        by_topic: dict[str, dict] = defaultdict(dict)
        for tp, records in batches.items():
            by_topic[tp.topic][tp] = records
        return sum(self._by_topic[topic].ingest(part, now) for topic, part in by_topic.items())
