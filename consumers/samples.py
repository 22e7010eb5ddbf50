"""Delivery samples: the first records each subscriber received, beside their source records.

A :class:`DeliverySampler` keeps the first ``per_flow`` deliveries of every flow (entry →
subscriber) as the subscriber received them: the value as delivered (items selected,
masked — 脱敏 — and copies replaced by their authoritative values — 一数一源) with its
trace id. The hot path pays one set lookup per delivery while a flow still wants samples,
nothing once every flow has its sample (see ``Subscriber.sampling``).

The source side is read back from the broker when the run ends, not kept by the
producers: a delivery's source record is the ingress record with the same trace id, on
the entry's ingress topic of the provider's hub. :func:`find_sources` reads those topics
from a little before the first sampled record was sent (by timestamp, else from the
start) until every sampled trace id is found, within a record and time budget, so a flow
whose first deliveries come late (a row filter keeping few rows, an approval granted
during the run) still gets its source. Both sides then go to ``samples.jsonl`` in the run
directory (format: :func:`sample_line`, and docs/results.md, "Delivery samples").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from exchange.kafka import clients
from exchange.policy.sharing import compile_policy
from schemas.envelope import H_ENTRY, H_RUN, H_SENT, H_TRACE, PAD_FIELD, IngressLayout, Topics
from schemas.scenario import Scenario

SAMPLES_FILE = "samples.jsonl"
DEFAULT_PER_FLOW = 5  # deliveries kept per flow
LOOKUP_BUDGET_S = 5.0  # reading the sources back, at most (the controller waits 20 s for the final report)
LOOKUP_MAX_RECORDS = 500_000  # ingress records read per entry, at most
LOOKUP_SLACK_MS = 2_000  # start this long before the first sampled record was sent (clock skew, batching)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Sample:
    """One delivery as the subscriber received it."""

    flow: str
    consumer: str
    entry: str
    n: int  # 1 for the flow's first delivery (of this consumer process), 2 for the next, …
    trace: str
    key: bytes | None
    value: bytes
    partition: int
    offset: int
    sent_ns: int
    received_ns: int
    source: dict[str, Any] | None = None
    source_at: dict[str, Any] | None = None


@dataclass
class DeliverySampler:
    """Keeps the first ``per_flow`` deliveries of each flow; called by the subscribers."""

    per_flow: int = DEFAULT_PER_FLOW
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    lookup: dict[str, Any] = field(default_factory=dict)  # what find_sources did: records read, seek by time or not

    def flows_of(self, scenario: Scenario, department: str) -> set[str]:
        """The flow names (subscription ids) a department's subscriber should sample."""
        return {s.id for s in scenario.subscriptions if s.consumer == department} if self.per_flow > 0 else set()

    def take(self, sampling: set[str], consumer: str, flow: str, record, headers: dict[str, bytes], now_ns: int) -> None:
        """Keep one delivery; drops ``flow`` from the subscriber's ``sampling`` set once it has enough."""
        kept = self.samples.setdefault(flow, [])
        sent = headers.get(H_SENT)
        kept.append(
            Sample(
                flow,
                consumer,
                headers.get(H_ENTRY, b"").decode(),
                len(kept) + 1,
                headers[H_TRACE].decode(),
                record.key,
                record.value,
                record.partition,
                record.offset,
                int(sent) if sent else 0,
                now_ns,
            )
        )
        if len(kept) >= self.per_flow:
            sampling.discard(flow)

    def wanted(self) -> dict[str, dict[str, list[Sample]]]:
        """Trace ids still without a source, by entry."""
        out: dict[str, dict[str, list[Sample]]] = {}
        for kept in self.samples.values():
            for s in kept:
                if s.source is None:
                    out.setdefault(s.entry, {}).setdefault(s.trace, []).append(s)
        return out


async def find_sources(
    sampler: DeliverySampler,
    scenario: Scenario,
    bootstrap: str,
    run_id: str,
    budget_s: float = LOOKUP_BUDGET_S,
    max_records: int = LOOKUP_MAX_RECORDS,
) -> int:
    """Read the sampled deliveries' source records back from their ingress topics.

    Sets ``source`` (the record as published, filler left out) and ``source_at`` (topic,
    partition, offset) on every sample found; returns how many samples are still without a
    source (budget spent, records gone, or the broker not answering). Never raises for a
    broker problem: samples are an aid, the run's figures do not depend on them.
    """
    wanted = sampler.wanted()
    sampler.lookup = {"records_read": 0, "seek_by_time": False, "ended": "all found"}
    if not wanted:
        return 0
    wanted = {entry: by_trace for entry, by_trace in wanted.items() if entry in scenario.entries}
    layout = IngressLayout(scenario)  # an entry's topic may be shared with others (the entry-id header tells)
    topics = {entry: layout.topic_of[entry] for entry in wanted}
    deadline = time.monotonic() + budget_s
    consumer = clients.consumer("samples", bootstrap, request_timeout_ms=max(1000, int(budget_s * 1000)))
    try:
        await asyncio.wait_for(consumer.start(), max(0.1, deadline - time.monotonic()))
        await asyncio.wait_for(
            _read_back(consumer, wanted, topics, run_id.encode(), max_records, sampler.lookup), max(0.1, deadline - time.monotonic())
        )
    except (TimeoutError, Exception) as exc:  # noqa: BLE001 - see the docstring
        why = "time budget spent" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
        sampler.lookup["ended"] = why
        log.warning("delivery samples: sources not all read back (%s)", why)
    finally:
        try:
            await asyncio.wait_for(consumer.stop(), 2.0)
        except (TimeoutError, Exception):  # noqa: BLE001
            pass
    return sum(len(v) for by_trace in sampler.wanted().values() for v in by_trace.values())


async def _read_back(
    consumer: AIOKafkaConsumer,
    wanted: dict[str, dict[str, list[Sample]]],
    topics: dict[str, str],
    run: bytes,
    max_records: int,
    stats: dict[str, Any],
) -> None:
    """Read the topics until every wanted trace id is found, an entry's record cap is reached,
    or every partition still read is at its end (bounded from outside by a timeout)."""
    entries_on: dict[str, list[str]] = {}  # topic → the wanted entries on it (several on a shared topic)
    for entry, topic in topics.items():
        entries_on.setdefault(topic, []).append(entry)
    parts: dict[str, list[TopicPartition]] = {}
    for entry, topic in topics.items():
        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic) or set()
        parts[entry] = [TopicPartition(topic, p) for p in sorted(found)]
    assignment = list(dict.fromkeys(tp for tps in parts.values() for tp in tps))
    if not assignment:
        return
    consumer.assign(assignment)
    await consumer.seek_to_beginning(*assignment)
    # from a little before the entry's first sampled record was sent, where the broker can say where that is
    for entry, tps in parts.items():
        first_ms = min((s.sent_ns for ss in wanted[entry].values() for s in ss if s.sent_ns), default=0) // 1_000_000
        if not first_ms:
            continue
        try:
            offsets = await consumer.offsets_for_times({tp: max(0, first_ms - LOOKUP_SLACK_MS) for tp in tps})
        except Exception:  # noqa: BLE001 - a broker without timestamp lookup: read from the start
            continue
        for tp, at in offsets.items():
            if at is not None:
                consumer.seek(tp, at.offset)
                stats["seek_by_time"] = True
    read: dict[str, int] = dict.fromkeys(parts, 0)
    while wanted:
        batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
        if not batches and await _at_end(consumer, [tp for entry, tps in parts.items() if entry in wanted for tp in tps]):
            stats["ended"] = "read to the end"  # the rest are gone (retention) or were never there
            return
        for tp, records in batches.items():
            on = entries_on[tp.topic]
            if not any(e in wanted for e in on):
                continue
            stats["records_read"] += len(records)
            for r in records:
                h = dict(r.headers)
                entry = on[0] if len(on) == 1 else (h.get(H_ENTRY) or b"").decode(errors="replace")
                by_trace = wanted.get(entry)
                if by_trace is None:
                    continue
                read[entry] += 1
                samples = by_trace.get((h.get(H_TRACE) or b"").decode())
                if samples is None or h.get(H_RUN, b"") != run:
                    continue
                try:
                    source = orjson.loads(r.value)
                except (orjson.JSONDecodeError, TypeError):  # the router dead-letters these: show what was sent
                    source = {"(not JSON)": (r.value or b"").decode(errors="replace")}
                if isinstance(source, dict):
                    source.pop(PAD_FIELD, None)
                for s in samples:
                    s.source = source
                    s.source_at = {"topic": tp.topic, "partition": tp.partition, "offset": r.offset}
                del by_trace[(h.get(H_TRACE) or b"").decode()]
            for entry in on:
                by_trace = wanted.get(entry)
                if by_trace is None or (by_trace and read[entry] < max_records):
                    continue
                if by_trace:
                    stats["ended"] = f"{max_records:,} records read of {entry}"
                wanted.pop(entry, None)
                if not any(e in wanted for e in on):  # a shared topic is read until none of its wanted entries is left
                    consumer.pause(*parts[entry])


async def _at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


def sample_line(sample: Sample, masks: dict[str, str], items: list[str], provider: str, copies: dict[str, str] | None = None) -> dict[str, Any]:
    """One line of ``samples.jsonl``: a delivery and its source, side by side.

    ``flow``, ``entry``, ``consumer``, ``provider``; ``n`` (1 for the flow's first
    delivery); ``trace`` (trace id, the join key); ``key`` (record key, UTF-8, or null);
    ``delivered`` (the value as received) and ``delivered_at`` (delivery topic, partition,
    offset, ``received_ns``, ``sent_ns``); ``source`` (the value as published, filler left
    out; null when it could not be read back) and ``source_at`` (ingress topic, partition,
    offset); ``items`` (the items the subscription gets), ``masks`` (item → masking rule
    applied on the way, from the scenario's rules) and ``copies`` (item → the department
    that is its authoritative source, for the provider's copies of other departments'
    items: 一数一源 delivers the authoritative value instead, or leaves the item out).
    """
    try:
        delivered = orjson.loads(sample.value)
    except orjson.JSONDecodeError:
        delivered = {"(not JSON)": sample.value.decode(errors="replace")}
    return {
        "flow": sample.flow,
        "entry": sample.entry,
        "consumer": sample.consumer,
        "provider": provider,
        "n": sample.n,
        "trace": sample.trace,
        "key": sample.key.decode(errors="replace") if sample.key is not None else None,
        "delivered": delivered,
        "delivered_at": {"partition": sample.partition, "offset": sample.offset, "received_ns": sample.received_ns, "sent_ns": sample.sent_ns},
        "source": sample.source,
        "source_at": sample.source_at,
        "items": items,
        "masks": masks,
        "copies": copies or {},
    }


def write_samples(sampler: DeliverySampler, scenario: Scenario, path: Path) -> int:
    """Write ``samples.jsonl`` (flows in name order, deliveries in the order received); returns lines written."""
    routes = {}
    for hub in scenario.hubs_in_use:
        for policy in compile_policy(scenario, Topics(hub), hub).values():
            for route in policy.routes:
                routes[route.subscription] = route
    lines = []
    for flow in sorted(sampler.samples):
        route = routes.get(flow)
        masks = {k: rule.value for k, rule in route.masks} if route else {}
        items = list(route.items) if route else []
        for s in sampler.samples[flow]:
            entry = scenario.entries.get(s.entry)
            copies = scenario.copied_items(entry.id) if entry else {}
            lines.append(orjson.dumps(sample_line(s, masks, items, entry.provider if entry else "", copies)))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    tmp.replace(path)
    return len(lines)
