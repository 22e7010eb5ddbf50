"""The grouped decision (what the router uses) says exactly what ``decide()`` says."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.policy.grouping import Grant, decide_grouped
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy, decide
from schemas.envelope import Topics, record_headers
from schemas.outcomes import DenialReason
from tests.test_policy import cases, policies, row_scenario


def agree(policy, source, record, approvals) -> None:
    outcomes = decide(policy, source, record, approvals)
    for grant in (None, Grant(policy, approvals)):
        grouped = decide_grouped(policy, source, record, approvals, grant)
        assert [(route, value) for route, value in grouped.delivered] == [(o.route, o.value) for o in outcomes if o.delivered]
        assert all(o.reason == grouped.reason for o in outcomes if o.delivered)
        want: dict[str, list] = {}
        for o in outcomes:
            if not o.delivered:
                want.setdefault(o.reason, []).append(o.route)
        got = {g.reason: list(g.routes) or [None] for g in grouped.denied}
        assert len(got) == len(grouped.denied), "one group per reason"
        assert got == want


@settings(max_examples=300, deadline=None)
@given(cases())
def test_grouped_agrees_with_decide(case) -> None:
    s, approvals, record, source = case
    agree(policies(s)["e"], source, record, approvals)


REGIONS = ["441900004", "441900119", "441900101", "441900", "420100", "44190000", "4419000041", None, 441900004]
SUBS = ["city.gps", "nancheng.gps", "changan.gps", "whole.gps", "far.gps"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["unconditional", "conditional", "not_shared"]),
    st.sampled_from(REGIONS),
    st.none() | st.sets(st.sampled_from(SUBS)) | st.dictionaries(st.sampled_from(SUBS), st.none() | st.just(frozenset({"vehicle.plate"}))),
    st.sampled_from(["prov", "prov", "city"]),
    st.booleans(),
)
def test_grouped_agrees_with_decide_on_row_filters(sharing, region, approvals, source, with_region) -> None:
    policy = policies(row_scenario(sharing))["gps"]
    record = {"vehicle.plate": "粤S12345", **({"vehicle.region": region} if with_region else {})}
    agree(policy, source, record, approvals)


def test_a_grant_caches_each_region_once_and_reuses_its_groups() -> None:
    grant = Grant(policies(row_scenario())["gps"])
    first = grant.for_region("441900004")
    again = grant.for_region("441900004")  # its parts, not the pair: a compiled core (mypyc) boxes the pair afresh
    assert again[0] is first[0] and again[1] is first[1]
    [group] = first[1]
    assert group.reason == DenialReason.out_of_jurisdiction and group.scopes == ("changan.gps",)
    assert group.audit == ("gps", "changan", "changan.gps", "denied", DenialReason.out_of_jurisdiction)
    [unfit] = grant.for_region(None)[1]
    assert unfit.audit[1] == ["nancheng", "changan"]


def test_router_counts_the_same_decisions_as_decide_one_by_one() -> None:
    s = row_scenario()
    topics = Topics(s.platform.id)
    compiled = compile_policy(s, topics)
    core = RouterCore(compiled, topics, "0")
    regions = ["441900004", "441900119", "441900101", "441900004", "420100", None]
    records = [
        SimpleNamespace(
            topic=topics.ingress("gps"),
            partition=0,
            offset=i,
            key=b"k",
            value=orjson.dumps({"vehicle.plate": "粤S1", "vehicle.region": region}),
            headers=record_headers(b"1.%d" % i, "gps", "prov", 1, 1, "r"),
        )
        for i, region in enumerate(regions)
    ]
    routed = core.route(records, now=1_700_000_000_000_000_000)
    want: Counter = Counter()
    for region in regions:
        for o in decide(compiled["gps"], "prov", {"vehicle.plate": "粤S1", "vehicle.region": region}):
            want[(o.route.subscription, "delivered" if o.delivered else "denied", o.reason)] += 1
    assert routed.decisions == want
    rows = routed.audit[0]
    assert len(rows) == sum(len(decide_grouped(compiled["gps"], "prov", {"vehicle.region": r}).delivered) + 1 for r in regions)
