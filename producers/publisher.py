"""A department publishing its catalogue entries on a rate schedule.

Each record gets an intended send time from the schedule (start + i / rate) before it is
built, so when the producer falls behind, the lag shows as publish delay instead of
silently stretching the run (no coordinated omission). Records are appended to one
aiokafka batch per partition and sent with ``send_batch``: one future per batch rather
than one per record, which is what lets one process publish 100,000 records/s.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from exchange import metrics
from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka import clients
from exchange.kafka.batching import Partitioner, retriable, send_batches
from exchange.kafka.gateway import GatewayGate
from exchange.results.latency import new_histogram, record_many_ns, record_ns
from exchange.runner import clock
from producers.profiles import RateSchedule
from producers.records import RecordFactory
from schemas.envelope import H_ENTRY, H_INTENDED, H_RUN, H_SCHEMA, H_SENT, H_SOURCE, H_TRACE, SCHEMA_VERSION
from schemas.scenario import LoadProfile

log = logging.getLogger(__name__)


class PublishFailed(ExchangeError):
    """The broker refused records with an error that resending cannot cure (a record too
    large, a topic not authorised or invalid…); the message names the department, topic,
    partition and error."""

    exit_code = EXIT_FAILED


MAX_RECORDS_PER_TICK = 20_000  # keep the loop responsive when far behind schedule
MAX_IN_FLIGHT = 200_000  # unacknowledged records before the schedule waits for acks
# Records due within one tick go out together: a 5 ms tick costs at most 5 ms of publish
# delay (measured, like Kafka's linger.ms) and saves a produce request per record.
TICK_S = 0.005
MAX_SLEEP_S = 1.0  # longest sleep while every entry's next record is further off (a department of daily tables)
# Records are generated before the clock starts and replayed with fresh headers (trace
# id, times), as OpenMessaging Benchmark replays payload files: generation then costs
# nothing per record, and every value is still a valid, realistic one.
CORPUS_SIZE = 4096


@dataclass
class PublishStats:
    """What one producer process has published, for its status lines."""

    produced: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retried: int = 0
    errors: int = 0
    sent: int = 0
    publish_delay = None
    publish_latency = None
    #: records with an intended send time before this (epoch ns) are the warm-up's: their
    #: delay and latency go to the warm-up histograms (exchange/runner/warmup.py); 0: no warm-up
    warmup_end_ns: int = 0
    warmup_published: int = 0

    def __post_init__(self) -> None:
        self.publish_delay = new_histogram()
        self.publish_latency = new_histogram()
        self.warmup_delay = new_histogram()
        self.warmup_latency = new_histogram()
        # this interval's raw samples (ns), for OpenMessaging Benchmark's per-interval lists
        self.interval_delay: list[int] = []
        self.interval_latency: list[int] = []

    def take_interval(self) -> tuple[list[int], list[int]]:
        delay, latency = self.interval_delay, self.interval_latency
        self.interval_delay, self.interval_latency = [], []
        return delay, latency

    @property
    def total(self) -> int:
        return sum(self.produced.values())


@dataclass(frozen=True)
class WorkerShare:
    """Which records of every schedule one producer worker publishes: position ``i`` of an
    entry's schedule when ``i % workers == index``.

    Every worker computes the same schedule (same seed, same intended send times, same
    corpus), so the union of the workers' records is exactly the single worker's, each
    record keeps its intended time, and every entry's rate is divided evenly between the
    workers (OpenMessaging Benchmark divides a topic's rate between its producers the same
    way). A record's trace sequence is ``K + 1 + m·P`` for worker ``K`` of ``P``: disjoint
    between workers, dense together (consumers/dedupe.py).
    """

    index: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.workers:
            raise ValueError(f"worker index {self.index} is not in 0…{self.workers - 1} (--worker-index, --workers)")

    def skip(self, position: int) -> int:
        """How many positions from ``position`` to this worker's next one."""
        return (self.index - position) % self.workers

    def positions(self, total: int) -> range:
        """This worker's positions among a schedule's first ``total``."""
        return range(self.index, total, self.workers)


@dataclass
class Schedule:
    entry_id: str
    topic: str
    rate: float
    factory: RecordFactory
    profile: LoadProfile | None = None
    schedule: RateSchedule | None = None  # set by prepare(): the intended send times
    next_index: int = 0
    next_at: int = 0  # ns from the start before which none of its records is due (RateSchedule.next_at)
    partitions: list[int] = field(default_factory=list)
    corpus: list[tuple[bytes | None, bytes, int]] = field(default_factory=list)  # (key, value, partition)


class DepartmentPublisher:
    """One department's producer (its own Kafka client id) for all its scheduled entries."""

    def __init__(
        self,
        department: str,
        producer_index: int,
        schedules: list[Schedule],
        bootstrap: str,
        stats: PublishStats,
        run_id: str = "",
        platform: str = "",
        gate: GatewayGate | None = None,
        idempotent: bool = False,
        share: WorkerShare | None = None,
    ) -> None:
        self.department = department
        self.share = share or WorkerShare()
        self.gate = gate  # the boundary gateway it publishes through, if any
        self.platform = platform
        self._run = run_id.encode()
        self.index = producer_index
        self.schedules = schedules
        self.stats = stats
        self._source = department.encode()
        # exactly-once (KIP-98): the broker drops a batch the producer's own retries write twice
        self._producer = clients.producer("publisher", bootstrap, client_id=f"dept-{department}", idempotent=idempotent)
        self._partitioner = Partitioner(self._producer)
        self._in_flight = 0
        self._acked = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        # behind a boundary gateway: (release ns, topic, partition, records, sent ns), in send order
        self._gateway_queue: deque[tuple[int, str, int, list, int]] = deque()
        self._pump: asyncio.Future | None = None
        # trace sequences interleave across workers: worker K of P numbers K+1, K+1+P, …
        self._seq = self.share.index + 1 - self.share.workers
        # topics more than one of its entries publish on (a shared layout): a batch there mixes entries
        self._mixed = {t for t, n in Counter(s.topic for s in schedules).items() if n > 1}
        self.failed: BaseException | None = None  # the first error resending cannot cure; run() raises it

    async def start(self) -> None:
        await self._producer.start()
        for s in self.schedules:
            s.partitions = await self._partitioner.partitions(s.topic)

    def prepare(self, duration_s: float) -> None:
        """Build each entry's corpus before the clock starts (see :data:`CORPUS_SIZE`)."""
        for n, s in enumerate(self.schedules):
            s.schedule = RateSchedule(s.rate, duration_s, s.profile, random.Random(self.index * 1000 + n))
            size = max(1, min(CORPUS_SIZE, s.schedule.expected_total))
            of = self._partitioner.of
            s.corpus = [(key, value, of(s.topic, key, s.partitions)) for key, value in s.factory.encoded(size)]

    async def stop(self) -> None:
        """Wait for the acks still pending (none left after :meth:`run`), stop the producer.

        Called on the way out of a failed run too: failures of pending sends are logged,
        not raised over the error that ended the run."""
        for result in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("%s: a pending send failed while stopping", self.department, exc_info=result)
        await self._producer.stop()

    async def run(self, start_ns: int, duration_s: float) -> None:
        """Publish every scheduled record with intended time in [start, start + duration),
        and wait until every one is acknowledged.

        Records the broker refuses with a retriable error (see :func:`retriable`) are sent
        again; raises :class:`PublishFailed` on any other Kafka error.
        """
        if any(not s.corpus for s in self.schedules):
            self.prepare(duration_s)
        active = list(self.schedules)
        for s in active:
            s.next_at = s.schedule.next_at(s.next_index)
        while active:
            self._raise_failure()
            elapsed = clock.now_ns() - start_ns
            limit = MAX_RECORDS_PER_TICK if self.gate is None else self.gate.allowance(MAX_RECORDS_PER_TICK)
            budget = limit * self.share.workers  # in schedule positions: this worker builds one in P of them
            batches: dict[tuple[str, int], list] = {}
            looked = False
            for s in active:
                if s.next_at > elapsed:  # nothing of it can be due yet (a daily table: most ticks)
                    continue
                looked = True
                n = min(s.schedule.due(elapsed) - s.next_index, budget)
                if n > 0:
                    budget -= n
                    self._build(s, n, start_ns, batches)
                s.next_at = s.schedule.next_at(s.next_index)
            batches = {k: v for k, v in batches.items() if v}
            if batches:
                await self._send(batches)
            if looked:
                active = [s for s in active if not s.schedule.finished(s.next_index, elapsed)]
            while self._in_flight > MAX_IN_FLIGHT and self.failed is None:
                self._acked.clear()
                await self._acked.wait()
            if active:
                # a gateway that held it back: a tick; a full tick's worth: go on at once; else
                # sleep a tick, or until the next record of any entry is due if that is later
                if limit < MAX_RECORDS_PER_TICK:
                    await asyncio.sleep(TICK_S)
                elif budget <= 0:
                    await asyncio.sleep(0)
                else:  # at most a second: a send's failure is raised at the next wake
                    wake = min(s.next_at for s in active) - (clock.now_ns() - start_ns)
                    await asyncio.sleep(min(MAX_SLEEP_S, max(TICK_S, wake / 1e9)))
        while self._tasks and self.failed is None:  # a resend starts new tasks: wait for those too
            await asyncio.gather(*list(self._tasks))
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.failed is not None:
            raise self.failed

    def _build(self, s: Schedule, n: int, start_ns: int, batches: dict) -> None:
        """Append this worker's share of the schedule's next ``n`` records, with their headers, to the per-partition lists."""
        sent = b"%d" % clock.now_ns()
        tail = ((H_ENTRY, s.entry_id.encode()), (H_SOURCE, self._source), (H_SENT, sent), (H_SCHEMA, SCHEMA_VERSION), (H_RUN, self._run))
        lists = {p: batches.setdefault((s.topic, p), []) for p in s.partitions}
        offsets = s.schedule.offsets(s.next_index, n)
        corpus = s.corpus
        size = len(corpus)
        entry_id = s.entry_id
        prefix = b"%d." % self.index
        seq = self._seq
        step, skip = self.share.workers, self.share.skip(s.next_index)
        for i, offset in zip(range(s.next_index + skip, s.next_index + n, step), offsets[skip::step], strict=True):
            key, value, p = corpus[i % size]
            intended = start_ns + offset
            seq += step
            headers = [(H_TRACE, prefix + b"%d" % seq), (H_INTENDED, b"%d" % intended), *tail]
            lists[p].append((key, value, headers, intended, entry_id))
        self._seq = seq
        s.next_index += n

    async def _send(self, batches: dict) -> None:
        sent_ns = clock.now_ns()
        delay = self.stats.publish_delay
        interval = self.stats.interval_delay
        for (topic, partition), records in batches.items():
            delays = [sent_ns - r[3] for r in records]
            warmup_end = self.stats.warmup_end_ns
            if records[0][3] < warmup_end or records[-1][3] < warmup_end:  # a batch of the warm-up
                record_many_ns(self.stats.warmup_delay, [d for d, r in zip(delays, records, strict=True) if r[3] < warmup_end])
                record_many_ns(delay, [d for d, r in zip(delays, records, strict=True) if r[3] >= warmup_end])
            else:
                record_many_ns(delay, delays)
            interval.extend(delays)
            if self.gate is not None and self.gate.latency_s:
                self._through_gateway(topic, partition, records, sent_ns)
            else:
                await self._send_records(topic, partition, records, sent_ns)

    def _through_gateway(self, topic: str, partition: int, records: list, sent_ns: int) -> None:
        """Queue ``records`` behind the gateway's latency; one pump sends what is due.

        One pump rather than a task per tick: aiokafka sends a partition's next batch only
        after the previous one's request returns, so a batch per tick each in its own task
        (a record or two at 20 records/s) queued without bound on a loaded machine (the
        guizhou-cascade police-net departments' records waited a minute) and in no set order.
        """
        self._in_flight += len(records)
        self._gateway_queue.append((sent_ns + int(self.gate.latency_s * 1e9), topic, partition, records, sent_ns))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._pump_gateway())
            self._tasks.add(self._pump)
            self._pump.add_done_callback(self._tasks.discard)

    async def _pump_gateway(self) -> None:
        """Send the queued records whose gateway latency has passed, a partition's due records
        as one batch list, in queue order; ends when the queue is empty (or the process failed)."""
        queue = self._gateway_queue
        while queue and self.failed is None:
            wait_ns = queue[0][0] - clock.now_ns()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            now = clock.now_ns()
            due: dict[tuple[str, int], tuple[int, list]] = {}
            while queue and queue[0][0] <= now:
                _, topic, partition, records, sent_ns = queue.popleft()
                self._in_flight -= len(records)
                # a partition's due records go together; their publish latency counts from the earliest send
                due.setdefault((topic, partition), (sent_ns, []))[1].extend(records)
            for (topic, partition), (sent_ns, records) in due.items():
                await self._send_records(topic, partition, records, sent_ns)

    async def _send_records(self, topic: str, partition: int, records: list, sent_ns: int) -> None:
        """Hand ``records`` to the client; a retriable refusal (the partition's queue did not drain in
        ``request_timeout_ms``: a slow or paused broker) sends what did not go out again, anything
        else fails the process (:class:`PublishFailed`). Each batch's ack is awaited in a task."""
        while records:
            sent: list = []
            try:
                await send_batches(self._producer, topic, partition, records, out=sent)
                records = []
            except KafkaError as exc:
                records = records[sum(len(chunk) for _, chunk in sent) :]
                if not self._resendable(exc, topic, partition, len(records)):
                    records = []
            for future, chunk in sent:
                self._in_flight += len(chunk)
                self.stats.sent += len(chunk)
                task = asyncio.ensure_future(self._await_ack(future, topic, partition, chunk, sent_ns))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if records:
                await asyncio.sleep(0.5)

    def _resendable(self, exc: KafkaError, topic: str, partition: int, n: int) -> bool:
        """Whether ``n`` records the client or the broker did not take can be sent again (counted as
        retried); else the process fails with :class:`PublishFailed` naming what was refused."""
        if not retriable(exc):
            self.failed = self.failed or PublishFailed(
                f"{self.department}: the broker refused {n:,} records for {topic}[{partition}] with "
                f"{type(exc).__name__} ({exc}), which resending cannot cure"
            )
            self._acked.set()
            return False
        self.stats.retried += n
        metrics.PUBLISH_RETRIES.labels(self.platform, self.department).inc()
        log.warning("publish to %s[%d] failed (%r); sending %d records again", topic, partition, exc, n)
        return True

    async def _await_ack(self, future: asyncio.Future, topic: str, partition: int, chunk: list, sent_ns: int) -> None:
        try:
            await future
        except KafkaError as exc:
            self._in_flight -= len(chunk)
            if not self._resendable(exc, topic, partition, len(chunk)):
                return
            await asyncio.sleep(0.5)
            await self._send_records(topic, partition, chunk, sent_ns)
            return
        ack_ns = clock.now_ns()
        warmup_end = self.stats.warmup_end_ns
        warm = sum(1 for r in chunk if r[3] < warmup_end) if chunk[0][3] < warmup_end or chunk[-1][3] < warmup_end else 0
        if warm:
            record_ns(self.stats.warmup_latency, ack_ns - sent_ns, warm)
            self.stats.warmup_published += warm
        if warm < len(chunk):
            record_ns(self.stats.publish_latency, ack_ns - sent_ns, len(chunk) - warm)
        self.stats.interval_latency.extend([ack_ns - sent_ns] * len(chunk))
        if topic in self._mixed:
            by_entry: dict[str, list] = {}
            for r in chunk:
                by_entry.setdefault(r[4], []).append(r)
        else:
            by_entry = {chunk[0][4]: chunk}  # a chunk is one topic partition: one entry
        for entry, records in by_entry.items():
            metrics.RECORDS_PUBLISHED.labels(self.platform, entry, self.department).inc(len(records))
            metrics.PUBLISHED_BYTES.labels(self.platform, entry, self.department).inc(sum(len(r[1]) for r in records))
            self.stats.produced[entry] += len(records)
        # per batch (records of a batch share it); per-record figures are in result.json
        metrics.PUBLISH_LATENCY.labels(self.platform, self.department).observe((ack_ns - sent_ns) / 1e9)
        metrics.PUBLISH_DELAY.labels(self.platform, self.department).observe(max(0, sent_ns - chunk[0][3]) / 1e9)
        self._in_flight -= len(chunk)
        self._acked.set()
