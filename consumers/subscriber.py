"""A subscribing department reading its delivery topic and measuring what it receives.

End-to-end latency is measured twice per record, from the producer's send time and from
the schedule's intended send time; the second includes any time the producer spent
behind schedule, so a stalled producer cannot hide (see the README's latency notes).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from aiokafka import AIOKafkaConsumer
from hdrh.histogram import HdrHistogram

from exchange import metrics
from exchange.latency import new_histogram, record_ns
from schemas.envelope import H_ENTRY, H_HOPS, H_INTENDED, H_RUN, H_SENT, H_SUBSCRIPTION, H_TRACE

from .dedupe import SeenSet
from .hops import HopStats


class FlowStats:
    """What one subscription (entry → consumer) received."""

    __slots__ = ("delivered", "duplicates", "e2e", "e2e_intended", "interval", "within_cycle")

    def __init__(self) -> None:
        self.within_cycle = 0  # batch records delivered before their next update cycle
        self.interval: list[int] = []  # this interval's end-to-end samples, ns
        self.delivered = 0
        self.duplicates = 0
        self.e2e: HdrHistogram = new_histogram()
        self.e2e_intended: HdrHistogram = new_histogram()


class Subscriber:
    """One aiokafka consumer in the department's own group, on its delivery topic."""

    def __init__(
        self, department: str, topic: str, bootstrap: str, group: str, seen: SeenSet, run_id: str = "", fetch_wait_ms: int = 10,
        platform: str = "", hops: HopStats | None = None,
    ) -> None:
        self.department = department
        self.hops = hops if hops is not None else HopStats()
        self.topic = topic
        self.flows: dict[str, FlowStats] = defaultdict(FlowStats)
        self.unlabelled = 0
        self.foreign = 0  # records of other runs on a shared cluster
        self.listeners: list = []
        self.platform = platform
        self._children: dict[bytes, tuple] = {}
        self._positions: dict = {}
        self.consume_rate: float | None = None
        self.gateway_latency_ns = 0  # a boundary gateway between it and its hub adds this to every record
        self.cycles: dict[str, int] = {}  # batch entries: update cycle, ns
        self._next_read = 0.0
        self._max_records: int | None = None  # called as f(consumer, entry, key, headers, now_ns) for each new delivery
        self._run = run_id.encode()
        self.received = 0
        self.first_ns = 0
        self.last_ns = 0
        self._seen = seen
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=f"sub-{department}",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=1000,
            max_poll_records=5000,
            fetch_max_wait_ms=fetch_wait_ms,  # Tansu holds an empty fetch for the whole wait
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
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
        """Records on the delivery topic not yet read (for the lag gauge)."""
        total = 0
        for tp, position in self._positions.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                total += max(0, high - position)
        return total

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
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
        now = time.time_ns()
        n = 0
        seen_add = self._seen.add
        flows = self.flows
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
                flow = flows[sub.decode()]
                if not seen_add(sub.decode(), trace):
                    flow.duplicates += 1
                    self._metric_children(sub)[2].inc()
                    continue
                flow.delivered += 1
                delivered_metric, e2e_metric, _ = self._metric_children(sub)
                delivered_metric.inc()
                for listener in self.listeners:
                    listener(self.department, h.get(H_ENTRY, b"").decode(), r.key, h, now)
                sent, intended = h.get(H_SENT), h.get(H_INTENDED)
                if sent is not None:
                    record_ns(flow.e2e, now - int(sent))
                    hops = h.get(H_HOPS)
                    if hops is not None:
                        self.hops.record(hops, int(sent), now)
                    flow.interval.append(now - int(sent))
                    e2e_metric.observe((now - int(sent)) / 1e9)
                if intended is not None:
                    record_ns(flow.e2e_intended, now - int(intended))
                    if self.cycles:
                        cycle = self.cycles.get(h.get(H_ENTRY, b"").decode())
                        if cycle is not None and now - int(intended) <= cycle:
                            flow.within_cycle += 1
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
        wait = oldest + self.gateway_latency_ns - time.time_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)

    def delivered_by_flow(self) -> Counter:
        return Counter({k: f.delivered for k, f in self.flows.items()})
