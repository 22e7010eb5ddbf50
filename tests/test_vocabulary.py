"""One vocabulary: the outcome enums keep the wire bytes, audit rows have names, the
scenario answers fan-out and copies in one place."""

from __future__ import annotations

import json
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import metrics
from exchange.policy.audit import AuditWriter, block_hash, verify
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy, compile_transit, decide, possible_outcomes
from exchange.scenarios.loader import parse
from schemas.envelope import AUDIT_FIELDS, AuditRecord, AuditRow, Topics, audit_records, audit_rows, record_headers
from schemas.outcomes import DeadLetterReason, Decision, DeliveryReason, DenialReason, QualityReason, VerificationResult
from tests.harness import sharing_scenario
from tests.test_grouping import REGIONS, SUBS
from tests.test_one_source import SCENARIO as ONE_SOURCE
from tests.test_policy import cases, policies, row_scenario

ENUMS = (Decision, DeliveryReason, DenialReason, DeadLetterReason, VerificationResult, QualityReason)


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_members_are_their_values_on_the_wire(enum) -> None:
    for member in enum:
        assert member.value == member.name  # the label value is the Python name: nothing to look up
        assert orjson.dumps([member]) == orjson.dumps([member.value]) == json.dumps([member.value]).encode()
        assert json.dumps({member: member}) == json.dumps({member.value: member.value})
        assert f"{member}" == str(member) == member.value and type(str(member)) is str
        assert member == member.value and hash(member) == hash(member.value)  # "denied" read back finds Decision.denied


def test_reason_names_do_not_overlap() -> None:
    names = [m.value for e in (DeliveryReason, DenialReason, DeadLetterReason) for m in e]
    assert len(names) == len(set(names)), "a reason label means one thing"


def test_audit_row_follows_the_audit_record() -> None:
    assert AuditRow._fields == AUDIT_FIELDS == tuple(AuditRecord.model_fields)
    decisions = AuditRecord.model_json_schema()["properties"]["decision"]["enum"]
    assert decisions == ["delivered", "denied", "forwarded"]


def _routed_rows():
    scenario = sharing_scenario()
    topics = Topics(scenario.platform.id)
    core = RouterCore(compile_policy(scenario, topics), topics, "w")
    records = []
    for i, entry in enumerate(scenario.catalogue):
        records.append(
            SimpleNamespace(
                topic=topics.ingress(entry.id),
                partition=0,
                offset=i,
                key=None,
                value=b"{}",
                headers=record_headers(b"1.%d" % i, entry.id, entry.provider, 1, 1, "r"),
            )
        )
    routed = core.route(records, now=1)
    return scenario, routed, [row for rows in routed.audit.values() for row in rows]


def test_audit_blocks_are_byte_identical_whether_rows_are_tuples_or_audit_rows() -> None:
    _, _, rows = _routed_rows()
    assert rows and all(type(r) is tuple for r in rows), "the hot path builds plain tuples"
    plain, named = AuditWriter("w"), AuditWriter("w")
    named.epoch = plain.epoch
    a = plain.block(0, rows)
    b = named.block(0, [AuditRow(*r) for r in rows])
    assert a == b
    block = orjson.loads(a)
    assert block_hash(block) == block["hash"] and verify([(0, 0, a)]).ok
    assert audit_rows(block) == [AuditRow(*orjson.loads(orjson.dumps(r))) for r in rows]
    assert [r._asdict() for r in audit_rows(block)] == audit_records(block)
    with pytest.raises(TypeError):
        plain.block(0, [object()])


def test_audit_rows_carry_the_enums_by_name() -> None:
    _, routed, rows = _routed_rows()
    for row in map(AuditRow._make, rows):
        assert row.decision in (Decision.delivered, Decision.denied)
        assert row.reason in (DeliveryReason if row.decision == Decision.delivered else DenialReason).__members__
    for (_scope, decision, reason), n in routed.decisions.items():
        assert isinstance(decision, Decision) and isinstance(reason, (DeliveryReason, DenialReason)) and n > 0


def test_compiled_audit_decisions_have_names() -> None:
    scenario = sharing_scenario()
    topics = Topics(scenario.platform.id)
    for policy in compile_policy(scenario, topics).values():
        for route in policy.routes:
            audit = route.delivered_audit
            assert (audit.entry, audit.subscription, audit.consumer) == (policy.entry_id, route.subscription, route.consumer)
            assert route.decision_key == (route.subscription, audit.decision, audit.reason)
            outcome = next(o for o in decide(policy, policy.provider, {}, approvals={route.subscription}) if o.route is route)
            if outcome.delivered:
                assert outcome.reason == audit.reason


def test_transit_routes_name_their_decision() -> None:
    from tests.test_cascade import scenario as cascade

    scenario = cascade()
    seen = set()
    for hub in scenario.hubs_in_use:
        for route in compile_transit(scenario, hub).values():
            seen.add(route.audit.decision)
            if route.denied:
                assert (route.audit.decision, route.audit.reason) == (Decision.denied, DenialReason.hub_negative_list)
            elif route.final:
                assert route.audit.decision == Decision.delivered
            else:
                assert (route.audit.decision, route.audit.reason) == (Decision.forwarded, DeliveryReason.relayed)
    assert seen == {Decision.denied, Decision.delivered, Decision.forwarded}


def test_copied_items_name_the_source_of_each_copy() -> None:
    scenario = parse(ONE_SOURCE, "one-source.yaml")
    assert scenario.copied_items("tax-record") == {"enterprise.name": "market", "enterprise.address": "market"}
    assert scenario.copied_items("registration") == {}  # the source publishes its own items
    with pytest.raises(KeyError):
        scenario.copied_items("nope")


def test_fanout_is_one_outcome_per_subscription_and_at_least_one() -> None:
    scenario = parse(ONE_SOURCE, "one-source.yaml")
    assert scenario.fanout() == {"registration": 1, "tax-record": 1}  # registration: one no_subscriber denial
    shared = sharing_scenario()
    by_entry = shared.subscriptions_by_entry
    assert shared.fanout() == {e.id: max(1, len(by_entry.get(e.id, ()))) for e in shared.catalogue}
    assert any(n > 1 for n in shared.fanout().values())


# What the policy can decide, and the metrics' label sets derived from it ---------------------
@settings(max_examples=200, deadline=None)
@given(cases())
def test_decide_gives_only_possible_outcomes(case) -> None:
    s, approvals, record, source = case
    policy = policies(s)["e"]
    possible = {(route, decision, reason) for route, decision, reason in possible_outcomes(policy)}
    for o in decide(policy, source, record, approvals):
        decision = o.route.decision_key[1] if o.delivered else Decision.denied
        assert (o.route, decision, o.reason) in possible


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["unconditional", "conditional", "not_shared"]),
    st.sampled_from(REGIONS),
    st.none() | st.sets(st.sampled_from(SUBS)),
    st.sampled_from(["prov", "city"]),
)
def test_row_filters_give_only_possible_outcomes(sharing, region, approvals, source) -> None:
    policy = policies(row_scenario(sharing))["gps"]
    possible = set(possible_outcomes(policy))
    for o in decide(policy, source, {"vehicle.plate": "粤S12345", "vehicle.region": region}, approvals):
        assert (o.route, o.route.decision_key[1] if o.delivered else Decision.denied, o.reason) in possible


def test_every_possible_outcome_of_the_row_filters_happens() -> None:
    """The bound is tight: each outcome possible_outcomes names, some record and approvals give."""
    policy = policies(row_scenario("conditional"))["gps"]
    seen = set()
    for region in REGIONS:
        for approvals in (None, set(), set(SUBS)):
            for source in ("prov", "city"):
                for o in decide(policy, source, {"vehicle.plate": "粤S12345", "vehicle.region": region}, approvals):
                    seen.add((o.route, o.route.decision_key[1] if o.delivered else Decision.denied, o.reason))
    assert seen == set(possible_outcomes(policy))


def _labels(scenario):
    return {m._name: {tuple(map(str, labels)) for labels in sets} for m, sets in metrics.label_sets(scenario).items()}


def test_label_sets_cover_what_a_cascade_decides() -> None:
    """Forwarded, relayed, a hub's negative list and bad transit: what the old restated rules left out."""
    from tests.test_cascade import scenario as cascade

    scenario = cascade()
    labels = _labels(scenario)
    decisions = labels["dx_router_decisions"]
    kinds = {(d, r) for _, _, _, d, r in decisions}
    assert {("forwarded", "relayed"), ("denied", "hub_negative_list"), ("dead_lettered", "bad_transit")} <= kinds
    assert any(d == "forwarded" and r in ("approved", "unconditional") for d, r in kinds), "the provider's hub forwards"
    refused = {t.subscription for hub in scenario.all_platforms for t in compile_transit(scenario, hub).values() if t.denied}
    for hub in scenario.hubs_in_use:  # every record a hub relays or refuses in transit is a labelled outcome
        for t in compile_transit(scenario, hub).values():
            if t.denied or t.subscription not in refused:  # past a hub that refuses it, nothing arrives
                assert (hub, t.entry, t.subscription, t.audit.decision, t.audit.reason) in decisions
        if compile_transit(scenario, hub):
            assert (hub, metrics.TRANSIT_ENTRY) in labels["dx_router_records_in"]
            assert (hub, "forwarded") in labels["dx_audit_records_written"] or all(
                t.final or t.denied for t in compile_transit(scenario, hub).values()
            )
    # deliveries are counted on the consumer's own hub, where its subscriber runs
    for hub, _sub, consumer in labels["dx_records_delivered"]:
        assert scenario.platform_of(consumer) == hub
    assert refused and not refused & {sub for _, sub, _ in labels["dx_records_delivered"]}


def test_label_sets_cover_what_the_router_core_counts() -> None:
    """Route every entry of the sharing scenario from every department: each decision the
    router counts (its labels as the router worker builds them) was pre-created."""
    scenario = sharing_scenario()
    topics = Topics(scenario.platform.id)
    core = RouterCore(compile_policy(scenario, topics), topics, "w")
    scope_labels = {s.id: (s.entry, s.id) for s in scenario.subscriptions}  # as exchange/router/app.py labels them
    records, n = [], 0
    for entry in scenario.catalogue:
        for dept in scenario.departments:
            n += 1
            records.append(
                SimpleNamespace(
                    topic=topics.ingress(entry.id),
                    partition=0,
                    offset=n,
                    key=None,
                    value=orjson.dumps({}),
                    headers=record_headers(b"1.%d" % n, entry.id, dept.id, 1, 1, "r"),
                )
            )
    records.append(SimpleNamespace(topic=topics.ingress("nope"), partition=0, offset=n + 1, key=None, value=b"{}", headers=[]))
    labels = _labels(scenario)
    p = scenario.platform.id
    for approvals in (None, set(), {s.id for s in scenario.subscriptions}):
        routed = core.route(records, approvals, now=1)
        for (scope, decision, reason), _ in routed.decisions.items():
            entry, sub = scope_labels.get(scope, (scope, ""))
            assert (p, entry, sub, decision, reason) in labels["dx_router_decisions"]
        for reason in routed.dead_reasons:
            assert (p, "", "", "dead_lettered", reason) in labels["dx_router_decisions"]
            assert (p, reason) in labels["dx_dead_letters"]
