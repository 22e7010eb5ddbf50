"""The platform's router: a Faust worker enforcing the sharing rules on every record.

Ingress records arrive in batches from :class:`~exchange.faust_bulk.BulkApp`, go
through :class:`~exchange.routing.RouterCore` (pure), and leave as deliveries, audit
blocks and dead letters sent with aiokafka batches. Run one per process with
``python -m exchange.router``; several workers share the ingress partitions through the
consumer group ``dx-<platform>-router``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from schemas.envelope import AUDIT_FIELDS, Topics
from schemas.scenario import Scenario

from .batching import BatchSender
from .faust_bulk import BulkApp
from .processes import peak_rss_bytes, process_age_s
from .policy import compile_policy
from .routing import RouterCore
from .status import StatusWriter

log = logging.getLogger(__name__)

# Tansu completes a group join after half the session timeout; Faust's default (60 s)
# makes a new worker wait 30 s. Heartbeats run on Faust's consumer thread, so a short
# session timeout does not evict a worker that is busy routing.
SESSION_TIMEOUT_S = 2.0
HEARTBEAT_S = 0.25
STATS_INTERVAL_S = 1.0


def group_id(platform: str) -> str:
    return f"dx-{platform}-router"


class Router:
    """Owns the Faust app, the output producer and the counters of one worker."""

    def __init__(self, scenario: Scenario, bootstrap: str, worker: str, status: StatusWriter, datadir: Path) -> None:
        self.scenario = scenario
        self.topics = Topics(scenario.platform.id)
        self.worker = worker
        self.status = status
        self.bootstrap = bootstrap
        max_parts = max(e.partitions for e in scenario.catalogue)
        self.core = RouterCore(compile_policy(scenario, self.topics), self.topics, worker, audit_partitions=max_parts)
        self.decisions: Counter = Counter()
        self.dead: Counter = Counter()
        self.records = 0
        self.acked = 0
        self.batches = 0
        self.first_ns = 0  # first batch taken in
        self.last_ack_ns = 0  # last batch's output acknowledged
        self.app = BulkApp(
            group_id(scenario.platform.id),
            broker=f"kafka://{bootstrap}",
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            topic_replication_factor=1,
            topic_partitions=max_parts,
            broker_session_timeout=SESSION_TIMEOUT_S,
            broker_heartbeat_interval=HEARTBEAT_S,
            broker_rebalance_timeout=SESSION_TIMEOUT_S * 2,
            broker_max_poll_records=5000,
            consumer_max_fetch_size=8 * 1024 * 1024,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
        )
        ingress = [self.topics.ingress(e.id) for e in scenario.catalogue]
        self.app.route_in_bulk(frozenset(ingress), self.handle)
        # The agent subscribes the group to the ingress topics; its records never reach
        # it, the bulk handler takes them first.
        self.app.agent(self.app.topic(*ingress, value_serializer="raw", key_serializer="raw"), name="ingress")(_unreachable)
        self.app.task(self._on_ready)
        self.app.timer(STATS_INTERVAL_S)(self._report)
        self._producer: AIOKafkaProducer | None = None
        self._sender: BatchSender | None = None

    async def _on_ready(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"router-{self.worker}",
            acks="all",
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            linger_ms=0,
        )
        await self._producer.start()
        self._sender = BatchSender(self._producer)
        self.status.write("ready", worker=self.worker, seconds=round(process_age_s(), 3))

    async def handle(self, batch) -> Awaitable[None]:
        """Route a fetched batch and send its output; the returned awaitable resolves on ack."""
        while self._sender is None:
            await asyncio.sleep(0.01)
        records = [r for recs in batch.values() for r in recs]
        if not self.first_ns:
            self.first_ns = time.time_ns()
        routed = self.core.route(records)
        send = self._sender.send
        sent = []
        for topic, messages in routed.deliveries.items():
            sent.extend(await send(topic, messages))
        for partition, audit in routed.audit.items():
            block = orjson.dumps({"v": 2, "worker": self.worker, "fields": AUDIT_FIELDS, "rows": audit})
            sent.extend(await send(self.topics.audit, [(None, block, [])], partition=partition))
        if routed.dead_letters:
            sent.extend(await send(self.topics.dead_letter, routed.dead_letters))
        self.records += routed.records
        self.batches += 1
        self.decisions.update(routed.decisions)
        self.dead.update(routed.dead_reasons)
        return self._acknowledged(sent, routed.records)

    async def _acknowledged(self, sent, records: int) -> None:
        await self._sender.acknowledged(sent)
        self.acked += records
        self.last_ack_ns = time.time_ns()

    async def _report(self) -> None:
        handling, committing = self.app.handle_seconds, self.app.commits.commit_seconds
        self.status.write(
            "stats",
            worker=self.worker,
            records=self.records,
            acked=self.acked,
            batches=self.batches,
            first_ns=self.first_ns,
            last_ack_ns=self.last_ack_ns,
            peak_rss_bytes=peak_rss_bytes(),
            dead_lettered=sum(self.dead.values()),
            handling_s=round(handling, 3),
            committing_s=round(committing, 3),
        )

    def final_report(self) -> None:
        self.status.write(
            "final",
            worker=self.worker,
            records=self.records,
            batches=self.batches,
            decisions=[[*k, v] for k, v in self.decisions.items()],
            dead_letters=dict(self.dead),
        )

    async def stop_producer(self) -> None:
        await self.app.commits.stop()
        if self._producer is not None:
            await self._producer.stop()


async def _unreachable(stream) -> None:
    async for _ in stream:  # pragma: no cover - the bulk handler takes these records
        log.error("an ingress record reached the Faust agent instead of the bulk handler")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exchange.router", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True, help="scenario as JSON (written by the run controller)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--worker", default="0")
    parser.add_argument("--status", type=Path)
    parser.add_argument("--datadir", type=Path, default=None)
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    scenario = Scenario.model_validate_json(args.scenario.read_bytes())
    status = StatusWriter(args.status)
    datadir = args.datadir or Path(os.environ.get("TMPDIR", "/tmp")) / f"dx-router-{os.getpid()}"
    router = Router(scenario, args.bootstrap, args.worker, status, datadir)
    from faust.worker import Worker

    worker = Worker(router.app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False, override_logging=True)

    @router.app.on_before_shutdown.connect  # type: ignore[attr-defined]
    async def _final(app, **kwargs) -> None:
        router.final_report()
        await router.stop_producer()

    try:
        worker.execute_from_commandline()
    finally:
        status.close()


if __name__ == "__main__":
    main()
