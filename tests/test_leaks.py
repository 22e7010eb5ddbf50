"""Nothing leaked: every preset, run briefly on the embedded broker, and every delivery read back.

For each preset of the registry (presets added later are covered without touching this
file), a short run through ``exchange.runner.controller.run``; then an independent reader (kafka-python,
not our consumers) reads every delivery topic from offset 0 and checks each record against
the scenario itself, not against the router's compiled policy: no personal item unmasked
unless the subscription's approval lifts it, nothing of a not-shared or negative-listed
entry, no negative-listed item, no item the subscription did not ask for, and conditional
entries only under an approved subscription.
"""

from __future__ import annotations

import asyncio
import re
import time

import orjson
import pytest

from exchange.kafka.tansu import EmbeddedBroker
from exchange.runner.controller import RunOptions, run
from exchange.scenarios.loader import load, preset_names
from schemas.envelope import H_RUN, H_SUBSCRIPTION, PAD_FIELD, Topics
from schemas.scenario import MaskRule, Scenario, Sharing, SubscriptionStatus

kafka = pytest.importorskip("kafka")

# What an unmasked value looks like, per rule (the masks keep 6+4 of an ID number, 3+4 of a
# phone, the surname of a name, the district of an address).
ID_NUMBER = re.compile(r"\d{17}[\dXx]|\d{15}")
MOBILE = re.compile(r"1\d{10}")
STREET_NUMBER = re.compile(r"\d+号")


def _looks_masked(rule: MaskRule, value: object) -> bool:
    if value is None:
        return True  # nothing to show
    if not isinstance(value, str):
        return False  # non-strings are redacted to "***"
    if rule is MaskRule.redact:
        return value == "***"
    if rule is MaskRule.id_number:
        return "*" in value and not ID_NUMBER.search(value)
    if rule is MaskRule.phone:
        return ("*" in value or len(value) == 0) and not MOBILE.search(value)
    if rule is MaskRule.name:
        return "*" in value
    if rule is MaskRule.address:
        return not STREET_NUMBER.search(value) and not any(ch.isdigit() for ch in value)
    raise AssertionError(f"no check for {rule}")


def delivery_topics(scenario: Scenario, dept: str) -> set[str]:
    """Where a department's deliveries may be: its own platform's prefix (and the main one's)."""
    platform_of = getattr(scenario, "platform_of", None)
    own = platform_of(dept) if platform_of else scenario.platform.id
    return {Topics(own).delivery(dept), Topics(scenario.platform.id).delivery(dept)}


def read_topics(bootstrap: str, topics: set[str], run_id: str, idle_s: float = 1.5, timeout_s: float = 60.0) -> list:
    """Every record of the run on these topics, from offset 0, with kafka-python."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        consumer_timeout_ms=200,
    )
    try:
        existing = consumer.topics()
        tps = [kafka.TopicPartition(t, p) for t in sorted(topics & existing) for p in consumer.partitions_for_topic(t) or ()]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=10_000)
            for records in polled.values():
                out.extend(r for r in records if dict(r.headers).get(H_RUN, b"").decode() == run_id)
            # positions move on fetch, so also wait for a poll that hands out nothing buffered
            if not polled and all(consumer.position(tp) >= end[tp] for tp in tps):
                break
        else:
            raise AssertionError(f"could not read {sorted(topics)} to their end in {timeout_s} s")
        return out
    finally:
        consumer.close()


def check_delivery(scenario: Scenario, topic_dept: str | None, record) -> str:
    """Every rule a delivered record must satisfy; returns its subscription id.

    ``topic_dept`` None: a record in transit between two hubs of a cascade, which must
    already be what its subscriber may see (filtered and masked at the provider's hub).
    """
    header = dict(record.headers).get(H_SUBSCRIPTION)
    assert header, f"a delivery to {topic_dept} without a subscription header"
    sub_id = header.decode()
    subs = {s.id: s for s in scenario.subscriptions}
    assert sub_id in subs, f"delivered under {sub_id!r}, which the scenario does not declare"
    sub = subs[sub_id]
    assert topic_dept is None or sub.consumer == topic_dept, f"{sub_id} delivered to {topic_dept}'s topic"
    entry = scenario.entries[sub.entry]
    hubs = [scenario.all_platforms[p] for p in scenario.subscription_path(sub)]
    if topic_dept is not None:  # no hub on the way lets through an entry on its own negative list
        refusing = [h.id for h in hubs if entry.id in h.negative_list.entries]
        assert not refusing, f"{sub_id}: delivered although hubs {refusing} negative-list {entry.id}"
    # (2) nothing of a not-shared or negative-listed entry, no negative-listed item
    assert entry.sharing is not Sharing.not_shared, f"{sub_id}: a record of not-shared entry {entry.id} was delivered"
    assert entry.id not in scenario.negative_list.entries, f"{sub_id}: negative-listed entry {entry.id} delivered"
    # (4) conditional entries only under an approved subscription
    if entry.sharing is Sharing.conditional:
        assert sub.status is SubscriptionStatus.approved, f"{sub_id}: conditional entry delivered without approval"
    value = orjson.loads(record.value)
    assert isinstance(value, dict)
    banned = set(scenario.negative_list.items).union(*(h.negative_list.items for h in hubs))
    leaked = banned & set(value)
    assert not leaked, f"{sub_id}: negative-listed items {leaked} delivered"
    # (3) only the items the subscription asked for (all of the entry's when it names none)
    allowed = set(sub.items) if sub.items is not None else set(entry.item_keys)
    extra = set(value) - allowed
    assert not extra, f"{sub_id}: items {extra} outside the subscription delivered"
    assert PAD_FIELD not in value
    # (1) every item that must be masked for this subscription is
    items = {i.key: i for i in entry.items}
    for key, v in value.items():
        rule = items[key].effective_mask
        if rule is MaskRule.none or key in sub.unmasked:
            continue
        assert _looks_masked(rule, v), f"{sub_id}: {key} ({rule.value}) delivered unmasked: {v!r}"
    return sub_id


# Short runs: a few seconds of load at a rate the embedded broker takes without a backlog.
RUN_SECONDS = 2.0
RATE_MULTIPLIER = {"dongguan": 0.2}


# dongguan's 1,322 entries and 373 subscriptions take ~60 s to set up, run and read back
# (guizhou-cascade's 13 routers take ~30 s: it stays in the default run)
HEAVY = {"dongguan"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in preset_names()])
def test_no_preset_leaks_anything_to_any_subscriber(name, tmp_path):
    scenario = load(name)
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        options = RunOptions(
            scenario, duration=RUN_SECONDS, out=tmp_path / "run", bootstrap=broker.bootstrap, rate_multiplier=RATE_MULTIPLIER.get(name, 0.5)
        )
        result, _ = asyncio.run(run(options))
        assert result.counts.unaccounted == 0 and result.conservation.ok
        subscribers = sorted({s.consumer for s in scenario.subscriptions})
        topics: dict[str, str | None] = {t: dept for dept in subscribers for t in delivery_topics(scenario, dept)}
        if len(scenario.hubs_in_use) > 1:  # what hubs hand each other must be as clean as what they deliver
            topics.update({Topics(hub).transit: None for hub in scenario.hubs_in_use})
        records = read_topics(broker.bootstrap, set(topics), result.run.run_id)
    seen: dict[str, int] = {}
    for record in records:
        sub = check_delivery(scenario, topics[record.topic], record)
        if topics[record.topic] is not None:
            seen[sub] = seen.get(sub, 0) + 1
    assert records, f"{name}: nothing was delivered, so nothing was checked"
    if name == "guizhou-cascade":  # the same run also shows the cascade doing what the preset says
        check_guizhou_cascade(result)
    # the reader saw what the run's consumers counted (duplicates aside)
    assert sum(1 for r in records if topics[r.topic] is not None) >= result.counts.delivered
    # every subscription the run delivered to was read back and checked
    delivered_flows = {f for f, flow in result.flows.items() if flow.delivered}
    assert delivered_flows <= set(seen), sorted(delivered_flows - set(seen))[:5]


def check_guizhou_cascade(r) -> None:
    """Cross-province lookups through the national hub, its negative list, and 回流 per city."""
    assert r.flows["gd-hrss.gy-population"].denied_by_reason == {"hub_negative_list": r.counts_by_entry["gy-population"].produced}
    assert r.paths["gy > gz > nation > gd"].delivered == r.flows["gd-market.gy-licence"].delivered > 0
    assert r.paths["gy"].delivered > 0 and r.hops["gz → nation"].count > 0
    credit = {f.consumer: f for f in r.flows.values() if f.entry == "gz-credit-list"}
    assert len(credit) == 10 and all(0 < f.delivered < r.counts_by_entry["gz-credit-list"].produced for f in credit.values())
    # each city its own rows; 贵安新区's jurisdiction (花溪区) lies inside Guiyang's, so Guiyang gets its rows too
    assert credit["gy-market"].delivered > credit["ga-market"].delivered
