"""``exchange bench --broker-floor``: the latency the broker alone gives one hop.

One aiokafka producer (batches of up to 5 ms, like the departments' ticks) and one
consumer (10 ms fetch wait, like a router) on a fresh topic, at a fixed rate, nothing
else running: the end-to-end latency no design can beat on this broker. Reported per
window of the run, because the embedded broker's (Tansu, memory storage) fetch and
produce cost grows with the number of record batches a partition holds, so its latency
drifts upwards over a run; a real Kafka's does not.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from exchange.kafka import brokers, clients
from exchange.kafka.topics import create_topics
from exchange.results.latency import sample_quantiles

PARTITIONS = 4
WINDOW_S = 5.0


async def broker_floor(
    rate: float, seconds: float, record_size: int = 1024, bootstrap: str | None = None, broker_spec: str = "tansu"
) -> dict[str, Any]:
    broker = None if bootstrap else brokers.make(broker_spec)
    kind = broker.kind if broker is not None else None
    try:
        if broker is not None:
            await broker.astart()
        bootstrap = bootstrap or broker.bootstrap
        topic = f"dx.floor.{uuid.uuid4().hex[:8]}"
        await create_topics(bootstrap, {topic: PARTITIONS}, replication_factor=broker.replication_factor if broker else 1)
        described = broker.describe() if broker is not None else f"Kafka at {bootstrap}"
        producer = clients.producer("broker_floor", bootstrap)
        consumer = clients.consumer("broker_floor", bootstrap, topic, group_id=f"{topic}-g", broker_kind=kind)
        await producer.start()
        await consumer.start()
        windows: dict[int, list[int]] = {}  # 5 s window of the send time → latencies in ns
        start_ns = 0

        async def consume() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                now = time.time_ns()
                for recs in batch.values():
                    for r in recs:
                        sent = int(r.key)
                        windows.setdefault(int((sent - start_ns) / 1e9 // WINDOW_S), []).append(now - sent)

        try:
            await asyncio.sleep(1.0)  # let the consumer join its group
            start_ns = time.time_ns()
            reader = asyncio.ensure_future(consume())
            pad = b"x" * record_size
            total = int(rate * seconds)
            t0 = time.perf_counter()
            for i in range(total):
                ahead = t0 + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                await producer.send(topic, pad, key=b"%d" % time.time_ns())
            await producer.flush()
            deadline = time.monotonic() + 10
            while sum(map(len, windows.values())) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            reader.cancel()
        finally:
            await producer.stop()
            await consumer.stop()
    finally:
        if broker is not None:
            await broker.astop()
    everything = [x for w in windows.values() for x in w]
    return {
        "broker": described,
        "rate": rate,
        "seconds": seconds,
        "record_size": record_size,
        "received": len(everything),
        **_p50_p99(everything),
        "windows": [
            {"from_s": k * WINDOW_S, "to_s": min((k + 1) * WINDOW_S, seconds), "received": len(w), **_p50_p99(w)} for k, w in sorted(windows.items())
        ],
    }


def _p50_p99(nanoseconds: list[int]) -> dict[str, float | None]:
    q = sample_quantiles(nanoseconds)
    return {"p50_ms": round(q["50pct"], 1) if q else None, "p99_ms": round(q["99pct"], 1) if q else None}
