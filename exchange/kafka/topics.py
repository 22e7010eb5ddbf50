"""The topics a scenario needs, created up front with the scenario's partition counts.

Creating them before any process starts means producers never race auto-creation and
partition counts are what the scenario says, not the broker's default. Topics that
already exist with other partition counts (an earlier run of another scenario on the same
cluster, or a topic a client auto-created with the broker's default) are refused before
anything starts, by :class:`~exchange.errors.TopicMismatch` naming each one: a router
would otherwise crash on them (Faust requires a table's source topic and its changelog
to have the same partitions) or write to partitions that do not exist.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from exchange.errors import ExchangeError, TopicMismatch
from exchange.kafka import clients
from schemas.envelope import IngressLayout, Topics
from schemas.scenario import Scenario


def topic_plan(scenario: Scenario) -> dict[str, int]:
    """Topic name → partitions, for every topic of every hub the scenario's records cross.

    Ingress topics follow the scenario's ``topics`` layout (:class:`~schemas.envelope.IngressLayout`):
    one per live entry by default, else one per department, mode or class with its live entries'
    largest partition count (or the setting's ``partitions``).
    """
    max_parts = max(e.partitions for e in scenario.catalogue)
    cascade = len(scenario.hubs_in_use) > 1
    layout = IngressLayout(scenario)
    plan: dict[str, int] = {}
    for hub in scenario.hubs_in_use:
        topics = Topics(hub, layout)
        plan.update({name: parts for name, parts in layout.partitions.items() if layout.hub_of[name] == hub})
        for consumer in sorted({s.consumer for s in scenario.subscriptions if scenario.platform_of(s.consumer) == hub}):
            plan[topics.delivery(consumer)] = max_parts
        for name in (topics.audit, topics.dead_letter, topics.quality):
            plan[name] = max_parts
        plan[topics.control] = 1
        plan[topics.verdicts] = 1
        if cascade:
            plan[topics.transit] = max_parts
    return plan


def ingress_topics(scenario: Scenario) -> list[str]:
    """The ingress topics of :func:`topic_plan` (where departments publish), sorted."""
    return sorted(IngressLayout(scenario).partitions)


def router_internal_topics(scenario: Scenario) -> dict[str, tuple[int, dict[str, str]]]:
    """Faust's own topics of every hub's router: name → (partitions, topic configs).

    The tables' changelogs (compacted) and the leader topic, named as Faust names them for
    the group ``dx-<hub>-router`` (``<app id>-<table>-changelog``; exchange/router/app.py): the
    ``approvals`` table (1 partition, like the control topic it is keyed by) and the
    ``authority`` table (the scenario's largest partition count). A router creates them
    itself, but on Apache Kafka a router that subscribes before a busy broker's metadata
    shows them never gets their partitions and never becomes ready; created up front, they
    are there.
    """
    max_parts = max(e.partitions for e in scenario.catalogue)
    compact = {"cleanup.policy": "compact"}
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for hub in scenario.hubs_in_use:
        group = f"dx-{hub}-router"
        out[f"{group}-approvals-changelog"] = (1, compact)
        out[f"{group}-authority-changelog"] = (max_parts, compact)
        out[f"{group}-__assignor-__leader"] = (1, {})
    return out


def changelog_plan(scenario: Scenario) -> dict[str, int]:
    """Faust's changelog topics of every hub's router → the partitions they must have.

    Checked before a run (a changelog with other partitions than its table's source topic
    crashes the router's agent); see :func:`router_internal_topics`.
    """
    return {name: parts for name, (parts, _) in router_internal_topics(scenario).items() if name.endswith("-changelog")}


async def create_router_internal_topics(bootstrap: str, scenario: Scenario, replication_factor: int = 1) -> None:
    """Create :func:`router_internal_topics` (those missing) and wait until they are visible."""
    topics = router_internal_topics(scenario)
    await create_topics(
        bootstrap,
        {name: parts for name, (parts, _) in topics.items()},
        replication_factor=replication_factor,
        configs={name: config for name, (_, config) in topics.items()},
    )


def mismatches(plan: dict[str, int], existing: dict[str, int]) -> list[str]:
    """``topic has N partitions, needs M`` for every planned topic that exists with another count."""
    return [
        f"{name} has {existing[name]} partitions, needs {parts}"
        for name, parts in sorted(plan.items())
        if name in existing and existing[name] != parts
    ]


async def create_topics(
    bootstrap: str,
    plan: dict[str, int],
    batch: int = 200,
    check: dict[str, int] | None = None,
    replication_factor: int = 1,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create the topics of ``plan`` (name → partitions) that do not exist.

    ``replication_factor`` replicas (the broker's: 1 on Tansu and one Kafka node, 3 on
    ``kafka:3``), ``configs`` per topic name. Waits until all are visible: 60 s, or 50 ms a
    partition when more (Apache Kafka creates each partition's log on disk first: 1,612 of
    Dongguan's took 25 s on a loaded 2-core machine, and the ~560 of its per-department
    layout over 28 s at load 16-20; it returns as soon as they are there).

    Raises :class:`~exchange.errors.TopicMismatch` when a topic of ``plan`` or ``check``
    (topics only checked, never created) exists with another partition count, before
    creating anything; :class:`~exchange.errors.BrokerUnreachable` when no broker answers.
    """
    async with clients.started(clients.admin("topology", bootstrap), bootstrap, "creating the scenario's topics") as admin:
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        wrong = mismatches({**(check or {}), **plan}, existing)
        if wrong:
            raise TopicMismatch(
                f"{len(wrong)} topic(s) on {bootstrap} exist with other partitions than this scenario needs: "
                f"{'; '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}. Delete them (kafka-topics.sh --delete --topic NAME), "
                "or use a fresh broker"
            )
        missing = [
            NewTopic(name, parts, replication_factor, topic_configs=(configs or {}).get(name, {}))
            for name, parts in plan.items()
            if name not in existing
        ]
        for start in range(0, len(missing), batch):
            try:
                await admin.create_topics(missing[start : start + batch])
            except TopicAlreadyExistsError:
                pass
        await _wait_visible(admin, set(plan), timeout=max(60.0, 0.05 * sum(plan.values()) * replication_factor))


async def _wait_visible(admin: AIOKafkaAdminClient, names: set[str], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        missing = names - set(await admin.list_topics())
        if not missing:
            return
        if loop.time() > deadline:
            raise ExchangeError(f"topics not visible after {timeout:.0f} s: {sorted(missing)[:5]}")
        await asyncio.sleep(0.05)


async def topic_partitions(consumer, topic: str, bootstrap: str) -> set[int]:
    """The partitions of ``topic`` as a started aiokafka consumer sees them, refreshing its
    metadata once; :class:`~exchange.errors.TopicNotFound` when the topic does not exist."""
    from exchange.errors import TopicNotFound

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise TopicNotFound(f"topic {topic} does not exist on {bootstrap}")
    return parts


async def read_topic(bootstrap: str, topic: str, idle_s: float = 1.0) -> list[tuple[int, int, bytes]]:
    """Every message of a topic as (partition, offset, value), read to the end offsets.

    Raises :class:`~exchange.errors.BrokerUnreachable` when no broker answers at
    ``bootstrap`` and :class:`~exchange.errors.TopicNotFound` when the topic does not exist.
    """
    from exchange.kafka import clients

    async with clients.started(clients.consumer("topic_reader", bootstrap), bootstrap, f"reading {topic}") as consumer:
        parts = await topic_partitions(consumer, topic, bootstrap)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes]] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for tp, records in batch.items():
                out.extend((tp.partition, r.offset, r.value) for r in records)
    out.sort(key=lambda m: (m[0], m[1]))
    return out
