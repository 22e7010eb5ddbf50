"""Tests for producers.identity: check-digit algorithms, validity of generated
values, masking helpers, jurisdiction rule and determinism."""

from __future__ import annotations

import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers import identity as idn
from producers.identity import (
    DONGGUAN_TOWNS,
    REGIONS,
    address,
    chinese_name,
    credit_code,
    credit_code_check_char,
    date_between,
    district_prefix,
    gps_fix,
    is_valid_credit_code,
    is_valid_resident_id,
    mobile_phone,
    plate_number,
    region_contains,
    resident_id,
    resident_id_check_digit,
    surname_of,
)
from schemas import regions as division_table

ID_CHARS = "0123456789X"
CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

seeds = st.integers(min_value=0, max_value=2**64)
# every level of the table; sampled so each test stays fast (the table has 41,935 rows)
_SAMPLE = [*sorted(REGIONS)[::97], "000000", "441900", "441900129", "440305001", "110101", "429004"]
regions = st.sampled_from([REGIONS[c] for c in _SAMPLE])


# --- published examples ------------------------------------------------------


def test_gb11643_standard_example():
    # The worked example in GB 11643-1999 itself (北京市朝阳区, born 1949-12-31).
    assert resident_id_check_digit("11010519491231002") == "X"
    assert is_valid_resident_id("11010519491231002X")
    assert not is_valid_resident_id("11010519491231002x")  # upper-case X only
    assert not is_valid_resident_id("110105194912310021")


def test_shantou_textbook_example():
    # 440524188001010014 (广东省汕头市, born 1880-01-01) is quoted next to the
    # GB example in many explanations of the algorithm.  Its check digit is
    # right, but the birth year is outside the accepted 1900..2025 window.
    assert resident_id_check_digit("44052418800101001") == "4"
    assert not is_valid_resident_id("440524188001010014")


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",  # example in Hutool's CreditCodeUtil tests, widely cited
        "91110000600037341L",  # doctest of python-stdnum's stdnum/cn/uscc.py
    ],
)
def test_published_credit_codes(code):
    assert credit_code_check_char(code[:17]) == code[17]
    assert is_valid_credit_code(code)
    # Both also carry a correct GB 11714 organisation-code check at position 17.
    assert idn._org_code_check(code[8:16]) == code[16]


def test_check_functions_reject_bad_input():
    for bad in ("1101051949123100", "1101051949123100A", "１１０１０５１９４９１２３１００２"):
        with pytest.raises(ValueError):
            resident_id_check_digit(bad)
    for bad in ("91350100M000100Y", "91350100M000100YI"):
        with pytest.raises(ValueError):
            credit_code_check_char(bad)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "11010519491231002",
        "11010519491231002XX",
        "1101051949123100AX",
        "110105194902300025",  # 30 Feb
        "110105189912310020",
    ],  # year 1899
)
def test_invalid_resident_ids(value):
    assert not is_valid_resident_id(value)


@pytest.mark.parametrize(
    "value", ["", "91350100M000100Y4", "91350100M000100Y433", "91350100M000100Y4I", "9135A100M000100Y43", "91350100m000100y43", "91350100M000100Y44"]
)
def test_invalid_credit_codes(value):
    assert not is_valid_credit_code(value)


# --- generated values are valid; single substitutions are detected ------------


@given(seeds, regions)
def test_generated_resident_ids_valid(seed, region):
    rng = random.Random(seed)
    value = resident_id(rng, region.code)
    assert is_valid_resident_id(value)
    assert value.startswith(region.code[:6])
    birth = datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    assert datetime.date(1940, 1, 1) <= birth <= datetime.date(2007, 12, 31)


def test_resident_id_with_given_birth():
    value = resident_id(random.Random(1), "441900003", datetime.date(1988, 2, 29))
    assert value[:14] == "44190019880229" and is_valid_resident_id(value)
    with pytest.raises(ValueError):
        resident_id(random.Random(1), "4419")


@given(seeds, regions)
def test_generated_credit_codes_valid(seed, region):
    value = credit_code(random.Random(seed), region.code)
    assert is_valid_credit_code(value)
    assert value[:8] == "91" + region.code[:6]
    assert idn._org_code_check(value[8:16]) == value[16]


@pytest.mark.parametrize(
    ("generate", "alphabet", "is_valid"),
    [
        pytest.param(resident_id, ID_CHARS, is_valid_resident_id, id="resident_id"),
        pytest.param(credit_code, CC_ALPHABET, is_valid_credit_code, id="credit_code"),
    ],
)
@given(seed=seeds, pos=st.integers(0, 17), data=st.data())
def test_single_substitution_detected(generate, alphabet, is_valid, seed, pos, data):
    value = generate(random.Random(seed), "441900")
    ch = data.draw(st.sampled_from(alphabet), label="substitute")
    if value[pos] == ch:
        return
    assert not is_valid(value[:pos] + ch + value[pos + 1 :])


def test_all_single_substitutions_detected_exhaustively():
    for value, alphabet, valid in (("11010519491231002X", ID_CHARS, is_valid_resident_id), ("91350100M000100Y43", CC_ALPHABET, is_valid_credit_code)):
        for pos in range(18):
            for ch in alphabet:
                if ch != value[pos]:
                    assert not valid(value[:pos] + ch + value[pos + 1 :]), (value, pos, ch)


# --- names, phones, plates ---------------------------------------------------


@pytest.mark.parametrize(
    "name, surname",
    [("张三", "张"), ("王小明", "王"), ("欧阳娜娜", "欧阳"), ("司马光", "司马"), ("诸葛亮", "诸葛"), ("欧阳", "欧阳"), ("李", "李"), ("", "")],
)
def test_surname_of(name, surname):
    assert surname_of(name) == surname


@given(seeds)
def test_chinese_name_shape(seed):
    name = chinese_name(random.Random(seed))
    surname = surname_of(name)
    assert 1 <= len(name) - len(surname) <= 2
    assert name[len(surname) :] and all(c in idn._GIVEN for c in name[len(surname) :])


def test_compound_surnames_occur_but_rarely():
    rng = random.Random(7)
    names = [chinese_name(rng) for _ in range(20000)]
    compound = sum(len(surname_of(n)) == 2 for n in names)
    assert 0 < compound < 400


@given(seeds)
def test_mobile_phone_format(seed):
    phone = mobile_phone(random.Random(seed))
    assert len(phone) == 11 and phone.isdigit() and phone[0] == "1"
    assert phone[:3] in idn._MOBILE_PREFIXES


def test_mobile_prefixes_realistic():
    assert {"130", "139", "150", "153", "155", "159", "166", "170", "178", "180", "189", "198", "199"} <= set(idn._MOBILE_PREFIXES)
    assert not {"140", "154", "179", "190", "120"} & set(idn._MOBILE_PREFIXES)


@given(seeds)
def test_plate_number(seed):
    rng = random.Random(seed)
    plate = plate_number(rng)
    assert plate.startswith("粤S") and len(plate) == 7
    assert all(c.isascii() and c.isalnum() and c not in "IO" for c in plate[2:])
    assert plate_number(rng, prefix="鄂A").startswith("鄂A")


# --- regions and addresses ---------------------------------------------------
# The table is the Ministry of Civil Affairs' (schemas/regions.py); the expected codes
# and names below are checked by hand against it and against the issue that reported them.


def test_dongguan_towns_are_the_real_ones():
    assert len(DONGGUAN_TOWNS) == 32
    by_code = {t.code: t.name for t in DONGGUAN_TOWNS}
    assert by_code["441900129"] == "高埗镇"  # was refused as "does not exist"
    assert by_code["441900121"] == "虎门镇" and by_code["441900122"] == "厚街镇"  # 121 was called 厚街镇
    assert by_code["441900003"] == "东城街道" and by_code["441900006"] == "莞城街道"
    assert "441900120" not in by_code  # there is no town 120
    names = set(by_code.values())
    assert sum(n.endswith("镇") for n in names) == 28 and sum(n.endswith("街道") for n in names) == 4
    for t in DONGGUAN_TOWNS:
        assert (t.province, t.city, t.county, t.district) == ("广东省", "东莞市", "", t.name)
        assert REGIONS[t.code] is t and t.parent == "441900" and t.level == 4


def test_every_level_of_the_table():
    expected = {
        "420100": "武汉市",
        "420102": "江岸区",
        "420106": "武昌区",
        "420111": "洪山区",
        "520100": "贵阳市",
        "520102": "南明区",
        "520103": "云岩区",
        "440300": "深圳市",
        "440303": "罗湖区",
        "440304": "福田区",
        "440305": "南山区",
        "441900": "东莞市",
        "441322": "博罗县",
        "440305001": "南头街道",
        "110101": "东城区",
        "429004": "仙桃市",
        "810000": "香港特别行政区",
    }
    for code, name in expected.items():
        assert REGIONS[code].name == name and REGIONS[code].code == code
    assert REGIONS["441322"].full_name == "广东省惠州市博罗县"
    assert REGIONS["440305001"].full_name == "广东省深圳市南山区南头街道"
    assert REGIONS["110101"].full_name == "北京市东城区"  # a municipality has no city level
    assert REGIONS["429004"].full_name == "湖北省仙桃市"  # a county-level city under the province
    counts = {lv: sum(1 for r in REGIONS.values() if r.level == lv) for lv in (1, 2, 3, 4)}
    assert counts == {1: 33, 2: 333, 3: 2845, 4: 38723}
    for code in ("520190", "441900401", "110100", "441900130", "710000"):
        assert code not in REGIONS and not division_table.exists(code)


@pytest.mark.parametrize(("code", "first"), [("441900130", "441900129"), ("441323", "441323"), ("441329", "441324"), ("110100", "110101")])
def test_nearest_real_neighbours(code, first):
    near = division_table.nearest(code)
    assert near and near[0].code == first and all(division_table.exists(r.code) for r in near)
    assert len({r.code for r in near}) == len(near) <= 3


@pytest.mark.parametrize(("code", "size"), [("441322", 16), ("440305", 8), ("440305001", 1), ("441900", 32), ("440000", 1610)])
def test_regions_of_are_the_townships_inside(code, size):
    from producers.records import regions_of

    inside = regions_of(code)
    assert len(inside) == size and all(region_contains(code, r.code) for r in inside)
    assert all(not division_table.children(r.code) for r in inside)


def test_regions_of_a_code_that_does_not_exist_names_the_nearest():
    from producers.records import regions_of

    with pytest.raises(ValueError, match=r"441900130 is not in the division table.*441900129 广东省东莞市高埗镇"):
        regions_of("441900130")


@pytest.mark.parametrize(
    "parent, child, expected",
    [
        ("440000", "440000", True),
        ("440000", "441900", True),
        ("440000", "441900003", True),
        ("440000", "440305", True),
        ("440000", "420100", False),
        ("441900", "441900", True),
        ("441900", "441900003", True),
        ("441900", "440300", False),
        ("441900", "440000", False),
        ("420100", "420102", True),
        ("420100", "420102001", True),
        ("420102", "420102", True),
        ("420102", "420102001", True),
        ("420102", "420106", False),
        ("420102", "420100", False),
        ("441900003", "441900003", True),
        ("441900003", "441900004", False),
        ("441900003", "441900", False),
        ("520100", "441900003", False),
        ("441900", "4419", False),
        ("441900", "44190000x", False),
        ("000000", "441900003", True),
    ],
)
def test_region_contains(parent, child, expected):
    assert region_contains(parent, child) is expected


def test_region_contains_every_preset_town():
    for t in DONGGUAN_TOWNS:
        assert region_contains("441900", t.code) and region_contains("440000", t.code)
        assert not region_contains("440300", t.code)


@given(seeds, regions)
def test_address_within_region_and_prefix(seed, region):
    addr = address(random.Random(seed), region)
    prefix = district_prefix(addr)
    # the prefix is the full name of a division inside the region, at county level at most
    leaf = next(r for r in division_table.leaves(region.code) if addr.startswith(r.full_name))
    assert region_contains(region.code, leaf.code)
    assert leaf.full_name.startswith(prefix) and prefix.startswith(leaf.province)
    rest = addr[len(leaf.full_name) :]
    assert rest.endswith("号")
    assert any(rest.startswith(road) and rest[len(road) : -1].isdigit() for road in idn._ROADS)


@given(seeds, st.sampled_from(DONGGUAN_TOWNS))
def test_dongguan_address_prefix_exact(seed, town):
    addr = address(random.Random(seed), town)
    assert addr.startswith("广东省东莞市" + town.name)
    assert district_prefix(addr) == "广东省东莞市" + town.name


def test_road_names_have_no_level_markers():
    for road in idn._ROADS:
        assert not any(m in road for m in ("省", "市", "区", "县", "镇", "乡", "街道", "自治", "盟"))


@pytest.mark.parametrize(
    "addr, prefix",
    [
        ("广东省东莞市南城街道鸿福路123号", "广东省东莞市南城街道"),
        ("广东省东莞市松山湖功能区科技大道1号", "广东省东莞市"),  # not a division
        ("湖北省武汉市江岸区解放大道8号", "湖北省武汉市江岸区"),
        ("浙江省杭州市西湖区文三路5号", "浙江省杭州市西湖区"),
        ("北京市朝阳区建国路1号", "北京市朝阳区"),
        ("广西壮族自治区南宁市青秀区民族大道1号", "广西壮族自治区南宁市青秀区"),
        ("吉林省延边朝鲜族自治州延吉市光明街2号", "吉林省延边朝鲜族自治州延吉市"),
        ("广东省深圳市南山区南头街道中山路1号", "广东省深圳市南山区"),  # towns under a county: cut
        ("深圳市南山区科技园", "深圳市南山区"),  # no province: a city known once nationwide
        ("广东省东莞市", "广东省东莞市"),
        ("某路1号", ""),
        ("朝阳区建国路1号", ""),  # a county name alone is ambiguous (北京, 长春, …)
    ],
)
def test_district_prefix_examples(addr, prefix):
    assert district_prefix(addr) == prefix


@given(seeds, regions)
def test_gps_fix(seed, region):
    lat, lon = gps_fix(random.Random(seed), region)
    if region.code.startswith("4419"):
        assert 22.65 <= lat <= 23.15 and 113.50 <= lon <= 114.25
    else:
        assert 18.0 <= lat <= 54.0 and 73.0 <= lon <= 135.0


@given(seeds, st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 1, 1)), st.integers(0, 20000))
def test_date_between(seed, start, span):
    end = start + datetime.timedelta(days=span)
    d = date_between(random.Random(seed), start, end)
    assert start <= d <= end


def test_date_between_rejects_reversed_range():
    with pytest.raises(ValueError):
        date_between(random.Random(0), datetime.date(2024, 1, 2), datetime.date(2024, 1, 1))


# --- determinism -------------------------------------------------------------


def _sequence(seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for region in [REGIONS[c] for c in _SAMPLE[::8]]:
        out += [
            resident_id(rng, region.code),
            credit_code(rng, region.code),
            chinese_name(rng),
            mobile_phone(rng),
            address(rng, region),
            plate_number(rng),
            gps_fix(rng, region),
            date_between(rng, datetime.date(2020, 1, 1), datetime.date(2024, 12, 31)),
        ]
    return out


@settings(max_examples=20)
@given(seeds)
def test_same_seed_same_sequence(seed):
    assert _sequence(seed) == _sequence(seed)


def test_different_seeds_differ():
    assert _sequence(1) != _sequence(2)


# --- any region of China: validates, generates, filters (issue 14, items 1-3) ---------

COUNTY_HUB = """
name: county-hub
platform: {{id: hub, name: 县级平台, region: "{hub}", level: county}}
departments:
  - {{id: psb, name: 公安局}}
  - {{id: civil, name: 民政局}}
  - {{id: town, name: 镇政府, region: "{town}"}}
catalogue:
  - id: population
    name: 人口
    provider: psb
    sharing: 无条件共享
    items:
      - {{key: person.id, name: 公民身份号码, type: resident_id}}
      - {{key: person.address, name: 住址, type: address}}
      - {{key: person.region, name: 户籍地, type: region_code}}
subscriptions:
  - {{consumer: civil, entry: population}}
  - {{consumer: town, entry: population}}
load:
  producers: [{{department: psb, rate: 10}}]
"""


@pytest.mark.parametrize(
    ("hub", "town"),
    [
        ("441322", "441322103"),  # 博罗县 and its 观音阁镇: validated, then the producer died
        ("440305", "440305001"),  # 南山区 and 南头街道: validated, then the town received nothing
        ("441900", "441900129"),  # 东莞市 and 高埗镇: "does not exist"
        ("500000", "500101"),  # 重庆市 and 万州区 (a municipality's county)
    ],
)
def test_a_hub_anywhere_validates_generates_and_filters_rows(hub, town):
    from exchange.policy.sharing import compile_policy, decide
    from exchange.scenarios.loader import parse
    from producers.records import RecordFactory, entity_pool
    from schemas.envelope import Topics

    scenario = parse(COUNTY_HUB.format(hub=hub, town=town), "hub.yaml")
    pool = entity_pool(scenario, 1)
    factory = RecordFactory(scenario.entries["population"], pool, random.Random(1))
    policy = compile_policy(scenario, Topics("hub"))["population"]
    mine = 0
    for _ in range(400):
        _, record = factory.make()
        assert is_valid_resident_id(record["person.id"]) and region_contains(hub, record["person.region"])
        assert record["person.region"][:6] == record["person.id"][:6] or len(record["person.region"]) == 6
        assert REGIONS[record["person.region"]].full_name in record["person.address"]
        delivered = {o.route.consumer for o in decide(policy, "psb", record) if o.delivered}
        inside = region_contains(town, record["person.region"])
        assert delivered == ({"civil", "town"} if inside else {"civil"})
        mine += inside
    assert mine > 0  # the town gets its own rows, and only those


@pytest.mark.parametrize(
    ("where", "code", "nearest"),
    [
        ("platform", "441900130", "441900129 广东省东莞市高埗镇"),
        ("town", "441900401", "441900129 广东省东莞市高埗镇"),  # 松山湖: a statistical code, not a division
        ("platform", "520190", "520181 贵州省贵阳市清镇市"),
    ],
)
def test_a_code_that_does_not_exist_is_refused_with_its_nearest_neighbours(where, code, nearest):
    from exchange.scenarios.loader import ScenarioError, parse

    hub, town = ("441900", code) if where == "town" else (code, "441900129")
    with pytest.raises(ScenarioError) as e:
        parse(COUNTY_HUB.format(hub=hub, town=town), "hub.yaml")
    text = str(e.value)
    assert f"region code {code} does not exist (nearest: " in text and nearest in text


def test_records_come_from_every_jurisdiction_level_by_level():
    """Each listed region equally likely, then each city, county, town: a small county
    (花溪区, 16 of Guizhou's ~1,500 townships) still gets its share of rows."""
    from collections import Counter

    from producers.records import EntityPool, region_of

    pool = EntityPool(1, [region_of("520000")], people=3000, enterprises=10, vehicles=10)
    cities = Counter(REGIONS[p.region].parent[:4] for p in pool.people)
    assert set(cities) == {c[:4] for c in division_table.children("520000")}  # all nine 市州
    assert min(cities.values()) > 3000 / 9 / 2
    pool = EntityPool(1, [region_of("520100"), region_of("520111")], people=2000, enterprises=10, vehicles=10)
    huaxi = sum(p.region.startswith("520111") for p in pool.people)
    assert 2000 * 0.5 < huaxi < 2000 * 0.65  # half from the listed 花溪区, a tenth or so of the rest
