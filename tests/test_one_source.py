"""One number, one source (一数一源) on a real broker and router: copies verified against the
authoritative source, mismatches reported, subscribers only ever given the source's values."""

from __future__ import annotations

import orjson
import pytest

from exchange.kafka.tansu import EmbeddedBroker
from exchange.scenarios.loader import parse

from .harness import RouterProcess, envelope, new_run, publish, read_all

SCENARIO = """
name: one-source
platform: {id: t2, name: 测试平台, region: "420000", level: provincial}
departments:
  - {id: market, name: 市场监管局}
  - {id: tax, name: 税务局}
  - {id: hrss, name: 人社局}
catalogue:
  - id: registration
    name: 企业登记
    provider: market
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 统一社会信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name, authoritative: true}
      - {key: enterprise.address, name: 住所, type: address, authoritative: true}
  - id: tax-record
    name: 税务登记
    provider: tax
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 统一社会信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name}
      - {key: enterprise.address, name: 住所, type: address}
      - {key: tax.status, name: 状态, type: status}
subscriptions:
  - {consumer: hrss, entry: tax-record}
"""

CODE_A, CODE_B = "91420100MA4K0C1G55", "91420100MA4K0C2E1C"  # valid GB 32100 check characters
TRUE_NAME, TRUE_ADDRESS = "武汉市华盛科技有限公司", "湖北省武汉市武昌区中山路8号"


async def test_copies_are_verified_and_only_authoritative_values_are_delivered(tmp_path):
    scenario = parse(SCENARIO, "one-source.yaml")
    run = new_run()
    async with EmbeddedBroker() as broker:
        router = RouterProcess(scenario, broker.bootstrap, tmp_path)
        await router.start()
        try:
            t = router.topics
            await publish(
                broker.bootstrap,
                t.ingress("registration"),
                [
                    (
                        CODE_A.encode(),
                        orjson.dumps({"enterprise.credit_code": CODE_A, "enterprise.name": TRUE_NAME, "enterprise.address": TRUE_ADDRESS}),
                        envelope("registration", "market", "1.1", run),
                    )
                ],
            )
            await read_all(broker.bootstrap, t.audit, run=None, until=1, timeout=30)  # the source's record routed first, however loaded the machine
            copies = [
                (CODE_A, TRUE_NAME, TRUE_ADDRESS),  # agrees
                (CODE_A, "武汉市华盛科技有限公司（分公司）", TRUE_ADDRESS),  # a stale name
                (CODE_B, "某某公司", "某地"),  # the source has not published this enterprise
                (CODE_A.lower(), TRUE_NAME, TRUE_ADDRESS),  # the same code, spelt in lower case: verified
                ("91420100MA4K0C1G5R", TRUE_NAME, TRUE_ADDRESS),  # wrong check character: matches nothing
            ]
            await publish(
                broker.bootstrap,
                t.ingress("tax-record"),
                [
                    (
                        code.encode(),
                        orjson.dumps({"enterprise.credit_code": code, "enterprise.name": name, "enterprise.address": address, "tax.status": "正常"}),
                        envelope("tax-record", "tax", f"2.{i + 1}", run),
                    )
                    for i, (code, name, address) in enumerate(copies)
                ],
            )
            delivered = await read_all(broker.bootstrap, t.delivery("hrss"), run=run, until=5)
            quality = [orjson.loads(r.value) for r in await read_all(broker.bootstrap, t.quality, idle=1.5)]
        finally:
            router.stop()
    values = {dict(r.headers)["trace-id"]: orjson.loads(r.value) for r in delivered}
    assert values[b"2.1"]["enterprise.name"] == TRUE_NAME
    assert values[b"2.2"]["enterprise.name"] == TRUE_NAME, "a copy that disagrees is never delivered as the truth"
    assert "enterprise.name" not in values[b"2.3"] and "enterprise.address" not in values[b"2.3"]  # unverifiable: withheld
    assert values[b"2.3"]["tax.status"] == "正常"
    assert values[b"2.4"]["enterprise.name"] == TRUE_NAME and values[b"2.4"]["enterprise.credit_code"] == CODE_A
    assert "enterprise.name" not in values[b"2.5"] and values[b"2.5"]["tax.status"] == "正常"  # invalid key: withheld
    conflicts = [q for q in quality if q["run"] == run]
    assert len(conflicts) == 1
    c = conflicts[0]
    assert (c["item"], c["master_key"], c["authority"], c["department"]) == ("enterprise.name", CODE_A, "market", "tax")
    assert (c["authoritative_value"], c["copy_value"]) == (TRUE_NAME, "武汉市华盛科技有限公司（分公司）")


# --- master keys in their standard form (issue 13, item 4) ------------------------------
# Pure tests of the core (schemas/keys.py, policy.reconcile, RouterCore's counting), then the
# same through a real router below.

from types import SimpleNamespace  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from exchange.policy.routing import RouterCore  # noqa: E402
from exchange.policy.sharing import compile_policy, master_key_of, reconcile  # noqa: E402
from schemas.envelope import Topics, record_headers  # noqa: E402
from schemas.keys import (  # noqa: E402
    normalise_credit_code,
    normalise_key,
    normalise_plate,
    normalise_resident_id,
)

GB_EXAMPLE = "11010519491231002X"  # the worked example of GB 11643-1999


@pytest.mark.parametrize(
    ("value", "standard"),
    [
        (GB_EXAMPLE, GB_EXAMPLE),
        ("11010519491231002x", GB_EXAMPLE),  # lowercase check character, as many systems store it
        ("110105491231002", GB_EXAMPLE),  # the 15-digit first-generation form, upgraded to 18
        (" 110105 19491231 002X ", GB_EXAMPLE),  # spaces from a spreadsheet
        ("１１０１０５１９４９１２３１００２ｘ", GB_EXAMPLE),  # full-width from a form
        ("110105-19491231-002X", GB_EXAMPLE),
        ("440524188001010014", "440524188001010014"),  # born 1880: old, but a real date and check
    ],
)
def test_resident_ids_normalise_to_gb_11643(value, standard):
    assert normalise_resident_id(value) == standard
    assert normalise_key("resident_id", value) == standard


@pytest.mark.parametrize(
    "value",
    [
        "110105194912310021",  # wrong check character
        "11010519491331002X",  # month 13
        "110105491331002",  # 15-digit with month 13
        "11010519491231002",  # 17 digits
        "1101051949123100X",
        "11010519491231002Y",
        "",
        "unknown",
        "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X",  # Arabic-Indic digits are not ID digits
    ],
)
def test_resident_ids_that_fit_no_standard_form(value):
    assert normalise_resident_id(value) is None


@pytest.mark.parametrize(
    ("value", "standard"),
    [
        ("91350100M000100Y43", "91350100M000100Y43"),
        ("91350100m000100y43", "91350100M000100Y43"),
        ("9135 0100 M000 100Y 43", "91350100M000100Y43"),
        ("91420100ma4k0c1g55", "91420100MA4K0C1G55"),
    ],
)
def test_credit_codes_normalise_to_gb_32100(value, standard):
    assert normalise_credit_code(value) == standard


@pytest.mark.parametrize(
    "value",
    [
        "91350100M000100Y44",  # wrong check character
        "91350100M000100Y4",  # 17 characters
        "91350100M000100I43",  # I is not in the alphabet
        "440301000123456",  # a legacy 15-digit registration number: no register to convert it
        "MA4K0C1G5",  # an organisation code alone
    ],
)
def test_credit_codes_that_fit_no_standard_form(value):
    assert normalise_credit_code(value) is None


def test_plates_drop_separators_and_lowercase():
    assert normalise_plate("粤s·12345") == normalise_plate("粤S 12345") == "粤S12345"
    assert normalise_plate("粤SD12345") == "粤SD12345"  # new-energy plates have 6
    assert normalise_plate("粤S1234") is None and normalise_plate("XS12345") is None
    assert normalise_key("text", " as is ") == " as is "


@given(st.integers(0, 999_999).map(lambda n: f"{n:06d}"), st.dates(), st.integers(0, 999))
def test_an_18_digit_id_and_its_spellings_normalise_alike(region, birth, seq):
    from schemas.keys import resident_id_check_digit

    first17 = f"{region}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    value = first17 + resident_id_check_digit(first17)
    standard = normalise_resident_id(value)
    if not 1800 <= birth.year <= 2099:
        assert standard is None
        return
    assert standard == value
    assert normalise_resident_id(value.lower()) == normalise_resident_id(f" {value} ") == value
    if birth.year // 100 == 19:  # the 15-digit form drops the century
        assert normalise_resident_id(value[:6] + value[8:17]) == value


PEOPLE = """
name: people
platform: {id: t3, name: 测试平台, region: "110000", level: provincial}
departments:
  - {id: psb, name: 公安局}
  - {id: civil, name: 民政局}
  - {id: hrss, name: 人社局}
catalogue:
  - id: population
    name: 人口
    provider: psb
    sharing: 无条件共享
    items:
      - {key: person.id, name: 公民身份号码, type: resident_id, mask: none}
      - {key: person.name, name: 姓名, type: person_name, authoritative: true, mask: none}
  - id: assistance
    name: 低保
    provider: civil
    sharing: 无条件共享
    items:
      - {key: person.id, name: 公民身份号码, type: resident_id, mask: none}
      - {key: person.name, name: 姓名, type: person_name, mask: none}
      - {key: assistance.amount, name: 金额, type: decimal}
subscriptions:
  - {consumer: hrss, entry: assistance}
  - {consumer: hrss, entry: population}
"""


def test_reconcile_matches_keys_by_their_standard_form():
    scenario = parse(PEOPLE, "people.yaml")
    policy = compile_policy(scenario, Topics("t3"))["assistance"]
    known = {"person.name": "张三"}
    for spelling in (GB_EXAMPLE, "11010519491231002x", "110105491231002"):
        record = {"person.id": spelling, "person.name": "张三", "assistance.amount": 1.5}
        assert master_key_of(policy, record) == GB_EXAMPLE
        r = reconcile(policy, record, known)
        assert r.verified == ("person.name",) and not r.unverified and not r.invalid_key
        assert r.record["person.id"] == GB_EXAMPLE  # delivered in its standard form
    bad = {"person.id": "110105194912310021", "person.name": "张三", "assistance.amount": 1.5}
    assert master_key_of(policy, bad) is None
    r = reconcile(policy, bad, None)
    assert r.invalid_key == ("person.name",) and not r.unverified and not r.verified
    assert "person.name" not in r.record and r.record["assistance.amount"] == 1.5  # a copy never passes as truth


def _fetched(topics, entry, source, i, record):
    return SimpleNamespace(
        topic=topics.ingress(entry),
        partition=0,
        offset=i,
        key=record["person.id"].encode(),
        value=orjson.dumps(record),
        headers=record_headers(b"1.%d" % i, entry, source, 1, 1, "r"),
    )


def test_router_core_counts_each_outcome_under_its_own_name():
    scenario = parse(PEOPLE, "people.yaml")
    topics = Topics("t3")
    core = RouterCore(compile_policy(scenario, topics), topics, "0")
    store: dict = {}
    # the source stores its value under the standard form, whatever spelling it used
    core.route(
        [_fetched(topics, "population", "psb", 0, {"person.id": "11010519491231002x", "person.name": "张三"})],
        authority=store,
        now=1_700_000_000_000_000_000,
    )
    assert set(store) == {GB_EXAMPLE}
    copies = [
        {"person.id": "11010519491231002x", "person.name": "张三"},  # verified
        {"person.id": "110105491231002", "person.name": "张三"},  # verified (15-digit legacy form)
        {"person.id": "110105491231002", "person.name": "张叁"},  # conflict
        {"person.id": "110101199003070038", "person.name": "李四"},  # valid, no source value: unverified
        {"person.id": "110105194912310021", "person.name": "王五"},  # wrong check char: invalid_key
        {"person.id": "N/A", "person.name": "赵六"},  # invalid_key
    ]
    routed = core.route(
        [_fetched(topics, "assistance", "civil", i + 1, {**c, "assistance.amount": 1.0}) for i, c in enumerate(copies)],
        authority=store,
        now=1_700_000_000_000_000_000,
    )
    assert dict(routed.verifications) == {
        ("person.name", "civil", "verified"): 2,
        ("person.name", "civil", "conflict"): 1,
        ("person.name", "civil", "unverified"): 1,
        ("person.name", "civil", "invalid_key"): 2,
    }
    # a source record with a key that fits no standard stores nothing and says so
    routed = core.route(
        [_fetched(topics, "population", "psb", 9, {"person.id": "N/A", "person.name": "某"})], authority=store, now=1_700_000_000_000_000_000
    )
    assert dict(routed.verifications) == {("person.name", "psb", "invalid_key"): 1} and set(store) == {GB_EXAMPLE}


def test_results_report_invalid_keys_next_to_the_other_outcomes():
    from collections import Counter

    from exchange.results.build import _one_number_one_source
    from schemas.status import VerificationCount

    verifications = VerificationCount.rows(
        Counter({("person.name", "civil", "verified"): 2, ("person.name", "civil", "invalid_key"): 3, ("person.name", "civil", "unverified"): 1})
    )
    v = _one_number_one_source(verifications, [])["person.name"]
    assert (v.verified, v.unverified, v.invalid_key) == (2, 1, 3)
    assert v.verification_rate == 1.0  # of what could be matched
    assert v.by_department == {"civil:invalid_key": 3, "civil:unverified": 1, "civil:verified": 2}
