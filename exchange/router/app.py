"""The platform's router: a Faust worker enforcing the sharing rules on every record.

Ingress records arrive in batches from :class:`~exchange.router.faust_bulk.BulkApp`, go
through :class:`~exchange.policy.routing.RouterCore` (pure), and leave as deliveries, audit
blocks and dead letters sent with aiokafka batches. Run one per process with
``python -m exchange.router``; several workers share the ingress partitions through the
consumer group ``dx-<platform>-router``. In a cascade each hub runs its own workers
(``--platform``): they route the entries published on that hub and relay, unopened, the
records other hubs hand them on the hub's transit topic. Real-time topics are read by the
Faust app's consumer; quiet ones (daily, monthly, batch entries: :mod:`exchange.router.lanes`)
by a second consumer with a long fetch wait, into the same handler (:mod:`exchange.router.quiet`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from faust import Service

from exchange import metrics
from exchange.errors import ExchangeError
from exchange.kafka import clients, offset_gaps
from exchange.kafka.batching import BatchSender
from exchange.kafka.timesync import add_clock_arguments, clock_at_start
from exchange.policy.audit import AuditWriter
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy, compile_transit
from exchange.router import lenient_records
from exchange.router.faust_bulk import BulkApp
from exchange.router.lanes import QUIET_FETCH_WAIT_MS, split_ingress
from exchange.router.lenient_records import UndecodableBatch
from exchange.router.quiet import QuietLane, quiet_group_id
from exchange.router.tables import ApprovalBook, AuthorityTable
from exchange.router.transactions import TransactionalCommits, transactional_id
from exchange.runner import clock
from exchange.runner.processes import peak_rss_bytes, process_age_s, report_crashes, settle_heap
from exchange.runner.status import StatusWriter, sender
from schemas.applications import ControlEvent, ControlVerdict, IllegalTransition
from schemas.clock import ClockOffset
from schemas.envelope import AuditRow, Topics
from schemas.outcomes import Decision, QualityReason, VerificationResult
from schemas.scenario import DeliveryGuarantee, Scenario
from schemas.status import ControlActionCount, DecisionCount, Error, Role, RouterFinal, RouterReady, RouterStats, VerificationCount

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
EXPIRY_CHECK_S = 0.1
TRANSACTION_TIMEOUT_MS = 10_000


def _control_fields(message: bytes) -> dict:
    """Whatever can be read from a control message that was refused, for its audit row."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {k: str(data[k]) for k in ("action", "actor", "consumer", "entry", "request_id") if k in data}
    if "consumer" in out and "entry" in out:
        out["application"] = f"{out['consumer']}.{out['entry']}"
    return out


def group_id(platform: str) -> str:
    """The Kafka consumer group of a hub's router workers: ``dx-<platform>-router``."""
    return f"dx-{platform}-router"


class Router(Service):
    """One router worker: its Faust app, its output producer and its counters.

    A :class:`mode.Service` started and stopped with the app (it is a dependency of it):
    :meth:`on_start` starts the output producer before the app's consumer fetches anything;
    :meth:`on_stop` runs after the app has stopped its consumer and flushed its commits,
    writes the final report and stops the producer. The ``ready`` status line is written
    once the app has started (tables recovered).
    """

    def __init__(
        self,
        scenario: Scenario,
        bootstrap: str,
        worker: str,
        status: StatusWriter,
        datadir: Path,
        platform: str | None = None,
        run_id: str = "",
        quiet_fetch_wait_ms: int = QUIET_FETCH_WAIT_MS,
    ) -> None:
        super().__init__()
        lenient_records.install()  # a header key that is not UTF-8 must not crash the fetcher
        self.scenario = scenario
        self.platform = platform = platform or scenario.platform.id
        self.topics = Topics.of(scenario, platform)  # ingress topics as the scenario's `topics` layout cuts them
        self.worker = worker
        self.status = status
        self.bootstrap = bootstrap
        self.max_parts = max(e.partitions for e in scenario.catalogue)
        self.run_id = run_id
        self.clock_offset: ClockOffset | None = None  # measured at start-up (exchange/kafka/timesync.py), told in ready
        # exchange/router/transactions.py: outputs and input offsets committed together
        self.exactly_once = scenario.guarantee is DeliveryGuarantee.exactly_once
        transit = compile_transit(scenario, platform)
        self.core = RouterCore(compile_policy(scenario, self.topics, platform), self.topics, worker, audit_partitions=self.max_parts, transit=transit)
        self.decisions: Counter = Counter()
        self.dead: Counter = Counter()
        self.verifications: Counter = Counter()
        self.control_actions: Counter = Counter()
        self.records = 0
        self.acked = 0
        self.batches = 0
        self.first_ns = 0  # first batch taken in
        self.last_ack_ns = 0  # last batch's output acknowledged
        self.audit = AuditWriter(worker if platform == scenario.platform.id else f"{platform}-{worker}")
        self._scope_labels = {s.id: (s.entry, s.id) for s in scenario.subscriptions}
        self._lag: dict = {}  # ingress partition → records behind its end offset, at the last batch
        self._masked_subs = {r.subscription for p in self.core.policies.values() for r in p.routes if r.masks}
        self._expiring: dict[str, int | None] = {}
        # Whether this worker holds the control partition, kept from the rebalance
        # signals: asking the consumer for its assignment every 100 ms built a set of
        # every assigned partition (1,300 with the Dongguan preset), ~10 % of an idle worker.
        self._holds_control = False
        self._producer: AIOKafkaProducer | None = None
        self._table_producer: AIOKafkaProducer | None = None  # exactly-once: the authority changelog's
        self._sender: BatchSender | None = None
        self._table_sender: BatchSender | None = None
        self._output_ready = asyncio.Event()  # set once the output producer has started
        # the main consumer and the quiet lane hand batches in from two tasks: one routes and
        # sends at a time, so each audit chain's blocks go out in the order they were chained
        self._routing = asyncio.Lock()
        self.app = self._build_app(datadir)
        self._declare_tables()
        realtime, quiet = split_ingress(scenario, [e for e in self.core.policies if e in scenario.live_entries], lambda e: self.topics.ingress(e.id))
        if not quiet_fetch_wait_ms:  # no quiet lane: every topic on the one consumer
            realtime, quiet = realtime + quiet, []
        self.quiet_topics = frozenset(quiet)
        self._declare_streams(ingress=realtime + ([self.topics.transit] if transit else []), quiet=quiet)
        if quiet:
            lane = QuietLane(self.app, bootstrap, quiet, quiet_group_id(group_id(platform)), quiet_fetch_wait_ms, client_id=f"router-{worker}-quiet")
            self.app.read_quietly(lane)
        self.app.add_dependency(self)

    def _build_app(self, datadir: Path) -> BulkApp:
        return BulkApp(
            group_id(self.platform),
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            **clients.faust_router_settings(self.bootstrap, self.max_parts),
        )

    def _declare_tables(self) -> None:
        # bytes keys and values travel raw on the changelogs (JSON documents, written by us)
        self.approvals_table = self.app.GlobalTable("approvals", key_type=bytes, value_type=bytes, partitions=1)
        self.authority_table = self.app.GlobalTable("authority", key_type=bytes, value_type=bytes, partitions=self.max_parts)
        self.book = ApprovalBook(self.scenario, self.approvals_table, clock.now_ns(), self.platform)
        self.authority = AuthorityTable(self.authority_table.data)

    def _declare_streams(self, ingress: list[str], quiet: list[str]) -> None:
        self._control_topic = self.app.topic(self.topics.control, value_serializer="raw", key_serializer="raw")
        self.app.agent(self._control_topic, name="control")(self._control)
        self.app.timer(EXPIRY_CHECK_S)(self._expire)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.route_in_bulk(frozenset(ingress + quiet), self.handle)
        self.app.exactly_once = self.exactly_once  # read_committed: transit records come from other hubs' transactions
        self.app.observe_commit = metrics.ROUTER_COMMIT_SECONDS.labels(self.platform, self.worker).observe
        # The agent subscribes the group to the real-time ingress topics; its records never
        # reach it, the bulk handler takes them first.
        if ingress:
            self.app.agent(self.app.topic(*ingress, value_serializer="raw", key_serializer="raw"), name="ingress")(_unreachable)
        self.app.task(self._on_ready)
        self.app.timer(STATS_INTERVAL_S)(self._report)

    async def on_start(self) -> None:
        """Start the output producer (before the app's consumer starts fetching).

        Under exactly-once it is transactional (:mod:`exchange.router.transactions`): a restarted
        worker (same transactional id) fences the one it replaces, and a worker that dies holds
        ``read_committed`` readers back only until the broker aborts its transaction
        (``TRANSACTION_TIMEOUT_MS``, 10 s as Kafka Streams; aiokafka's default is 60 s).
        """
        self._producer = clients.producer(
            "router_sink",
            self.bootstrap,
            client_id=f"router-{self.worker}",
            transactional_id=transactional_id(group_id(self.platform), self.worker, self.run_id) if self.exactly_once else None,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        await self._producer.start()
        if self.exactly_once:
            self.app.use_transactions(TransactionalCommits(self._producer, group_id(self.platform), self.bootstrap, observe=self.app.observe_commit))
        self._sender = BatchSender(self._producer)
        self._table_sender = self._sender
        if self.exactly_once:
            # The authority table's changelog stays out of the transactions: Faust's table recovery
            # reads a changelog to its end offset, and a transaction marker there (the last offset,
            # never a record) holds a restarted worker in recovery. Its writes are upserts that a
            # re-routed batch writes again, the same, so at-least-once (idempotent) is exact for it.
            self._table_producer = clients.producer("router_sink", self.bootstrap, client_id=f"router-{self.worker}-tables", idempotent=True)
            await self._table_producer.start()
            self._table_sender = BatchSender(self._table_producer)
        self._output_ready.set()

    async def on_stop(self) -> None:
        """Write the final report and stop the output producers.

        Runs after the app's own ``on_stop``, as the app's dependency: its fetcher has
        stopped and the offsets of every acknowledged batch are committed
        (:class:`~exchange.router.faust_bulk.BulkApp`), so nothing needs the producers any more.
        """
        self.final_report()
        if self._producer is not None:
            await self._producer.stop()
        if self._table_producer is not None:
            await self._table_producer.stop()

    async def _on_ready(self) -> None:
        # Faust's logging set-up leaves aiokafka's loggers at DEBUG: every request built a
        # log record that no handler printed (measured: a tenth of an idle worker's CPU)
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
        report_crashes(self.status)  # again: the worker's logging set-up cleared the root logger's handlers
        await self._output_ready.wait()
        await self.app.start_quiet_lane()  # tables are recovered (Faust starts tasks then), the handler can route
        # The start-up heap (Faust, aiokafka, the scenario and its compiled policy: ~130,000
        # objects) lives as long as the worker; frozen, the collector's full collections stop
        # walking it every few batches (docs/performance.md: 13.5 % of a busy router's samples)
        settle_heap()
        ready = round(process_age_s(), 3)
        metrics.ROUTER_READY_SECONDS.labels(self.platform, self.worker).set(ready)
        self.status.write(RouterReady(seconds=ready, clock=self.clock_offset))

    async def handle(self, batch) -> Awaitable[None]:
        """Route a fetched batch and send its output; the returned awaitable resolves on ack."""
        if not self._output_ready.is_set():
            await self._output_ready.wait()
        async with self._routing:
            return await self._route_and_send(batch)

    async def _route_and_send(self, batch) -> Awaitable[None]:
        records = [r for recs in batch.values() for r in recs]
        undecodable = [r for r in records if type(r) is UndecodableBatch]
        if undecodable:
            records = [r for r in records if type(r) is not UndecodableBatch]
        now = clock.now_ns()
        if not self.first_ns:
            self.first_ns = now
        routed = self.core.route(records, self.book.approvals_at(now), self.authority, now=now, clock=clock.now_ns)
        for u in undecodable:
            routed.dead_letters.append(batch_dead_letter(u, self.core.entry_of(u.topic), now))
            routed.dead_reasons[u.reason] += u.records
            routed.records += u.records
            # _metrics counts each fetched item once; this one stands for u.records records
            metrics.ROUTER_RECORDS_IN.labels(self.platform, self.core.entry_of(u.topic) or "?").inc(max(0, u.records - 1))
            log.warning("dead-lettered %r", u)
        send = self._sender.send
        sent = []
        for topic, messages in routed.deliveries.items():
            sent.extend(await send(topic, messages))
        for partition, rows in routed.audit.items():
            sent.extend(await send(self.topics.audit, [(None, b, []) for b in self.audit.blocks(partition, rows)], partition=partition))
        if routed.dead_letters:
            sent.extend(await send(self.topics.dead_letter, routed.dead_letters))
        if routed.quality:
            sent.extend(await send(self.topics.quality, routed.quality))
        table_sent = []
        if routed.authority_writes:
            changelog = self.authority_table.changelog_topic.get_topic_name()
            table_sent = await self._table_sender.send(changelog, [(k.encode(), orjson.dumps(v), []) for k, v in routed.authority_writes])
        self.verifications.update(routed.verifications)
        self._metrics(batch, routed, clock.now_ns() - now)
        self.records += routed.records
        self.batches += 1
        self.decisions.update(routed.decisions)
        self.dead.update(routed.dead_reasons)
        return self._acknowledged(sent, routed.records, table_sent)

    async def _acknowledged(self, sent, records: int, table_sent=()) -> None:
        # exactly-once: a batch that fails is not sent again (its transaction aborts, the batch is re-routed)
        await self._sender.acknowledged(sent, max_attempts=1 if self.exactly_once else 20)
        if table_sent:
            await self._table_sender.acknowledged(list(table_sent))
        self.acked += records
        self.last_ack_ns = clock.now_ns()

    def _metrics(self, batch, routed, handling_ns: int) -> None:
        p = self.platform
        highwater = self.app.consumer.highwater
        lane = self.app.quiet_lane
        for tp, recs in batch.items():
            entry = self.core.entry_of(tp.topic)
            if entry is not None or not self.topics.shared_entries(tp.topic):  # a shared topic's records: by their header, below
                metrics.ROUTER_RECORDS_IN.labels(p, entry or "?").inc(len(recs))
            end = lane.highwater(tp) if lane is not None and tp.topic in self.quiet_topics else highwater(tp)
            if end is not None:
                self._lag[tp] = max(0, end - recs[-1].offset - 1)
        shared = routed.shared_in
        for entry, n in shared.items():
            metrics.ROUTER_RECORDS_IN.labels(p, entry).inc(n)
        unnamed = sum(len(recs) for tp, recs in batch.items() if self.topics.shared_entries(tp.topic)) - sum(shared.values())
        if unnamed > 0:  # on a shared topic, records whose header names none of its entries
            metrics.ROUTER_RECORDS_IN.labels(p, "?").inc(unnamed)
        written: Counter = Counter()
        for (scope, decision, reason), n in routed.decisions.items():
            entry, sub = self._scope_labels.get(scope, (scope, ""))
            metrics.ROUTER_DECISIONS.labels(p, entry, sub, decision, reason).inc(n)
            written[decision] += n
            if decision == Decision.delivered and sub in self._masked_subs:
                metrics.ROUTER_MASKED_RECORDS.labels(p, entry, sub).inc(n)
        for decision, n in written.items():
            metrics.AUDIT_RECORDS_WRITTEN.labels(p, decision).inc(n)
        for reason, n in routed.dead_reasons.items():
            metrics.DEAD_LETTERS.labels(p, reason).inc(n)
            metrics.ROUTER_DECISIONS.labels(p, "", "", Decision.dead_lettered, reason).inc(n)
        for (item, dept, result), n in routed.verifications.items():
            metrics.VERIFICATIONS.labels(p, item, dept, result).inc(n)
            if result == VerificationResult.conflict:  # each conflict is one quality event
                metrics.QUALITY_EVENTS.labels(p, dept, QualityReason.inconsistent).inc(n)
        metrics.ROUTER_BATCH_RECORDS.labels(p, self.worker).observe(routed.records)
        metrics.ROUTER_BATCH_SECONDS.labels(p, self.worker).observe(handling_ns / 1e9)

    async def _control(self, stream) -> None:
        """Applications, approvals, rejections, revocations: each applied and audited."""
        async for message in stream:
            now = clock.now_ns()
            try:
                event = ControlEvent.model_validate_json(message)
                app = self.book.apply(event)
                row = AuditRow(
                    trace=event.application,
                    run="",
                    source=event.actor,
                    at_ns=now,
                    entry=event.entry,
                    consumer=event.consumer,
                    subscription=event.application,
                    decision=app.state.value,
                    reason=event.reason or event.purpose or event.action,
                    items=event.items or [],
                    masked=[],
                )
                self.control_actions[(event.action, "accepted")] += 1
                verdict = ControlVerdict(
                    request_id=event.request_id,
                    action=event.action,
                    actor=event.actor,
                    application=event.application,
                    accepted=True,
                    state=app.state.value,
                    worker=self.worker,
                    at_ns=now,
                )
            except (ValueError, IllegalTransition) as exc:  # pydantic's ValidationError is a ValueError
                fields = _control_fields(message)
                row = AuditRow(
                    trace=fields.get("application", "?"),
                    run="",
                    source=fields.get("actor", "?"),
                    at_ns=now,
                    entry=fields.get("entry", "?"),
                    consumer=fields.get("consumer"),
                    subscription=fields.get("application"),
                    decision="refused",
                    reason=str(exc)[:300],
                    items=[],
                    masked=[],
                )
                self.control_actions[(fields.get("action", "?"), "refused")] += 1
                log.warning("control event refused: %s", exc)
                verdict = ControlVerdict(
                    request_id=fields.get("request_id", ""),
                    action=fields.get("action", "?"),
                    actor=fields.get("actor", "?"),
                    application=fields.get("application", "?"),
                    accepted=False,
                    state="refused",
                    reason=str(exc)[:300],
                    worker=self.worker,
                    at_ns=now,
                )
            await self._audit_control([row])
            # after the audit row: an answer is given only for what the trail holds
            await self._send_and_ack(self.topics.verdicts, [(verdict.application.encode(), verdict.model_dump_json().encode(), [])])

    async def _expire(self) -> None:
        """Publish an ``expire`` event for approvals whose validity ended.

        Delivery already stops at the end of validity (every worker checks it per batch);
        this records the change through the control topic, like any other, by the one
        worker that holds the control partition.
        """
        try:
            if not self._holds_control:
                return
            now = clock.now_ns()
            for app in self.book.expired(now):
                if self._expiring.get(app.id) == app.valid_until_ns:
                    continue
                self._expiring[app.id] = app.valid_until_ns
                event = ControlEvent(action="expire", actor="platform", consumer=app.consumer, entry=app.entry, reason="validity ended", at_ns=now)
                await self._control_topic.send(key=app.id.encode(), value=event.model_dump_json().encode())
        except Exception:  # a timer must never take the worker down
            log.exception("expiry check failed")

    async def _on_assigned(self, app, assigned, **kwargs) -> None:
        # Faust passes the whole new assignment, not only what was added
        self._holds_control = any(tp.topic == self.topics.control for tp in assigned)

    async def _on_revoked(self, app, revoked, **kwargs) -> None:
        self._holds_control = False

    async def _audit_control(self, rows: list) -> None:
        await self._output_ready.wait()
        await self._send_and_ack(self.topics.audit, [(None, b, []) for b in self.audit.blocks(0, rows)], partition=0)

    async def _send_and_ack(self, topic: str, messages: list, partition: int | None = None) -> None:
        async with self.app.sending():  # exactly-once: inside the open transaction, visible at its commit
            sent = await self._sender.send(topic, messages, partition=partition)
        await self._sender.acknowledged(sent, max_attempts=1 if self.exactly_once else 20)

    async def _report(self) -> None:
        states: Counter = Counter()
        for sub in self.book.conditional:
            app = self.book.current(sub.id)
            states[app.state.value if app else "none"] += 1
        for state in metrics.APPROVAL_STATES:
            metrics.APPROVALS.labels(self.platform, state).set(states.get(state, 0))
        handling, committing = self.app.handle_seconds, self.app.commits.commit_seconds
        lag = sum(self._lag.values())
        metrics.ROUTER_LAG.labels(self.platform, self.worker).set(lag)
        self.status.write(
            RouterStats(
                records=self.records,
                lag=lag,
                acked=self.acked,
                batches=self.batches,
                first_ns=self.first_ns,
                last_ack_ns=self.last_ack_ns,
                peak_rss_bytes=peak_rss_bytes(),
                dead_lettered=sum(self.dead.values()),
                handling_s=round(handling, 3),
                committing_s=round(committing, 3),
                # so the figures of a worker killed before its final report are not lost
                verifications=VerificationCount.rows(self.verifications),
                control_actions=ControlActionCount.rows(self.control_actions),
            )
        )

    def final_report(self) -> None:
        """Send the worker's ``final`` message (:class:`~schemas.status.RouterFinal`): records,
        batches, and the decision, verification, control-action and dead-letter counts."""
        self.status.write(
            RouterFinal(
                records=self.records,
                batches=self.batches,
                decisions=DecisionCount.rows(self.decisions),
                verifications=VerificationCount.rows(self.verifications),
                control_actions=ControlActionCount.rows(self.control_actions),
                dead_letters={str(reason): n for reason, n in self.dead.items()},
            )
        )


def batch_dead_letter(u: UndecodableBatch, entry: str | None, now: int) -> tuple[None, bytes, list[tuple[str, bytes]]]:
    """The dead letter of a fetched batch that cannot be decoded (see :mod:`exchange.router.lenient_records`).

    One letter stands for the batch's records from ``offset`` to ``last_offset``
    (``records`` of them, from the batch header); ``value_b64`` holds the batch as fetched,
    up to 1 MiB, so nothing is lost. No header can be read from it, so it has no trace id
    and no run id.
    """
    kept = "" if u.raw is not None else f"; the batch ({u.size:,} bytes) is not copied here, read it from the topic"
    letter = {
        "reason": u.reason,
        "detail": (f"a {u.codec} batch of {u.records:,} records at offsets {u.first_offset}..{u.offset} cannot be decoded: {u.detail}{kept}")[:1000],
        "topic": u.topic,
        "partition": u.partition,
        "offset": u.first_offset,
        "last_offset": u.offset,
        "records": u.records,
        "trace": None,
        "entry": entry,
        "subscription": None,
        "value_b64": base64.b64encode(u.raw or b"").decode(),
        "headers": [],
        "at_ns": now,
    }
    return None, orjson.dumps(letter), [("reason", u.reason.encode()), ("entry-topic", u.topic.encode())]


async def _unreachable(stream) -> None:
    async for _ in stream:  # pragma: no cover - the bulk handler takes these records
        log.error("an ingress record reached the Faust agent instead of the bulk handler")


def main(argv: list[str] | None = None) -> None:
    """``python -m exchange.router``: run one router worker until it is signalled to stop.

    Started by the run controller with the scenario as JSON, the bootstrap address and the
    worker's number and hub; ``--status`` names the file it writes its status lines to.
    """
    parser = argparse.ArgumentParser(prog="python -m exchange.router", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True, help="scenario as JSON (written by the run controller)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--worker", default="0")
    parser.add_argument("--fetch-wait-ms", type=int, default=None, help="how long a fetch waits for data (default 10)")
    parser.add_argument(
        "--quiet-fetch-wait-ms",
        type=int,
        default=QUIET_FETCH_WAIT_MS,
        help="fetch wait of the second consumer that reads daily, monthly and batch entries (exchange/router/lanes.py); 0: one consumer for all",
    )
    parser.add_argument("--platform", default=None, help="the hub this worker routes for (the scenario's main platform by default)")
    parser.add_argument("--status", type=Path)
    parser.add_argument("--datadir", type=Path, default=None)
    parser.add_argument("--loglevel", default="warning")
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (0: a free one)")
    parser.add_argument("--run-id", default="")
    parser.add_argument(
        "--no-declare-topics",
        action="store_true",
        help="Faust's own topics were created up front (exchange/kafka/topics.py): never create them. A worker "
        "starting while a broker node is down would otherwise send CreateTopics to a dead controller and exit",
    )
    add_clock_arguments(parser)
    offset_gaps.add_broker_kind_argument(parser)
    args = parser.parse_args(argv)
    scenario = Scenario.from_runtime_json(args.scenario.read_bytes())
    hub = args.platform or scenario.platform.id
    status = StatusWriter(args.status, sender(Role.router, args.run_id, args.worker, hub))
    report_crashes(status)  # an agent, task or timer that crashes fails the run, though the worker lives on
    try:
        offset = clock_at_start(args, args.bootstrap, f"router-{hub}-{args.worker}")
    except ExchangeError as exc:  # no clock server answered: one line
        status.write(Error(message=str(exc)))
        print(f"{exc.label}: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    datadir = args.datadir or Path(os.environ.get("TMPDIR", "/tmp")) / f"dx-router-{os.getpid()}"
    router = Router(scenario, args.bootstrap, args.worker, status, datadir, args.platform, args.run_id, args.quiet_fetch_wait_ms)
    router.clock_offset = offset
    offset_gaps.install_for(args.broker_kind)  # after the lenient reader (Router's __init__), which it wraps
    if args.fetch_wait_ms is not None:
        router.app.fetch_max_wait_ms = args.fetch_wait_ms
    if args.no_declare_topics:
        router.app.conf.topic_allow_declare = False
    ident = args.worker if router.platform == scenario.platform.id else f"{router.platform}-{args.worker}"
    sd_file = metrics.expose(
        "router", ident, scenario, args.status.parent if args.status else None, args.metrics_port, args.run_id, args.worker, router.platform
    )
    metrics.faust_sensor(router.app)
    from faust.worker import Worker

    worker = Worker(router.app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False, override_logging=True)
    # Faust's start-up spinner sets the root logger to DEBUG for the life of the process
    # (a handler per log call turns the spinner); aiokafka then builds a LogRecord per
    # assigned partition per fetch, which with the Dongguan preset's 1,300 ingress
    # partitions and 10 ms fetches is most of a core. Without it the root logger keeps
    # ``--loglevel``.
    worker.spinner = None

    try:
        worker.execute_from_commandline()
    finally:
        metrics.remove_sd_target(sd_file)
        status.close()


if __name__ == "__main__":
    main()
