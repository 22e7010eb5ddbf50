"""A subscribing department reading its delivery topic and measuring what it receives.

End-to-end latency is measured twice per record, from the producer's send time and from
the schedule's intended send time; the second includes any time the producer spent
behind schedule, so a stalled producer cannot hide (see docs/results.md, "Latency, measured right").
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from hdrh.histogram import HdrHistogram

from consumers.dedupe import SeenSet
from consumers.hops import HopStats
from exchange import metrics
from exchange.kafka import clients
from exchange.results.latency import MAX_PLAUSIBLE_NS, ClockSkew, decode, encode, new_histogram, record_many_ns
from exchange.runner import clock
from exchange.runner.warmup import read_warmup_end
from schemas.envelope import H_ENTRY, H_HOPS, H_INTENDED, H_RUN, H_SENT, H_SOURCE, H_SUBSCRIPTION, H_TRACE


class FlowStats:
    """What one subscription (entry → consumer) received.

    ``e2e`` and ``e2e_intended`` hold the records after the warm-up; the warm-up's own
    (exchange/runner/warmup.py) are in ``warmup_e2e`` and ``warmup_e2e_intended``. ``delivered``
    counts both; ``warmup_delivered`` the warm-up's share of it.
    """

    __slots__ = (
        "delivered",
        "duplicates",
        "e2e",
        "e2e_intended",
        "interval",
        "warmup_delivered",
        "warmup_e2e",
        "warmup_e2e_intended",
        "within_cycle",
    )

    def __init__(self) -> None:
        self.within_cycle = 0  # batch records delivered before their next update cycle
        self.interval: list[int] = []  # this interval's end-to-end samples, ns (warm-up included)
        self.delivered = 0
        self.duplicates = 0
        self.warmup_delivered = 0
        self.e2e: HdrHistogram = new_histogram()
        self.e2e_intended: HdrHistogram = new_histogram()
        self.warmup_e2e: HdrHistogram = new_histogram()
        self.warmup_e2e_intended: HdrHistogram = new_histogram()

    def snapshot(self) -> dict:
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "within_cycle": self.within_cycle,
            "e2e": encode(self.e2e),
            "e2e_intended": encode(self.e2e_intended),
            "warmup_delivered": self.warmup_delivered,
            "warmup_e2e": encode(self.warmup_e2e),
            "warmup_e2e_intended": encode(self.warmup_e2e_intended),
        }

    @classmethod
    def restore(cls, data: dict) -> FlowStats:
        flow = cls()
        flow.delivered, flow.duplicates, flow.within_cycle = data["delivered"], data["duplicates"], data["within_cycle"]
        flow.e2e, flow.e2e_intended = decode(data["e2e"]), decode(data["e2e_intended"])
        flow.warmup_delivered = data.get("warmup_delivered", 0)
        if "warmup_e2e" in data:
            flow.warmup_e2e, flow.warmup_e2e_intended = decode(data["warmup_e2e"]), decode(data["warmup_e2e_intended"])
        return flow


class _Resume(ConsumerRebalanceListener):
    """After a rebalance, read on from where this process got to, not from the committed offsets.

    A department that loses and gets back its partitions (its group session ran out on a busy
    machine) would otherwise re-read up to a commit interval of records, counted as duplicates:
    what it already counted is behind its own position, so nothing is lost by going on from there.
    ``subscribers`` maps each topic the client reads to the department reading it.
    """

    def __init__(self, consumer, subscribers: dict[str, Subscriber]) -> None:
        self._consumer = consumer
        self._subscribers = subscribers

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        paused = []
        for tp in assigned:
            subscriber = self._subscribers.get(tp.topic)
            if subscriber is None:
                continue
            if tp in subscriber._positions:
                self._consumer.seek(tp, subscriber._positions[tp])
            if subscriber.paused:  # a new assignment starts unpaused: a shared client (consumers/shared.py) must not read it
                paused.append(tp)
        if paused:
            self._consumer.pause(*paused)


class Subscriber:
    """One aiokafka consumer in the department's own group, on its delivery topic."""

    def __init__(
        self,
        department: str,
        topic: str,
        bootstrap: str,
        group: str,
        seen: SeenSet,
        run_id: str = "",
        fetch_wait_ms: int = 10,
        platform: str = "",
        hops: HopStats | None = None,
        auto_commit: bool = True,
        session_timeout_ms: int = 6000,
        isolation_level: str = "read_uncommitted",
        shared: bool = False,
    ) -> None:
        self.department = department
        # read by a SharedFetch (consumers/shared.py), which sets _consumer to its own client
        self.shared = shared
        self.hops = hops if hops is not None else HopStats()
        self.topic = topic
        self.flows: dict[str, FlowStats] = defaultdict(FlowStats)
        self.unlabelled = 0
        self.foreign = 0  # records of other runs on a shared cluster
        # per source department: deliveries whose latency cannot be true (their clocks disagree
        # with ours), kept out of every latency figure
        self.clock_skew = ClockSkew()
        self.listeners: list = []
        self.sampling: set[str] = set()  # flows still wanting delivery samples (consumers/samples.py)
        self.sampler: Callable[..., None] | None = None  # called as f(sampling, consumer, flow, record, headers, now_ns) for those
        self.platform = platform
        self._children: dict[bytes, tuple] = {}
        self._positions: dict = {}
        self.consume_rate: float | None = None
        self.gateway_latency_ns = 0  # a boundary gateway between it and its hub adds this to every record
        # deliveries with an intended send time before this (epoch ns) are the warm-up's (exchange/runner/warmup.py);
        # 0: no warm-up. With warmup_file set, read from it on the first poll that returns records.
        self.warmup_end_ns = 0
        self.warmup_file: Path | None = None
        self.cycles: dict[str, int] = {}  # batch entries: update cycle, ns
        self._next_read = 0.0
        self._max_records: int | None = None  # called as f(consumer, entry, key, headers, now_ns) for each new delivery
        self._run = run_id.encode()
        self.received = 0
        self.first_ns = 0
        self.last_ns = 0
        self._seen = seen
        self.paused = False  # a chaos fault: the department's system stops reading for a while
        self._lag = 0
        self.lag_known = False  # False until the group has assigned the topic (and while the broker does not answer)
        # Auto-commit when nothing is checkpointed; else the process commits after each
        # checkpoint (consumers/checkpoint.py), so committed offsets never pass it.
        self._consumer = (
            None
            if shared
            else clients.consumer(  # subscribed in start(), with _Resume
                "subscriber",
                bootstrap,
                group_id=group,
                client_id=f"sub-{department}",
                enable_auto_commit=auto_commit,
                fetch_max_wait_ms=fetch_wait_ms,  # Tansu holds an empty fetch for the whole wait
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=min(500, session_timeout_ms // 6),
                isolation_level=isolation_level,  # read_committed under exactly-once: aborted transactions never arrive
            )
        )

    def _metric_children(self, sub: bytes):
        children = self._children.get(sub)
        if children is None:
            name = sub.decode()
            children = self._children[sub] = (
                metrics.RECORDS_DELIVERED.labels(self.platform, name, self.department),
                metrics.END_TO_END_LATENCY.labels(self.platform, name, self.department),
                metrics.DUPLICATES_DROPPED.labels(self.platform, self.department),
            )
        return children

    def lag(self) -> int:
        """Records on the delivery topic not yet read, as of the last :meth:`refresh_lag`."""
        return self._lag

    async def refresh_lag(self, timeout_s: float = 1.0) -> None:
        """Lag from high-water marks and our positions, once a second.

        Reading normally, the fetcher's high-water marks and the consumer's positions give it
        without a request. While the department is paused the marks go stale (nothing is
        fetched), and a just-restarted consumer has no marks yet: then the broker's end
        offsets are asked for. ``lag_known`` says when it cannot be known (no assignment yet,
        or the broker does not answer).
        """
        tps = self._consumer.assignment()
        if self.shared:  # the shared client holds every department's partitions: only ours
            tps = {tp for tp in tps if tp.topic == self.topic}
        if not tps:
            self.lag_known = False
            return
        highs = {tp: self._consumer.highwater(tp) for tp in tps}
        if not self.paused and all(highs[tp] is not None for tp in tps):
            # reading normally: the fetcher's marks are fresh, no request needed. A partition
            # that has had no record for us yet has a position all the same (the fetcher
            # fetched from it: that is where its mark comes from), and asking for it sends
            # nothing; asking the broker's end offsets instead cost a ListOffsets request a
            # second for every department with such a partition (41 a second in Dongguan)
            total = 0
            for tp in tps:
                position = self._positions.get(tp)
                if position is None:
                    try:
                        position = await asyncio.wait_for(self._consumer.position(tp), timeout_s)
                    except (TimeoutError, Exception):  # noqa: BLE001 - a figure for a gauge; try again next second
                        self.lag_known = False
                        return
                total += max(0, highs[tp] - position)
            self._lag, self.lag_known = total, True
            return
        try:
            ends = await asyncio.wait_for(self._consumer.end_offsets(list(tps)), timeout_s)
            total = 0
            for tp in tps:
                position = self._positions.get(tp)
                if position is None:
                    position = await asyncio.wait_for(self._consumer.position(tp), timeout_s)
                # Tansu answers ListOffsets with the last batch's base offset + 1: a lower bound
                total += max(0, max(ends[tp], highs[tp] or 0) - position)
        except (TimeoutError, Exception):  # noqa: BLE001 - a figure for a gauge; try again next second
            self.lag_known = False
            return
        self._lag, self.lag_known = total, True

    def snapshot(self) -> dict:
        """Counters and positions for a checkpoint (taken with no await in between: consistent)."""
        return {
            "flows": {name: f.snapshot() for name, f in self.flows.items()},
            "positions": [[tp.partition, position] for tp, position in self._positions.items()],
            "received": self.received,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "unlabelled": self.unlabelled,
            "foreign": self.foreign,
            "clock_skew": self.clock_skew.snapshot(),
        }

    def restore(self, data: dict) -> None:
        for name, flow in data["flows"].items():
            self.flows[name] = FlowStats.restore(flow)
        self.received, self.first_ns, self.last_ns = data["received"], data["first_ns"], data["last_ns"]
        self.unlabelled, self.foreign = data["unlabelled"], data["foreign"]
        self.clock_skew = ClockSkew.restore(data.get("clock_skew", {}))

    async def commit(self, positions: list[list[int]]) -> None:
        """Commit the positions of a checkpoint already written."""
        if positions:
            await self._consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "") for p, o in positions})

    async def start(self) -> None:
        if not self.shared:
            await self._consumer.start()
            self._consumer.subscribe([self.topic], listener=_Resume(self._consumer, {self.topic: self}))

    async def stop(self) -> None:
        if not self.shared:
            await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> int:
        """Read what is there, record it; returns how many records were read."""
        if self.consume_rate is not None:  # a department system that takes in only so much
            wait = self._next_read - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        if self.gateway_latency_ns and batches:
            await self._cross_gateway(batches)
        return self.ingest(batches, clock.now_ns())

    def ingest(self, batches: dict, now: int) -> int:
        """Count and measure fetched records (``{TopicPartition: [ConsumerRecord]}``) received at
        ``now`` (epoch ns); returns how many were read."""
        if self.warmup_file is not None and batches:
            try:  # written by the producers before their first record: there once one arrives
                self.warmup_end_ns, self.warmup_file = read_warmup_end(self.warmup_file), None
            except FileNotFoundError:
                pass  # only records of other runs so far
        warmup_end = self.warmup_end_ns
        n = 0
        seen_add = self._seen.add
        flows = self.flows
        sampling = self.sampling
        # per flow, the durations of this poll: recorded a histogram bucket at a time below
        e2e: dict = {}
        e2e_intended: dict = {}
        warm_e2e: dict = {}
        warm_e2e_intended: dict = {}
        delivered: dict = {}  # per subscription header: deliveries of this poll, for its counter
        for tp, records in batches.items():
            n += len(records)
            if records:
                self._positions[tp] = records[-1].offset + 1
            for r in records:
                h = dict(r.headers)
                sub = h.get(H_SUBSCRIPTION)
                trace = h.get(H_TRACE)
                if sub is None or trace is None:
                    self.unlabelled += 1
                    continue
                if h.get(H_RUN, b"") != self._run:
                    self.foreign += 1
                    continue
                name = sub.decode()
                flow = flows[name]
                if not seen_add(name, trace):
                    flow.duplicates += 1
                    self._metric_children(sub)[2].inc()
                    continue
                flow.delivered += 1
                delivered[sub] = delivered.get(sub, 0) + 1
                if sampling and name in sampling:
                    self.sampler(sampling, self.department, name, r, h, now)  # type: ignore[misc]  # set together with sampling
                for listener in self.listeners:
                    listener(self.department, h.get(H_ENTRY, b"").decode(), r.key, h, now)
                sent, intended = h.get(H_SENT), h.get(H_INTENDED)
                intended_ns = int(intended) if intended is not None else now
                # the warm-up's records are measured apart (exchange/runner/warmup.py): one comparison
                warm = intended_ns < warmup_end
                if warm:
                    flow.warmup_delivered += 1
                # a latency that cannot be true (negative, or over MAX_PLAUSIBLE_NS: the sender's
                # clock is not ours) is counted per source as clock skew and measured nowhere
                took = now - int(sent) if sent is not None else 0
                took_intended = now - intended_ns
                if not (0 <= took <= MAX_PLAUSIBLE_NS and 0 <= took_intended <= MAX_PLAUSIBLE_NS):
                    self.clock_skew.add(h.get(H_SOURCE, b"?").decode(errors="replace"), took, took_intended)
                    continue
                if sent is not None:
                    (warm_e2e if warm else e2e).setdefault(name, []).append(took)
                    hops = h.get(H_HOPS)
                    if hops is not None:
                        self.hops.record(hops, int(sent), now, measured=not warm)
                    flow.interval.append(took)
                if intended is not None:
                    (warm_e2e_intended if warm else e2e_intended).setdefault(name, []).append(took_intended)
                    if self.cycles:
                        cycle = self.cycles.get(h.get(H_ENTRY, b"").decode())
                        if cycle is not None and took_intended <= cycle:
                            flow.within_cycle += 1
        # Prometheus a poll at a time: a counter increment and a histogram observation per
        # delivery took a lock each (exchange/metrics/families.py observe_many_ns)
        for sub, count in delivered.items():
            self._metric_children(sub)[0].inc(count)
        for measured in (e2e, warm_e2e):  # the exported histogram has both, as before
            for name, values in measured.items():
                metrics.observe_many_ns(self._metric_children(name.encode())[1], values)
        for name, values in e2e.items():
            record_many_ns(flows[name].e2e, values)
        for name, values in e2e_intended.items():
            record_many_ns(flows[name].e2e_intended, values)
        for name, values in warm_e2e.items():
            record_many_ns(flows[name].warmup_e2e, values)
        for name, values in warm_e2e_intended.items():
            record_many_ns(flows[name].warmup_e2e_intended, values)
        self.hops.flush()
        if n and self.consume_rate is not None:
            self._next_read = max(self._next_read, time.monotonic()) + n / self.consume_rate
        if n:
            self.received += n
            self.first_ns = self.first_ns or now
            self.last_ns = now
        return n

    async def _cross_gateway(self, batches) -> None:
        """Hold the batch until its oldest record has spent the gateway's latency in it."""
        oldest = min(records[0].timestamp for records in batches.values() if records) * 1_000_000  # ms → ns
        wait = oldest + self.gateway_latency_ns - clock.now_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
