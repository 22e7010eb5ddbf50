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
    Region,
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

ID_CHARS = "0123456789X"
CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

seeds = st.integers(min_value=0, max_value=2**64)
regions = st.sampled_from(list(REGIONS.values()))


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
    ["", "11010519491231002", "11010519491231002XX", "1101051949123100AX",
     "110105194902300025",  # 30 Feb
     "110105189912310020"],  # year 1899
)
def test_invalid_resident_ids(value):
    assert not is_valid_resident_id(value)


@pytest.mark.parametrize(
    "value",
    ["", "91350100M000100Y4", "91350100M000100Y433", "91350100M000100Y4I",
     "9135A100M000100Y43", "91350100m000100y43", "91350100M000100Y44"],
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


@given(seeds, st.integers(0, 17), st.sampled_from(ID_CHARS))
def test_resident_id_single_substitution_detected(seed, pos, ch):
    value = resident_id(random.Random(seed), "441900")
    if value[pos] == ch:
        return
    assert not is_valid_resident_id(value[:pos] + ch + value[pos + 1:])


@given(seeds, st.integers(0, 17), st.sampled_from(CC_ALPHABET))
def test_credit_code_single_substitution_detected(seed, pos, ch):
    value = credit_code(random.Random(seed), "441900")
    if value[pos] == ch:
        return
    assert not is_valid_credit_code(value[:pos] + ch + value[pos + 1:])


def test_all_single_substitutions_detected_exhaustively():
    for value, alphabet, valid in (
        ("11010519491231002X", ID_CHARS, is_valid_resident_id),
        ("91350100M000100Y43", CC_ALPHABET, is_valid_credit_code),
    ):
        for pos in range(18):
            for ch in alphabet:
                if ch != value[pos]:
                    assert not valid(value[:pos] + ch + value[pos + 1:]), (value, pos, ch)


# --- names, phones, plates ---------------------------------------------------

@pytest.mark.parametrize(
    "name, surname",
    [("张三", "张"), ("王小明", "王"), ("欧阳娜娜", "欧阳"), ("司马光", "司马"),
     ("诸葛亮", "诸葛"), ("欧阳", "欧阳"), ("李", "李"), ("", "")],
)
def test_surname_of(name, surname):
    assert surname_of(name) == surname


@given(seeds)
def test_chinese_name_shape(seed):
    name = chinese_name(random.Random(seed))
    surname = surname_of(name)
    assert 1 <= len(name) - len(surname) <= 2
    assert name[len(surname):] and all(c in idn._GIVEN for c in name[len(surname):])


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
    assert {"130", "139", "150", "153", "155", "159", "166", "170", "178", "180", "189", "198", "199"} <= set(
        idn._MOBILE_PREFIXES
    )
    assert not {"140", "154", "179", "190", "120"} & set(idn._MOBILE_PREFIXES)


@given(seeds)
def test_plate_number(seed):
    rng = random.Random(seed)
    plate = plate_number(rng)
    assert plate.startswith("粤S") and len(plate) == 7
    assert all(c.isascii() and c.isalnum() and c not in "IO" for c in plate[2:])
    assert plate_number(rng, prefix="鄂A").startswith("鄂A")


# --- regions and addresses ---------------------------------------------------

def test_dongguan_towns():
    assert len(DONGGUAN_TOWNS) == 33
    assert len({t.code for t in DONGGUAN_TOWNS}) == 33 and len({t.name for t in DONGGUAN_TOWNS}) == 33
    names = {t.name for t in DONGGUAN_TOWNS}
    assert {"莞城街道", "南城街道", "东城街道", "万江街道", "樟木头镇", "高埗镇", "望牛墩镇"} <= names
    assert sum(n.endswith("镇") for n in names) == 28 and sum(n.endswith("街道") for n in names) == 4
    assert any(n.startswith("松山湖") for n in names)
    for t in DONGGUAN_TOWNS:
        assert len(t.code) == 9 and t.code.startswith("441900")
        assert (t.province, t.city, t.district) == ("广东省", "东莞市", t.name)
        assert REGIONS[t.code] is t


def test_required_regions_present():
    expected = {
        "420100": "武汉市", "420102": "江岸区", "420106": "武昌区", "420111": "洪山区",
        "520100": "贵阳市", "520102": "南明区", "520103": "云岩区",
        "440300": "深圳市", "440303": "罗湖区", "440304": "福田区", "440305": "南山区",
        "441900": "东莞市",
    }
    for code, name in expected.items():
        assert REGIONS[code].name == name and REGIONS[code].code == code
    assert REGIONS["441900"].province == "广东省" and REGIONS["441900"].city == "东莞市"
    assert REGIONS["520102"].province == "贵州省" and REGIONS["420111"].province == "湖北省"


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
    leaf = next((r for r in REGIONS.values() if r.district and prefix == r.province + r.city + r.district), None)
    if leaf is not None:
        assert region_contains(region.code, leaf.code)
    else:  # a city whose districts are not in the table: its urban area (城区)
        assert addr.startswith(region.province) and "城区" in addr
    rest = addr[addr.index("城区") + 2:] if leaf is None else addr[len(prefix):]
    assert rest.endswith("号")
    assert any(rest.startswith(road) and rest[len(road):-1].isdigit() for road in idn._ROADS)


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
        ("广东省东莞市松山湖功能区科技大道1号", "广东省东莞市松山湖功能区"),
        ("湖北省武汉市江岸区解放大道8号", "湖北省武汉市江岸区"),
        ("浙江省杭州市西湖区文三路5号", "浙江省杭州市西湖区"),
        ("北京市朝阳区建国路1号", "北京市朝阳区"),
        ("广西壮族自治区南宁市青秀区民族大道1号", "广西壮族自治区南宁市青秀区"),
        ("吉林省延边朝鲜族自治州延吉市光明街2号", "吉林省延边朝鲜族自治州延吉市"),
        ("广东省东莞市", "广东省东莞市"),
        ("某路1号", ""),
    ],
)
def test_district_prefix_examples(addr, prefix):
    assert district_prefix(addr) == prefix


def test_address_unknown_region():
    custom = Region("330106", "西湖区", "浙江省", "杭州市", "西湖区")
    addr = address(random.Random(3), custom)
    assert district_prefix(addr) == "浙江省杭州市西湖区"
    # a city whose districts are unknown gets addresses in its urban area (城区)
    assert district_prefix(address(random.Random(3), Region("330100", "杭州市", "浙江省", "杭州市"))) == "浙江省杭州市城区"


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
    for region in list(REGIONS.values()):
        out += [
            resident_id(rng, region.code), credit_code(rng, region.code), chinese_name(rng),
            mobile_phone(rng), address(rng, region), plate_number(rng), gps_fix(rng, region),
            date_between(rng, datetime.date(2020, 1, 1), datetime.date(2024, 12, 31)),
        ]
    return out


@settings(max_examples=20)
@given(seeds)
def test_same_seed_same_sequence(seed):
    assert _sequence(seed) == _sequence(seed)


def test_different_seeds_differ():
    assert _sequence(1) != _sequence(2)
