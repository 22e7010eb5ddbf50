"""Several producer clients write one partition of a Tansu broker while a consumer tails it.

Run as a script (its own process, so that ``offset_gaps.install()`` touches no other test):
``python tests/gap_race.py BOOTSTRAP TOPIC SECONDS [--guard]``. Prints one JSON line: records
acknowledged, records the tailing consumer read, the acknowledged ones it never read, and how
often the guard held a fetch at a gap. See exchange/kafka/offset_gaps.py.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

CLIENTS = 6


async def main(bootstrap: str, topic: str, seconds: float, guard: bool) -> None:
    from exchange.kafka import offset_gaps

    if guard:
        offset_gaps.install()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    producers = [AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0) for _ in range(CLIENTS)]
    for p in producers:
        await p.start()
    acked: set[int] = set()
    seen: set[int] = set()
    end = time.monotonic() + seconds

    async def produce(p: AIOKafkaProducer, k: int) -> None:
        i = 0
        while time.monotonic() < end:
            meta = await p.send_and_wait(topic, f"{k}-{i}".encode(), partition=0)
            acked.add(meta.offset)
            i += 1
            await asyncio.sleep(0.002)  # a pace the tailing consumer keeps up with

    async def tail() -> None:
        quiet_since = None
        while True:
            batch = await consumer.getmany(tp, timeout_ms=50)
            got = batch.get(tp, [])
            seen.update(m.offset for m in got)
            if time.monotonic() < end:
                continue
            if got:
                quiet_since = None
            if await consumer.position(tp) > max(acked, default=-1) or (quiet_since and time.monotonic() - quiet_since > 10):
                return
            quiet_since = quiet_since or time.monotonic()

    await asyncio.gather(tail(), *(produce(p, k) for k, p in enumerate(producers)))
    for p in producers:
        await p.stop()
    position, highwater = await consumer.position(tp), consumer.highwater(tp)
    await consumer.stop()
    missed = sorted(acked - seen)
    print(
        orjson.dumps(
            {
                "acked": len(acked),
                "position": position,
                "highwater": highwater,
                "seen": len(seen),
                "missed": missed[:20],
                "n_missed": len(missed),
                "held": offset_gaps.held_total,
                "skipped": offset_gaps.skipped_total,
            }
        ).decode()
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), "--guard" in sys.argv[4:]))
