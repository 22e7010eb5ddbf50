"""``exchange bench --policy``: does a decision cost more in a bigger catalogue?

Routes the same kind of record (an entry of ~10 items with one subscription) through the
routing core compiled from a 10-item catalogue and from the 14,722-item Dongguan preset,
without Kafka, and reports decisions/s for each.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

import orjson

from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy
from exchange.scenarios.presets import dongguan
from producers.records import EntityPool, RecordFactory, regions_of
from schemas.envelope import Topics, record_headers
from schemas.scenario import Scenario


def _small(entry: dict, provider: str, consumer: str) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "small",
            "platform": {"id": "dg", "name": "小平台", "region": "441900"},
            "departments": [{"id": provider, "name": "提供方"}, {"id": consumer, "name": "使用方"}],
            "catalogue": [entry],
            "subscriptions": [{"consumer": consumer, "entry": entry["id"], "purpose": "测试"}],
        }
    )


def decisions_per_second(scenario: Scenario, entry_id: str, records: int = 20_000, rounds: int = 3) -> float:
    topics = Topics.of(scenario)
    core = RouterCore(compile_policy(scenario, topics), topics, "bench")
    entry = scenario.entries[entry_id]
    factory = RecordFactory(entry, EntityPool(1, regions_of("441900"), people=2000, enterprises=500, vehicles=100), random.Random(1))
    batch = []
    for i in range(records):
        key, value = factory.make()
        batch.append(
            SimpleNamespace(
                topic=topics.ingress(entry_id),
                partition=0,
                offset=i,
                key=key,
                value=orjson.dumps(value),
                headers=record_headers(b"1.%d" % i, entry_id, entry.provider, 1, 1, ""),
            )
        )
    approvals = {s.id: None for s in scenario.subscriptions}
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        core.route(batch, approvals, now=time.time_ns(), clock=time.time_ns)
        best = min(best, time.perf_counter() - start)
    return records / best


def run() -> dict[str, float]:
    big = dongguan.build(1)
    subs = big.subscriptions_by_entry
    entry = next(e for e in big.catalogue if 9 <= len(e.items) <= 11 and len(subs.get(e.id, ())) == 1)
    small = _small(entry.model_dump(mode="json"), entry.provider, subs[entry.id][0].consumer)
    return {
        "entry_items": len(entry.items),
        "catalogue_items_small": sum(len(e.items) for e in small.catalogue),
        "catalogue_items_big": sum(len(e.items) for e in big.catalogue),
        "decisions_per_s_small": round(decisions_per_second(small, entry.id)),
        "decisions_per_s_big": round(decisions_per_second(big, entry.id)),
    }
