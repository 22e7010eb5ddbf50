"""Departments acting on what they receive, and joint processes measured end to end.

A reaction publishes, after a processing time, a record of the department's own entry for
the master key it just received (the seal engraved for a newly registered enterprise);
the record carries the ``origin-ns`` of the record that started the process, so that a
:class:`WorkflowTracker` can time the whole process per master key when its last step
arrives. Reactions are produced records like any other: they are counted, and the run
accounts for every one of them.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import orjson

from exchange.kafka import clients
from exchange.kafka.batching import BatchSender
from exchange.results.latency import MAX_PLAUSIBLE_NS, new_histogram, record_ns
from exchange.runner import clock
from producers.records import EntityPool, RecordFactory
from schemas.envelope import H_INTENDED, H_ORIGIN, IngressLayout, record_headers, trace_id
from schemas.scenario import Reaction, Scenario

REACTION_PRODUCER_BASE = 9000  # trace ids <9000 + reaction index>.<seq>: apart from the producers'


class ReactionEngine:
    def __init__(self, scenario: Scenario, bootstrap: str, pool: EntityPool, seed: int, run_id: str) -> None:
        # a reaction is published into its provider's own hub
        self.ingress = IngressLayout(scenario).topic_of  # entry → its ingress topic under the scenario's `topics` layout
        self.run = run_id
        self.rng = random.Random(seed * 31 + 7)
        self.by_trigger: dict[tuple[str, str], list[tuple[int, Reaction, RecordFactory]]] = defaultdict(list)
        for n, r in enumerate(scenario.reactions):
            entry = scenario.entries[r.publish]
            copies = tuple(scenario.copied_items(r.publish))
            factory = RecordFactory(entry, pool, random.Random(seed * 977 + n), scenario.load.record_size, copies, scenario.load.mismatch_rate)
            self.by_trigger[(r.department, r.on)].append((n, r, factory))
        self.produced: dict[str, int] = defaultdict(int)
        self.pending = 0
        self._seq: dict[int, int] = defaultdict(int)
        self._due: list[tuple[int, str, bytes, bytes, list]] = []  # (due_ns, topic, key, value, headers)
        # exactly-once: idempotent, as the departments' publishers
        self._producer = clients.producer("reactions", bootstrap, idempotent=scenario.guarantee.value == "exactly-once")
        self._sender = BatchSender(self._producer)
        self._task: asyncio.Task | None = None

    @property
    def active(self) -> bool:
        return bool(self.by_trigger)

    async def start(self) -> None:
        if self.active:
            await self._producer.start()
            self._task = asyncio.ensure_future(self._flush_loop())

    async def stop(self) -> None:
        if self._task is not None:
            while self._due:  # what was already triggered is still published
                await asyncio.sleep(0.02)
            self._task.cancel()
        if self.active:
            await self._producer.stop()

    def on_delivery(self, consumer: str, entry: str, key: bytes | None, headers: dict[str, bytes], now_ns: int) -> None:
        """Called for every new (not duplicate) delivery a subscriber receives."""
        reactions = self.by_trigger.get((consumer, entry))
        if not reactions or key is None:
            return
        origin = headers.get(H_ORIGIN) or headers.get(H_INTENDED) or b"%d" % now_ns
        for n, reaction, factory in reactions:
            due = now_ns + int((reaction.delay + self.rng.random() * reaction.jitter) * 1e9)
            k, record = factory.for_key(key.decode(errors="replace"))
            self._seq[n] += 1
            headers_out = record_headers(
                trace_id(REACTION_PRODUCER_BASE + n, self._seq[n]), reaction.publish, reaction.department, due, due, self.run, origin
            )
            self._due.append((due, reaction.publish, k, orjson.dumps(record), headers_out))
            self.pending += 1

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            now = clock.now_ns()
            ready = [d for d in self._due if d[0] <= now]
            if not ready:
                continue
            self._due = [d for d in self._due if d[0] > now]
            by_entry: dict[str, list] = defaultdict(list)
            for _, entry, key, value, headers in ready:
                by_entry[entry].append((key, value, headers))
            for entry, messages in by_entry.items():
                sent = await self._sender.send(self.ingress[entry], messages)
                await self._sender.acknowledged(sent)
                self.produced[entry] += len(messages)
                self.pending -= len(messages)


class WorkflowTracker:
    """Times joint processes per master key, from the start record to the last step."""

    def __init__(self, scenario: Scenario) -> None:
        self.workflows = scenario.workflows
        self.steps_of = {w.name: frozenset(w.steps) for w in scenario.workflows}
        self.watch: dict[str, list[str]] = defaultdict(list)  # step entry → workflows
        for w in scenario.workflows:
            for step in w.steps:
                self.watch[step].append(w.name)
        self.open: dict[tuple[str, bytes], set[str]] = {}
        self.completed: dict[str, int] = defaultdict(int)
        self.times = {w.name: new_histogram() for w in scenario.workflows}

    def on_delivery(self, entry: str, key: bytes | None, headers: dict[str, bytes], now_ns: int) -> None:
        names = self.watch.get(entry)
        origin = headers.get(H_ORIGIN)
        if not names or key is None or origin is None:
            return
        for name in names:
            done = self.open.setdefault((name, key), set())
            done.add(entry)
            if done >= self.steps_of[name]:
                del self.open[(name, key)]
                self.completed[name] += 1
                took = now_ns - int(origin)
                if 0 <= took <= MAX_PLAUSIBLE_NS:  # else clock skew: completed, but not timed
                    record_ns(self.times[name], took)

    def incomplete(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for name, _ in self.open:
            out[name] += 1
        return dict(out)
