"""One vocabulary: the outcome enums keep the wire bytes, audit rows have names, the
scenario answers fan-out and copies in one place."""

from __future__ import annotations

import json
from types import SimpleNamespace

import orjson
import pytest

from exchange.policy.audit import AuditWriter, block_hash, verify
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy, compile_transit, decide
from exchange.scenarios.loader import parse
from schemas.envelope import AUDIT_FIELDS, AuditRecord, AuditRow, Topics, audit_records, audit_rows, record_headers
from schemas.outcomes import DeadLetterReason, Decision, DeliveryReason, DenialReason, VerificationResult
from tests.harness import sharing_scenario
from tests.test_one_source import SCENARIO as ONE_SOURCE

ENUMS = (Decision, DeliveryReason, DenialReason, DeadLetterReason, VerificationResult)


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
        records.append(SimpleNamespace(topic=topics.ingress(entry.id), partition=0, offset=i, key=None, value=b"{}",
                                       headers=record_headers(b"1.%d" % i, entry.id, entry.provider, 1, 1, "r")))
    routed = core.route(records)
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
    for (scope, decision, reason), n in routed.decisions.items():
        assert isinstance(decision, Decision) and isinstance(reason, (DeliveryReason, DenialReason)) and n > 0


def test_compiled_audit_decisions_have_names() -> None:
    scenario = sharing_scenario()
    topics = Topics(scenario.platform.id)
    for policy in compile_policy(scenario, topics).values():
        for route in policy.routes:
            audit = route.delivered_audit
            assert (audit.entry, audit.subscription, audit.consumer) == (policy.entry_id, route.subscription, route.consumer)
            assert route.decision_key == (route.subscription, audit.decision, audit.reason)
            outcome = next(o for o in decide(policy, policy.provider, {}, approvals={route.subscription})
                           if o.route is route)
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
