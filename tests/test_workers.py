"""Several router workers share the ingress partitions and survive rebalances without loss,
on both brokers (the embedded Tansu one and Apache Kafka), one broker per module each."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import pytest_asyncio

from exchange.runner.status import read_messages
from schemas.envelope import H_TRACE

from .harness import RouterProcess, broker_kinds, envelope, new_run, publish, read_all, running_broker, sharing_scenario
from .test_router_integration import records_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def broker(request, tmp_path_factory):
    """One broker for the module's tests, per broker kind."""
    async with running_broker(request.param, log_path=tmp_path_factory.mktemp(f"workers-{request.param}") / "broker.log") as broker:
        yield broker


async def test_workers_leave_and_join_mid_stream_and_nothing_is_lost(broker, tmp_path):
    scenario = sharing_scenario()
    run = new_run()
    records = records_for("open", 3000)
    workers = [RouterProcess(scenario, broker.bootstrap, tmp_path, worker=str(i), kind=broker.kind) for i in range(3)]
    topic = workers[0].topics.ingress("open")
    try:
        await asyncio.gather(workers[0].start(), workers[1].start())  # inside: one failing to start stops the other
        for step in range(30):  # ~3 s of publishing, 100 records at a time
            chunk = records[step * 100 : (step + 1) * 100]
            await publish(
                broker.bootstrap,
                topic,
                [(key, orjson.dumps(value), envelope("open", "prov", f"1.{step * 100 + i + 1}", run)) for i, (key, value) in enumerate(chunk)],
            )
            if step == 8:
                workers[1].stop()  # leaves: its partitions move to worker 0
            if step == 16:
                await workers[2].start()  # joins: partitions are shared again
            await asyncio.sleep(0.1)
        got = await read_all(broker.bootstrap, workers[0].topics.delivery("a"), run=run, until=3000, timeout=60)
    finally:
        for w in workers:
            w.stop()
    traces = [dict(r.headers)[H_TRACE] for r in got]
    assert len(set(traces)) == 3000, f"{3000 - len(set(traces))} records lost"
    # every worker that was up while records flowed routed some of them
    routed = {}
    for w in workers:
        routed[w.worker] = max((m.body.records for m in read_messages(w.status_path) if m.kind in ("stats", "final")), default=0)
    assert routed["0"] > 0 and routed["1"] > 0 and routed["2"] > 0, routed
