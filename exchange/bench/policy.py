"""``exchange bench --policy``: what one decision costs, without Kafka.

Routes records through the routing core (decode, check, decide, project, mask, encode,
audit rows: :meth:`~exchange.policy.routing.RouterCore.route`) and reports decisions/s for:

- ``small`` / ``big``: the same kind of entry (~10 items, one subscription) compiled from a
  10-item catalogue and from the 14,722-item Dongguan preset: does the cost grow with the
  catalogue?
- ``bench_entry``: the entry ``exchange bench`` routes (conditional approval, item projection,
  three masked items, a row filter, 1 KB records): the policy's share of the router figure.

With a compiled policy core (``make compile``) each is timed for the compiled modules and
for their Python source loaded beside them (:func:`exchange.compiled.pure_policy`), in
alternating rounds in this one process, and ``compiled_speedup_*`` is pure time / compiled
time (best round of each).
"""

from __future__ import annotations

import gc
import random
import time
from types import ModuleType, SimpleNamespace
from typing import Any

import orjson

from exchange import compiled
from exchange.bench.run import ENTRY, bench_scenario
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


def _batch(scenario: Scenario, entry_id: str, records: int, record_size: int) -> list[Any]:
    """``records`` fetched-record stand-ins of ``entry_id``, as a producer would publish them."""
    topics = Topics.of(scenario)
    entry = scenario.entries[entry_id]
    pool = EntityPool(1, regions_of("441900"), people=2000, enterprises=500, vehicles=100)
    factory = RecordFactory(entry, pool, random.Random(1), record_size=record_size)
    batch = []
    for i in range(records):
        key, value = factory.make()
        headers = tuple(record_headers(b"1.%d" % i, entry_id, entry.provider, 1, 1, ""))  # aiokafka hands out a tuple
        batch.append(SimpleNamespace(topic=topics.ingress(entry_id), partition=i % 4, offset=i, key=key, value=orjson.dumps(value), headers=headers))
    return batch


def _seconds(modules: dict[str, ModuleType], scenario: Scenario, batch: list[Any]) -> float:
    """CPU seconds one routing of ``batch`` takes with these policy modules."""
    topics = Topics.of(scenario)
    core = modules["routing"].RouterCore(modules["sharing"].compile_policy(scenario, topics), topics, "bench", 4)
    approvals = {s.id: None for s in scenario.subscriptions}
    gc.collect()  # no collection left over from the previous round
    start = time.process_time()  # CPU time: the machine may be shared
    core.route(batch, approvals, now=time.time_ns(), clock=time.time_ns)
    return time.process_time() - start


def run(records: int = 20_000, rounds: int = 3) -> dict[str, Any]:
    """Decisions/s per case (best of ``rounds``); with a compiled build, compiled and pure alternating."""
    big = dongguan.build(1)
    subs = big.subscriptions_by_entry
    entry = next(e for e in big.catalogue if 9 <= len(e.items) <= 11 and len(subs.get(e.id, ())) == 1)
    small = _small(entry.model_dump(mode="json"), entry.provider, subs[entry.id][0].consumer)
    variants = {"": compiled.policy_modules()}
    if compiled.built():
        variants = {"": variants[""], "_pure": compiled.pure_policy()}
    out: dict[str, Any] = {
        "policy_core": "compiled (mypyc)" if compiled.is_compiled(variants[""]["routing"]) else "Python source",
        "entry_items": len(entry.items),
        "catalogue_items_small": sum(len(e.items) for e in small.catalogue),
        "catalogue_items_big": sum(len(e.items) for e in big.catalogue),
    }
    cases = {"small": (small, entry.id, 0), "big": (big, entry.id, 0), "bench_entry": (bench_scenario(1024, 1.0, 1.0), ENTRY, 1024)}
    for case, (scenario, entry_id, size) in cases.items():
        batch = _batch(scenario, entry_id, records, size)
        gc.freeze()  # the scenarios and batches live all along: full collections need not walk them (the router freezes its start-up heap too)
        best = dict.fromkeys(variants, float("inf"))
        for i in range(rounds):
            for name in variants if i % 2 == 0 else reversed(variants):
                best[name] = min(best[name], _seconds(variants[name], scenario, batch))
        for name, seconds in best.items():
            out[f"decisions_per_s_{case}{name}"] = round(records / seconds)
        if "_pure" in best:
            out[f"compiled_speedup_{case}"] = round(best["_pure"] / best[""], 2)
    return out
