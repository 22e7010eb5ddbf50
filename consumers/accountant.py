"""Reads the platform's audit and dead-letter topics and counts every decision once.

Deliveries are counted where they arrive (the subscribers); denials and dead letters are
counted from the audit trail and the dead-letter topic, the platform's own records of
what it refused. Together they account for every record produced.
"""

from __future__ import annotations

import base64
from collections import Counter

import orjson
from aiokafka import TopicPartition

from consumers.dedupe import SeenSet
from exchange import metrics
from exchange.kafka import clients
from schemas.envelope import H_RUN, H_TRACE, Topics
from schemas.outcomes import OUTCOME_DECISIONS, Decision

#: the dedupe scope of an audit outcome: a subscription id after it (the deliveries use the bare id)
AUDIT_SCOPE = "audit:"


class Accountant:
    def __init__(
        self, topics: Topics | list[Topics], bootstrap: str, fanout: dict[str, int], run_id: str = "", isolation_level: str = "read_uncommitted"
    ) -> None:
        # every hub of a cascade keeps its own audit trail: all are read
        self.hubs = topics if isinstance(topics, list) else [topics]
        self._audit_topics = {t.audit for t in self.hubs}
        self._quality_topics = {t.quality for t in self.hubs}
        self.fanout = fanout  # outcomes one record of an entry accounts for
        self.decisions: Counter = Counter()  # (subscription or entry, decision, reason)
        self.dead_letters: Counter = Counter()  # (entry, reason) → records
        self.dead_outcomes = 0
        # (entry, reason) → records in fetched batches the router could not decode: no run id can
        # be read from them, so they are not outcomes of this run (see _dead_letter)
        self.undecodable: Counter = Counter()
        # reason → dead letters of records that carry no run id or another run's (written to an
        # ingress topic by another client, or left by an earlier run): not this run's outcomes,
        # but reported, so that what other clients send is never silently dropped
        self.foreign_dead_letters: Counter = Counter()
        self.quality_events: Counter = Counter()  # (item, copying department) → events
        self.denied = 0
        self.audited_deliveries = 0
        self.duplicates = 0
        self.foreign = 0
        self._run = run_id
        self._seen = SeenSet()
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, for checkpoints
        self._resume: dict | None = None  # a checkpoint to resume from instead of the end
        self._read: Counter = Counter()  # audit rows counted since the last metrics flush
        self._scoped: dict[tuple[str, ...], list[str]] = {}  # the scopes of an audit row → their dedupe keys
        self._counting: dict[tuple, list[tuple[str, str, str]]] = {}  # (scopes, decision, reason) → their counter keys
        self._consumer = clients.consumer(
            "audit_reader",
            bootstrap,
            isolation_level=isolation_level,  # read_committed under exactly-once: an aborted audit block never counts
        )

    async def start(self) -> None:
        await self._consumer.start()
        tps = []
        for topic in (name for t in self.hubs for name in (t.audit, t.dead_letter, t.quality)):
            parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                await self._consumer._client.force_metadata_update()
                parts = self._consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        self._consumer.assign(tps)
        # Only this run's records count; it starts before any producer of the run. After a
        # restart it goes on from its checkpoint, whose counts cover everything before.
        await self._consumer.seek_to_end(*tps)
        resume = {(t, p): o for t, p, o in (self._resume or {}).get("positions", [])}
        for tp in tps:
            if (tp.topic, tp.partition) in resume:
                self._consumer.seek(tp, resume[(tp.topic, tp.partition)])
            # resolve the positions now, not lazily after producers have begun
            self._positions[tp] = await self._consumer.position(tp)

    def snapshot(self) -> dict:
        """Counters, positions and what was seen, for a checkpoint (no await: consistent)."""
        return {
            "positions": [[tp.topic, tp.partition, o] for tp, o in self._positions.items()],
            "decisions": [[*k, v] for k, v in self.decisions.items()],
            "dead_letters": [[*k, v] for k, v in self.dead_letters.items()],
            "quality_events": [[*k, v] for k, v in self.quality_events.items()],
            "undecodable": [[*k, v] for k, v in self.undecodable.items()],
            "foreign_dead_letters": [[*k, v] for k, v in self.foreign_dead_letters.items()],
            "counters": {k: getattr(self, k) for k in ("dead_outcomes", "denied", "audited_deliveries", "duplicates", "foreign")},
            "seen": self._seen.snapshot(),
        }

    def restore(self, data: dict) -> None:
        """Take a checkpoint's counts; :meth:`start` then seeks to its positions."""
        self._resume = data
        self.decisions = Counter({tuple(row[:-1]): row[-1] for row in data["decisions"]})
        self.dead_letters = Counter({tuple(row[:-1]): row[-1] for row in data["dead_letters"]})
        self.quality_events = Counter({tuple(row[:-1]): row[-1] for row in data["quality_events"]})
        self.undecodable = Counter({tuple(row[:-1]): row[-1] for row in data.get("undecodable", [])})
        self.foreign_dead_letters = Counter({tuple(row[:-1]): row[-1] for row in data.get("foreign_dead_letters", [])})
        for k, v in data["counters"].items():
            setattr(self, k, v)
        self._seen = SeenSet.restore(data["seen"])

    async def stop(self) -> None:
        await self._consumer.stop()

    def flush_metrics(self, platform: str) -> None:
        for decision, n in self._read.items():
            metrics.AUDIT_RECORDS_READ.labels(platform, decision).inc(n)
        self._read.clear()

    async def poll(self, timeout_ms: int = 200) -> int:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        n = 0
        for tp, records in batches.items():
            n += len(records)
            if records:
                self._positions[tp] = records[-1].offset + 1
            if tp.topic in self._audit_topics:
                for r in records:
                    self._audit_block(r.value)
            elif tp.topic in self._quality_topics:
                for r in records:
                    self._quality_event(r.value)
            else:
                for r in records:
                    self._dead_letter(r)
        return n

    def _audit_block(self, value: bytes) -> None:
        block = orjson.loads(value)
        fields = block["fields"]
        i_trace, i_run, i_sub, i_entry = (fields.index(f) for f in ("trace", "run", "subscription", "entry"))
        i_decision, i_reason = fields.index("decision"), fields.index("reason")
        add_scopes = self._seen.add_scopes
        scoped = self._scoped
        decisions = self.decisions
        counting = self._counting
        for row in block["rows"]:
            if row[i_run] != self._run:
                self.foreign += 1
                continue
            decision = row[i_decision]
            if decision not in OUTCOME_DECISIONS:
                continue  # forwarded by a hub of a cascade, or a control-plane row: not an outcome
            subs = row[i_sub]
            # one row of a denied group names every subscription it denies: the trace id is
            # parsed once for them all, and the scopes' dedupe keys are built once per run
            names = tuple(subs) if isinstance(subs, list) else (subs or row[i_entry],)
            keys = scoped.get(names)
            if keys is None:
                keys = scoped[names] = [AUDIT_SCOPE + scope for scope in names]
            fresh = add_scopes(keys, row[i_trace].encode())
            new = len(fresh)
            self.duplicates += len(names) - new
            if not new:
                continue
            reason = row[i_reason]
            if new == len(names):  # the common case: every subscription's outcome is new
                counted = counting.get((names, decision, reason))
                if counted is None:
                    counted = counting[(names, decision, reason)] = [(scope, decision, reason) for scope in names]
            else:
                counted = [(key[len(AUDIT_SCOPE) :], decision, reason) for key in fresh]
            for key in counted:
                decisions[key] += 1
            self._read[decision] += new
            if decision == Decision.denied:
                self.denied += new
            else:
                self.audited_deliveries += new

    def _quality_event(self, value: bytes) -> None:
        event = orjson.loads(value)
        if event.get("run", "") != self._run:
            self.foreign += 1
            return
        if not self._seen.add("quality:" + event["item"], event["trace"].encode()):
            self.duplicates += 1
            return
        self.quality_events[(event["item"], event["department"])] += 1

    def _dead_letter(self, r) -> None:
        headers = dict(r.headers)
        letter = orjson.loads(r.value)
        if letter.get("last_offset") is not None:
            # A batch the router could not decode (exchange/router/lenient_records.py): the run id is
            # inside its records, so it cannot be told whether they are this run's. They are
            # counted apart, never as this run's outcomes: a foreign client's batch leaves the
            # conservation check intact, and a batch of this run's own producers shows as that
            # many unaccounted outcomes, with these records named beside them.
            span = f"{letter['topic']}/{letter['partition']}/{letter['offset']}-{letter['last_offset']}".encode()
            if not self._seen.add("dlq-batch", span):
                self.duplicates += 1
                return
            self.undecodable[(letter.get("entry") or "?", letter["reason"])] += letter.get("records") or 0
            return
        original = dict(letter.get("headers") or ())
        if base64.b64decode(original.get(H_RUN, "")).decode(errors="replace") != self._run:
            self.foreign += 1
            self.foreign_dead_letters[(letter.get("entry") or "?", letter.get("reason") or "?")] += 1
            return
        trace = headers.get(H_TRACE) or f"{letter['topic']}/{letter['partition']}/{letter['offset']}".encode()
        subscription = letter.get("subscription")  # set when a hub refused a record in transit
        if not self._seen.add(f"dlq:{subscription}" if subscription else "dlq", trace):
            self.duplicates += 1
            return
        entry = letter.get("entry") or "?"
        self.dead_letters[(entry, letter["reason"])] += 1
        self.dead_outcomes += 1 if subscription else self.fanout.get(entry, 1)
