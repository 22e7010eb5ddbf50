"""Prepare a scenario for the compose stack or Kubernetes: its JSON, and its topics.

    python deploy/prepare.py --scenario demo --json-out /data/scenario.json \
        [--bootstrap kafka-1:9092,kafka-2:9092,kafka-3:9092 --replication-factor 3 --min-insync-replicas 2]

The router, producer and consumer processes read the scenario as JSON (what the run
controller writes into a run directory); this writes it from a preset name or a YAML file.
With ``--bootstrap`` it also creates every topic of the scenario (exchange.kafka.topics's
plan: the scenario's partition counts) with the cluster's replication, so that producers
using ``acks=all`` on a cluster with ``min.insync.replicas=2`` have the replicas they need.
Topics that exist are left alone; running it again, or from several pods at once, is fine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout or the image's /app
    sys.path.insert(0, str(ROOT))

from exchange.kafka.topics import topic_plan  # noqa: E402
from exchange.scenarios import loader as scenario_file  # noqa: E402 - after the sys.path line above


async def create_replicated_topics(bootstrap: str, plan: dict[str, int], replication: int, min_isr: int, timeout_s: float = 120.0) -> list[str]:
    """Create the missing topics of ``plan``; return the names created."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

    from exchange.kafka import clients

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:  # the brokers may still be starting
        admin = clients.admin("prepare", bootstrap)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if loop.time() > deadline:
                raise
            await asyncio.sleep(1.0)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        configs = {"min.insync.replicas": str(min_isr)} if min_isr > 1 else {}
        missing = [NewTopic(name, parts, replication, topic_configs=configs) for name, parts in plan.items() if name not in existing]
        for start in range(0, len(missing), 100):
            batch = missing[start : start + 100]
            try:
                await admin.create_topics(batch)
            except TopicAlreadyExistsError:  # another pod was first: the rest were created
                pass
            created.extend(t.name for t in batch)
        while set(plan) - set(await admin.list_topics()):
            if loop.time() > deadline:
                raise RuntimeError(f"topics not visible after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", required=True, help="preset name or scenario YAML path")
    parser.add_argument("--json-out", type=Path, help="write the scenario as JSON here")
    parser.add_argument("--bootstrap", help="create the scenario's topics on this cluster")
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--min-insync-replicas", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        scenario = scenario_file.load(args.scenario)
    except scenario_file.ScenarioError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(scenario.model_dump_json(indent=2), encoding="utf-8")
        print(f"scenario {scenario.name!r} written to {args.json_out}")
    if args.bootstrap:
        plan = topic_plan(scenario)
        created = asyncio.run(create_replicated_topics(args.bootstrap, plan, args.replication_factor, args.min_insync_replicas))
        print(f"{len(plan)} topics ({len(created)} created) with replication factor {args.replication_factor}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
