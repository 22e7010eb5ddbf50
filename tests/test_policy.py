"""Tests for exchange.policy.sharing: the sharing rules as pure decision functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from exchange.policy.masking import mask_id_number, mask_name, mask_phone
from exchange.policy.sharing import MAX_ITEM_CHARS, EntryPolicy, InvalidRecord, Outcome, check_record, compile_policy, decide
from schemas.envelope import PAD_FIELD, Topics
from schemas.outcomes import DeliveryReason, DenialReason
from schemas.scenario import MaskRule, Scenario, Sharing
from tests.harness import sharing_scenario

PERSON_ID = "44190019900307123X"
PERSON_NAME = "欧阳娜娜"


def policies(scenario: Scenario) -> dict[str, EntryPolicy]:
    return compile_policy(scenario, Topics(scenario.platform.id))


def by_sub(outcomes: list[Outcome]) -> dict[str, Outcome]:
    assert all(o.route is not None for o in outcomes)
    out = {o.route.subscription: o for o in outcomes}
    assert len(out) == len(outcomes), "one outcome per subscription"
    return out


def scenario(catalogue: list[dict], subscriptions: list[dict], departments: list[dict] | None = None, region: str = "441900") -> Scenario:
    depts = departments or [{"id": d, "name": d} for d in ("prov", "a", "b", "c")]
    return Scenario.model_validate(
        {
            "name": "t",
            "platform": {"id": "t1", "name": "测试平台", "region": region},
            "departments": depts,
            "catalogue": catalogue,
            "subscriptions": subscriptions,
        }
    )


PERSON_ITEMS = [
    {"key": "person.id", "name": "身份证号", "type": "resident_id", "sensitivity": "personal"},
    {"key": "person.name", "name": "姓名", "type": "person_name", "sensitivity": "personal"},
    {"key": "person.phone", "name": "电话", "type": "phone", "sensitivity": "personal"},
    {"key": "person.status", "name": "状态", "type": "status"},
]
PERSON_RECORD = {
    "person.status": "正常",  # deliberately not in entry order
    "person.phone": "13812345678",
    "person.name": PERSON_NAME,
    "person.id": PERSON_ID,
    PAD_FIELD: "xxxxxxxx",
}


# --- compilation ----------------------------------------------------------------


def test_compile_policy_one_entry_policy_per_entry() -> None:
    s = sharing_scenario()
    compiled = policies(s)
    assert list(compiled) == ["open", "cond", "secret"]
    for entry in s.catalogue:
        p = compiled[entry.id]
        assert p.entry_id == entry.id
        assert p.provider == "prov"
        assert p.sharing is entry.sharing
        assert [r.subscription for r in p.routes] == [sub.id for sub in s.subscriptions if sub.entry == entry.id]
    assert [r.topic for r in compiled["secret"].routes] == ["dx.t1.out.c", "dx.t1.out.b"]
    cond = compiled["cond"]
    assert check_record(cond, {"enterprise.count": 3, "enterprise.name": "x"})
    with pytest.raises(InvalidRecord):
        check_record(cond, {"enterprise.count": "3"})
    with pytest.raises(InvalidRecord):
        check_record(cond, {"enterprise.name": 3})


# --- unconditional -------------------------------------------------------------


def test_unconditional_delivers_all_items_in_entry_order_with_personal_items_masked() -> None:
    s = sharing_scenario()
    record = {"person.status": "正常", "person.name": PERSON_NAME, "person.id": PERSON_ID, PAD_FIELD: "zz"}
    [outcome] = decide(policies(s)["open"], "prov", record)
    assert outcome.delivered is True
    assert outcome.reason == DeliveryReason.unconditional
    assert outcome.route.consumer == "a"
    assert list(outcome.value) == ["person.id", "person.name", "person.status"]
    assert outcome.value == {"person.id": "441900********123X", "person.name": "欧阳**", "person.status": "正常"}
    # the record handed in is not modified by masking
    assert record["person.id"] == PERSON_ID and record["person.name"] == PERSON_NAME


def test_unconditional_ignores_approvals() -> None:
    s = sharing_scenario()
    [outcome] = decide(policies(s)["open"], "prov", {"person.status": "x"}, approvals=set())
    assert (outcome.delivered, outcome.reason, outcome.value) == (True, DeliveryReason.unconditional, {"person.status": "x"})


def test_unconditional_subscription_items_subset_in_entry_order() -> None:
    s = scenario(
        [{"id": "people", "name": "人口", "provider": "prov", "sharing": "unconditional", "items": PERSON_ITEMS}],
        [{"consumer": "a", "entry": "people", "items": ["person.status", "person.id"]}, {"consumer": "b", "entry": "people"}],
    )
    out = by_sub(decide(policies(s)["people"], "prov", dict(PERSON_RECORD)))
    a, b = out["a.people"], out["b.people"]
    assert a.delivered and a.reason == DeliveryReason.unconditional
    assert list(a.value) == ["person.id", "person.status"]
    assert a.value == {"person.id": mask_id_number(PERSON_ID), "person.status": "正常"}
    assert list(b.value) == ["person.id", "person.name", "person.phone", "person.status"]
    assert b.value["person.phone"] == "138****5678"
    assert b.value["person.name"] == "欧阳**"


def test_missing_items_are_left_out_not_invented() -> None:
    s = sharing_scenario()
    [outcome] = decide(policies(s)["open"], "prov", {"person.name": None})
    assert outcome.delivered and outcome.value == {"person.name": None}


def test_explicit_mask_rules_override_auto() -> None:
    items = [
        {"key": "x.name", "name": "姓名", "type": "person_name", "sensitivity": "personal", "mask": "none"},
        {"key": "x.note", "name": "备注", "type": "text", "mask": "redact"},
        {"key": "x.other", "name": "其他", "type": "text", "sensitivity": "personal"},  # auto → redact
        {"key": "x.addr", "name": "地址", "type": "address", "sensitivity": "public"},  # auto, not personal → clear
    ]
    s = scenario([{"id": "e", "name": "e", "provider": "prov", "sharing": "unconditional", "items": items}], [{"consumer": "a", "entry": "e"}])
    record = {"x.name": "张三", "x.note": "秘密", "x.other": "别的", "x.addr": "广东省东莞市南城街道鸿福路1号"}
    [o] = decide(policies(s)["e"], "prov", record)
    assert o.value == {"x.name": "张三", "x.note": "***", "x.other": "***", "x.addr": "广东省东莞市南城街道鸿福路1号"}


def test_unmasked_lifts_masking_on_a_conditional_entry_only_for_that_subscriber() -> None:
    s = scenario(
        [{"id": "people", "name": "人口", "provider": "prov", "sharing": "有条件共享", "items": PERSON_ITEMS}],
        [
            {"consumer": "a", "entry": "people", "purpose": "p", "unmasked": ["person.id", "person.phone"], "status": "approved"},
            {"consumer": "b", "entry": "people", "purpose": "p", "status": "approved"},
        ],
    )
    out = by_sub(decide(policies(s)["people"], "prov", dict(PERSON_RECORD)))
    assert out["a.people"].reason == DeliveryReason.approved
    assert out["a.people"].value == {
        "person.id": PERSON_ID,
        "person.name": mask_name(PERSON_NAME),
        "person.phone": "13812345678",
        "person.status": "正常",
    }
    assert out["b.people"].value == {
        "person.id": mask_id_number(PERSON_ID),
        "person.name": mask_name(PERSON_NAME),
        "person.phone": mask_phone("13812345678"),
        "person.status": "正常",
    }


@pytest.mark.parametrize("sharing", ["unconditional", "not_shared"])
def test_unmasked_is_refused_outside_conditional_entries(sharing: str) -> None:
    with pytest.raises(ValidationError, match="only a conditional entry's approval can lift masking"):
        scenario(
            [{"id": "people", "name": "人口", "provider": "prov", "sharing": sharing, "items": PERSON_ITEMS}],
            [{"consumer": "a", "entry": "people", "purpose": "p", "unmasked": ["person.id"], "status": "approved"}],
        )


# --- conditional -----------------------------------------------------------------

COND_RECORD = {
    "enterprise.code": "91441900MA4W1234X5",
    "enterprise.name": "东莞某某有限公司",
    "enterprise.phone": "13912345678",
    "enterprise.count": 12,
}


def test_conditional_uses_scenario_status_without_live_approvals() -> None:
    out = by_sub(decide(policies(sharing_scenario())["cond"], "prov", dict(COND_RECORD)))
    a, b = out["a.cond"], out["b.cond"]
    assert (a.delivered, a.reason) == (True, DeliveryReason.approved)
    assert a.value == {"enterprise.code": "91441900MA4W1234X5", "enterprise.name": "东莞某某有限公司"}
    assert (b.delivered, b.reason, b.value) == (False, DenialReason.not_approved, None)


def test_live_approval_grants_a_pending_subscription() -> None:
    out = by_sub(decide(policies(sharing_scenario())["cond"], "prov", dict(COND_RECORD), approvals={"b.cond"}))
    a, b = out["a.cond"], out["b.cond"]
    # approvals override the scenario both ways: a (approved in the file) is now refused
    assert (a.delivered, a.reason, a.value) == (False, DenialReason.not_approved, None)
    assert (b.delivered, b.reason) == (True, DeliveryReason.approved)
    assert b.value == {
        "enterprise.code": "91441900MA4W1234X5",
        "enterprise.name": "东莞某某有限公司",
        "enterprise.phone": "139****5678",
        "enterprise.count": 12,
    }


@pytest.mark.parametrize(
    ("approvals", "delivered"),
    [
        (set(), set()),
        (frozenset({"a.cond"}), {"a.cond"}),
        ({"a.cond", "b.cond"}, {"a.cond", "b.cond"}),
        (["b.cond"], {"b.cond"}),  # any container
        ({"a.open", "c.secret", "cond"}, set()),  # other ids do not count
    ],
)
def test_live_approvals_decide_conditional_delivery(approvals, delivered: set[str]) -> None:
    out = by_sub(decide(policies(sharing_scenario())["cond"], "prov", dict(COND_RECORD), approvals=approvals))
    assert {k for k, o in out.items() if o.delivered} == delivered
    for o in out.values():
        if not o.delivered:
            assert o.reason == DenialReason.not_approved and o.value is None


def test_approved_subscriber_never_gets_items_outside_its_items() -> None:
    record = dict(COND_RECORD, **{PAD_FIELD: "p" * 100})
    a = by_sub(decide(policies(sharing_scenario())["cond"], "prov", record))["a.cond"]
    assert set(a.value) == {"enterprise.code", "enterprise.name"}


# --- not shared, no subscriber, wrong source ------------------------------------------


@pytest.mark.parametrize("approvals", [None, set(), {"c.secret", "b.secret"}])
@pytest.mark.parametrize("source", ["prov", "a"])
def test_not_shared_denies_every_route(approvals, source: str) -> None:
    outcomes = decide(policies(sharing_scenario())["secret"], source, {"person.id": PERSON_ID}, approvals=approvals)
    assert [(o.route.consumer, o.delivered, o.reason, o.value) for o in outcomes] == [
        ("c", False, DenialReason.not_shared, None),
        ("b", False, DenialReason.not_shared, None),
    ]


@pytest.mark.parametrize("sharing", list(Sharing))
def test_entry_without_subscription_gives_one_no_subscriber_outcome(sharing: Sharing) -> None:
    s = scenario(
        [
            {"id": "lonely", "name": "无人订阅", "provider": "prov", "sharing": sharing.value, "items": PERSON_ITEMS},
            {"id": "other", "name": "其他", "provider": "prov", "sharing": "unconditional", "items": PERSON_ITEMS},
        ],
        [{"consumer": "a", "entry": "other"}],
    )
    compiled = policies(s)
    assert compiled["lonely"].routes == ()
    assert decide(compiled["lonely"], "prov", dict(PERSON_RECORD)) == [Outcome(None, False, DenialReason.no_subscriber)]
    assert decide(compiled["lonely"], "a", {}, approvals={"a.lonely"}) == [Outcome(None, False, DenialReason.no_subscriber)]


@pytest.mark.parametrize("entry", ["open", "cond"])
@pytest.mark.parametrize("approvals", [None, {"a.cond", "b.cond"}])
def test_source_other_than_provider_is_denied_on_every_route(entry: str, approvals) -> None:
    compiled = policies(sharing_scenario())
    outcomes = decide(compiled[entry], "a", {}, approvals=approvals)
    assert len(outcomes) == len(compiled[entry].routes)
    assert all((o.delivered, o.reason, o.value) == (False, DenialReason.not_provider, None) for o in outcomes)


# --- row filter (jurisdiction) -----------------------------------------------------

ROW_ITEMS = [{"key": "vehicle.plate", "name": "车牌", "type": "plate"}, {"key": "vehicle.region", "name": "所在镇街", "type": "region_code"}]


def row_scenario(sharing: str = "unconditional") -> Scenario:
    return scenario(
        [{"id": "gps", "name": "定位", "provider": "prov", "sharing": sharing, "items": ROW_ITEMS}],
        [{"consumer": c, "entry": "gps", "purpose": "p", "status": "approved"} for c in ("city", "nancheng", "changan", "whole")],
        departments=[
            {"id": "prov", "name": "交通局"},
            {"id": "city", "name": "城管局"},  # no region: the platform's
            {"id": "nancheng", "name": "南城街道", "region": "441900004"},
            {"id": "changan", "name": "长安镇", "region": 441900119},
            {"id": "whole", "name": "同级", "region": "441900"},
        ],
    )


def delivered_to(outcomes: list[Outcome]) -> set[str]:
    for o in outcomes:
        assert o.delivered or o.reason == DenialReason.out_of_jurisdiction, o
    return {o.route.consumer for o in outcomes if o.delivered}


@pytest.mark.parametrize(
    ("row_region", "towns"),
    [
        ("441900004", {"nancheng"}),
        ("441900119", {"changan"}),
        ("441900101", set()),
        ("441900", set()),  # a city-level row is not inside either town
        ("420100", set()),
        ("44190000", set()),  # malformed code
        (None, set()),
        (441900004, set()),  # not a string
    ],
)
def test_row_filter_by_consumer_jurisdiction(row_region, towns: set[str]) -> None:
    policy = policies(row_scenario())["gps"]
    record = {"vehicle.plate": "粤S12345", "vehicle.region": row_region}
    got = delivered_to(decide(policy, "prov", record))
    assert got == {"city", "whole"} | towns


def test_row_filter_missing_region_value_is_out_of_jurisdiction() -> None:
    outcomes = by_sub(decide(policies(row_scenario())["gps"], "prov", {"vehicle.plate": "粤S12345"}))
    assert outcomes["nancheng.gps"].reason == DenialReason.out_of_jurisdiction
    assert outcomes["changan.gps"].reason == DenialReason.out_of_jurisdiction
    assert outcomes["nancheng.gps"].value is None
    assert outcomes["city.gps"].delivered and outcomes["city.gps"].value == {"vehicle.plate": "粤S12345"}


def test_a_department_outside_its_platforms_region_is_refused() -> None:
    """It would get every row (rows are filtered only inside the provider's region), so the
    scenario is refused where it names it (exchange validate: departments.N.region)."""
    departments = [{"id": "prov", "name": "交通局"}, {"id": "far", "name": "外省", "region": "420100"}]
    with pytest.raises(
        ValueError, match=r"departments\.1\.region: department 'far': region 420100 is outside the region of its platform 't1' \(441900\)"
    ):
        scenario([{"id": "gps", "name": "定位", "provider": "prov", "sharing": "unconditional", "items": ROW_ITEMS}], [], departments=departments)


def test_row_filter_compiles_regions_only_for_narrower_consumers() -> None:
    routes = {r.consumer: r.region for r in policies(row_scenario())["gps"].routes}
    assert routes == {"city": None, "nancheng": "441900004", "changan": "441900119", "whole": None}


def test_no_row_filter_on_an_entry_without_region_item() -> None:
    s = scenario(
        [{"id": "e", "name": "e", "provider": "prov", "sharing": "unconditional", "items": ROW_ITEMS[:1]}],
        [{"consumer": "t", "entry": "e"}],
        departments=[{"id": "prov", "name": "p"}, {"id": "t", "name": "镇", "region": "441900004"}],
    )
    [o] = decide(policies(s)["e"], "prov", {"vehicle.plate": "粤S1"})
    assert o.delivered and o.route.region is None


def test_row_filter_county_under_a_provincial_platform() -> None:
    s = scenario(
        [{"id": "gps", "name": "定位", "provider": "prov", "sharing": "unconditional", "items": ROW_ITEMS}],
        [{"consumer": "luohu", "entry": "gps"}],
        departments=[{"id": "prov", "name": "p"}, {"id": "luohu", "name": "罗湖区", "region": "440303"}],
        region="440000",
    )
    policy = policies(s)["gps"]
    for row, ok in (("440303", True), ("440303001", True), ("440304", False), ("441900004", False), ("440000", False)):
        [o] = decide(policy, "prov", {"vehicle.region": row})
        assert o.delivered is ok, row
        assert o.reason == (DeliveryReason.unconditional if ok else DenialReason.out_of_jurisdiction)


def test_approval_is_checked_before_jurisdiction() -> None:
    policy = policies(row_scenario("conditional"))["gps"]
    out = by_sub(decide(policy, "prov", {"vehicle.region": "441900119"}, approvals={"changan.gps", "nancheng.gps"}))
    assert out["city.gps"].reason == DenialReason.not_approved
    assert out["nancheng.gps"].reason == DenialReason.out_of_jurisdiction
    assert (out["changan.gps"].delivered, out["changan.gps"].reason) == (True, DeliveryReason.approved)


# --- check_record ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cond_policy() -> EntryPolicy:
    return policies(sharing_scenario())["cond"]


@pytest.fixture(scope="module")
def number_policy() -> EntryPolicy:
    items = [
        {"key": "v.lat", "name": "纬度", "type": "latitude"},
        {"key": "v.lon", "name": "经度", "type": "longitude"},
        {"key": "v.speed", "name": "速度", "type": "decimal"},
        {"key": "v.count", "name": "数量", "type": "integer"},
        {"key": "v.note", "name": "备注", "type": "text"},
    ]
    s = scenario([{"id": "n", "name": "n", "provider": "prov", "sharing": "unconditional", "items": items}], [{"consumer": "a", "entry": "n"}])
    return policies(s)["n"]


@pytest.mark.parametrize("value", [[], [1, 2], "text", 3, 2.5, None, True])
def test_check_record_rejects_non_objects(cond_policy: EntryPolicy, value: object) -> None:
    with pytest.raises(InvalidRecord) as info:
        check_record(cond_policy, value)
    assert info.value.reason == "not_an_object"


def test_check_record_rejects_unknown_items(cond_policy: EntryPolicy) -> None:
    with pytest.raises(InvalidRecord) as info:
        check_record(cond_policy, {"enterprise.code": "x", "person.id": PERSON_ID})
    assert info.value.reason == "unknown_item"
    assert "person.id" in info.value.detail


def test_check_record_accepts_a_valid_record_with_pad_and_nulls(cond_policy: EntryPolicy) -> None:
    record = dict(COND_RECORD, **{PAD_FIELD: "p" * 1000, "enterprise.phone": None})
    assert check_record(cond_policy, record) == record
    assert check_record(cond_policy, {}) == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("enterprise.name", 7),  # string item given an int
        ("enterprise.name", 1.5),
        ("enterprise.name", True),
        ("enterprise.name", ["a"]),
        ("enterprise.name", {"a": 1}),
        ("enterprise.count", "12"),  # integer item given a string
        ("enterprise.count", 12.0),  # integer item given a float
        ("enterprise.count", True),  # bool is never a number
        ("enterprise.count", False),
    ],
)
def test_check_record_rejects_wrong_types(cond_policy: EntryPolicy, key: str, value: object) -> None:
    with pytest.raises(InvalidRecord) as info:
        check_record(cond_policy, {key: value})
    assert info.value.reason == "wrong_type"
    assert key in info.value.detail


@pytest.mark.parametrize("key", ["v.lat", "v.lon", "v.speed"])
def test_check_record_number_items(number_policy: EntryPolicy, key: str) -> None:
    assert check_record(number_policy, {key: 22.5}) == {key: 22.5}
    assert check_record(number_policy, {key: 23}) == {key: 23}
    assert check_record(number_policy, {key: None}) == {key: None}
    for bad in ("22.5", True, False, [1.0]):
        with pytest.raises(InvalidRecord) as info:
            check_record(number_policy, {key: bad})
        assert info.value.reason == "wrong_type"


def test_check_record_value_size_limit(number_policy: EntryPolicy) -> None:
    assert check_record(number_policy, {"v.note": "x" * MAX_ITEM_CHARS})
    with pytest.raises(InvalidRecord) as info:
        check_record(number_policy, {"v.note": "x" * (MAX_ITEM_CHARS + 1)})
    assert info.value.reason == "value_too_large"
    assert isinstance(info.value, ValueError)


# --- properties --------------------------------------------------------------------

ITEM_TYPES = ["text", "person_name", "resident_id", "phone", "address", "status", "enterprise_name"]


@st.composite
def cases(draw):
    n_items = draw(st.integers(1, 6))
    items = [
        {
            "key": f"d.i{i}",
            "name": f"项{i}",
            "type": draw(st.sampled_from(ITEM_TYPES)),
            "sensitivity": draw(st.sampled_from(["public", "internal", "personal"])),
        }
        for i in range(n_items)
    ]
    keys = [i["key"] for i in items]
    sharing = draw(st.sampled_from(["unconditional", "conditional", "not_shared", "有条件共享"]))
    consumers = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True))
    subs = []
    for c in consumers:
        sub = {"consumer": c, "entry": "e", "purpose": "p", "status": draw(st.sampled_from(["approved", "pending"]))}
        wanted = draw(st.none() | st.lists(st.sampled_from(keys), unique=True))
        if wanted is not None:
            sub["items"] = wanted
        if sharing in ("conditional", "有条件共享"):
            sub["unmasked"] = draw(st.lists(st.sampled_from(keys), unique=True))
        subs.append(sub)
    s = Scenario.model_validate(
        {
            "name": "prop",
            "platform": {"id": "p", "name": "p", "region": "441900"},
            "departments": [{"id": d, "name": d} for d in ("prov", "a", "b", "c", "d", "e")],
            "catalogue": [{"id": "e", "name": "e", "provider": "prov", "sharing": sharing, "items": items}],
            "subscriptions": subs,
        }
    )
    sub_ids = [f"{c}.e" for c in consumers]
    approvals = draw(st.none() | st.sets(st.sampled_from([*sub_ids, "z.e", "a.x"])))
    record = draw(st.dictionaries(st.sampled_from([*keys, PAD_FIELD]), st.none() | st.text(max_size=20), max_size=n_items + 1))
    source = draw(st.sampled_from(["prov", "prov", "prov", "a"]))
    return s, approvals, record, source


@settings(max_examples=300, deadline=None)
@given(cases())
def test_decide_never_leaks(case) -> None:
    s, approvals, record, source = case
    entry = s.entries["e"]
    subs = {sub.id: sub for sub in s.subscriptions}
    outcomes = decide(policies(s)["e"], source, record, approvals)
    assert [o.route.subscription for o in outcomes] == list(subs)
    for o in outcomes:
        sub = subs[o.route.subscription]
        if not o.delivered:
            assert o.value is None
            continue
        assert source == entry.provider
        assert entry.sharing is not Sharing.not_shared
        allowed = set(sub.items) if sub.items is not None else set(entry.item_keys)
        assert set(o.value) <= allowed
        assert set(o.value) == allowed & set(record)
        assert PAD_FIELD not in o.value
        if entry.sharing is Sharing.conditional:
            assert o.reason == DeliveryReason.approved
            if approvals is None:
                assert sub.status.value == "approved"
            else:
                assert sub.id in approvals
        else:
            assert o.reason == DeliveryReason.unconditional
        for item in entry.items:
            if item.key not in o.value:
                continue
            original = record[item.key]
            rule = item.effective_mask
            if rule is MaskRule.none or item.key in sub.unmasked or original is None:
                assert o.value[item.key] == original
            elif rule is MaskRule.redact:
                assert o.value[item.key] == "***"
    if entry.sharing is Sharing.not_shared:
        assert all(o.reason == DenialReason.not_shared for o in outcomes)


# --- cost independent of the catalogue -------------------------------------------------

N_ENTRIES = 2000
N_DEPTS = 40


def big_catalogue_dict(entry_ids: list[int] | None = None) -> dict:
    def entry(i: int) -> dict:
        return {
            "id": f"e{i:04d}",
            "name": f"资源{i}",
            "provider": f"d{i % N_DEPTS:02d}",
            "sharing": ("unconditional", "conditional", "not_shared")[i % 3],
            "items": [
                {"key": "x.code", "name": "代码", "type": "credit_code"},
                {"key": "x.name", "name": "姓名", "type": "person_name", "sensitivity": "personal"},
                {"key": f"x.v{i % 7}", "name": "值", "type": "text"},
            ],
        }

    def subs(i: int) -> list[dict]:
        return [
            {"consumer": f"d{(i + k) % N_DEPTS:02d}", "entry": f"e{i:04d}", "purpose": "p", "status": "approved"}
            for k in range(1, 1 + i % 4)  # 0..3 subscribers per entry
        ]

    ids = entry_ids if entry_ids is not None else list(range(N_ENTRIES))
    return {
        "name": "big",
        "platform": {"id": "big", "name": "big", "region": "441900"},
        "departments": [{"id": f"d{d:02d}", "name": f"部门{d}"} for d in range(N_DEPTS)],
        "catalogue": [entry(i) for i in ids],
        "subscriptions": [s for i in ids for s in subs(i)],
    }


@pytest.fixture(scope="module")
def big() -> tuple[Scenario, dict[str, EntryPolicy]]:
    s = Scenario.model_validate(big_catalogue_dict())
    return s, policies(s)


def test_compile_policy_is_per_entry_on_a_large_catalogue(big) -> None:
    s, compiled = big
    assert len(compiled) == N_ENTRIES
    assert set(compiled) == {e.id for e in s.catalogue}
    for entry_id, p in compiled.items():
        assert p.entry_id == entry_id
        assert len(p.routes) == int(entry_id[1:]) % 4
        assert all(r.subscription.endswith("." + entry_id) for r in p.routes)


@pytest.mark.parametrize("i", [1, 3, 1234, 1999])
def test_decide_on_one_entry_sees_only_its_own_subscriptions(big, i: int) -> None:
    s, compiled = big
    entry_id = f"e{i:04d}"
    policy = compiled[entry_id]
    expected = [sub.id for sub in s.subscriptions if sub.entry == entry_id]
    assert expected
    every_sub = {sub.id for sub in s.subscriptions}
    outcomes = decide(policy, policy.provider, {"x.code": "c", "x.name": "张三"}, approvals=every_sub)
    assert [o.route.subscription for o in outcomes] == expected
    if policy.sharing is Sharing.not_shared:
        assert not any(o.delivered for o in outcomes)
    else:
        assert all(o.value == {"x.code": "c", "x.name": "张*"} for o in outcomes)
    # the entry's compiled policy does not depend on the rest of the catalogue
    alone = Scenario.model_validate(big_catalogue_dict([i]))
    assert policies(alone)[entry_id] == policy
