"""The benchmark's baseline: a plain aiokafka pass-through, as fast as aiokafka goes.

Reads the ingress topic from the beginning and copies every record, key, value and
headers untouched, to an output topic partition for partition, in ``send_batch``
batches, with no decoding and no policy. The router is measured against this: the
ratio says what routing costs, not what Kafka costs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

from exchange.kafka import clients
from exchange.kafka.batching import send_batches
from exchange.runner.status import StatusWriter, sender
from schemas.status import PassthroughFinal, PassthroughReady, Role


async def passthrough(bootstrap: str, source: str, target: str, records: int, status: StatusWriter) -> None:
    consumer = clients.consumer("bench_raw", bootstrap, source, group_id=f"dx-bench-raw-{uuid.uuid4().hex[:8]}")
    producer = clients.producer("bench_raw", bootstrap)
    await consumer.start()
    await producer.start()
    status.write(PassthroughReady())
    copied, first_ns, futures = 0, 0, []
    try:
        while copied < records:
            batch = await consumer.getmany(timeout_ms=500)
            if batch and not first_ns:
                first_ns = time.time_ns()
            for tp, recs in batch.items():
                messages = [(r.key, r.value, list(r.headers)) for r in recs]
                futures.extend(f for f, _ in await send_batches(producer, target, tp.partition, messages))
                copied += len(recs)
            if len(futures) > 256:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        last_ns = time.time_ns()
    finally:
        await producer.stop()
        await consumer.stop()
    status.write(PassthroughFinal(records=copied, first_ns=first_ns, last_ns=last_ns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exchange.bench.raw", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--status", type=Path)
    args = parser.parse_args(argv)
    status = StatusWriter(args.status, sender(Role.passthrough))
    try:
        asyncio.run(passthrough(args.bootstrap, args.source, args.target, args.records, status))
    finally:
        status.close()


if __name__ == "__main__":
    main()
