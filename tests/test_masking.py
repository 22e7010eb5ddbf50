"""Tests for exchange.policy.masking: 数据脱敏 of names, ID numbers, phones and addresses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.policy.masking import MASKERS, apply_mask, mask_address, mask_id_number, mask_name, mask_phone, redact
from producers.identity import DONGGUAN_TOWNS, REGIONS, address, chinese_name, district_prefix, mobile_phone, resident_id, surname_of
from schemas.scenario import MaskRule

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
REGION_CODES = sorted(REGIONS)


# --- names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"), [("张三", "张*"), ("王小明", "王**"), ("欧阳娜娜", "欧阳**"), ("司马光", "司马*"), ("张", "张*"), ("欧阳", "欧阳*")]
)
def test_mask_name_keeps_only_the_surname(name: str, masked: str) -> None:
    assert mask_name(name) == masked


# --- ID numbers ---------------------------------------------------------------


def test_mask_id_number_keeps_first_six_and_last_four() -> None:
    value = "44190019900307123X"
    masked = mask_id_number(value)
    assert masked == "441900********123X"
    assert len(masked) == len(value)


@pytest.mark.parametrize("value", ["", "1", "1234567890"])
def test_mask_id_number_short_values_are_fully_starred(value: str) -> None:
    assert mask_id_number(value) == "*" * len(value)


def test_mask_id_number_preserves_length_of_a_15_digit_legacy_id() -> None:
    value = "441900900307123"
    assert mask_id_number(value) == "441900*****7123"


# --- phones -------------------------------------------------------------------


def test_mask_phone_keeps_three_and_four() -> None:
    assert mask_phone("13812345678") == "138****5678"


@pytest.mark.parametrize("value", ["", "110", "1234567"])
def test_mask_phone_short_values_are_fully_starred(value: str) -> None:
    assert mask_phone(value) == "*" * len(value)


# --- addresses ----------------------------------------------------------------
# The mask is defined by what it keeps: the province, city and county-level division the
# national division table recognises at the start, then '***'. Nothing else survives.


def test_mask_address_examples() -> None:
    assert mask_address("广东省东莞市南城街道鸿福路123号") == "广东省东莞市南城街道***"
    assert mask_address("湖北省武汉市武昌区中山路8号") == "湖北省武汉市武昌区***"
    # nothing recognisable to cut back to: hide it all, its length too
    assert mask_address("鸿福路123号") == "***"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        # issue 13, item 5: the old mask cut at the first 市/区/镇 anywhere, inside 小区, 市场, …
        ("广东省东莞市南城鸿福路88号金色华庭小区5栋", "广东省东莞市***"),  # '南城' is not a division's name
        ("鸿福路88号旁农贸市场2号档", "***"),
        ("广东省东莞市南城街道鸿福路88号金色华庭小区5栋", "广东省东莞市南城街道***"),
        ("湖北省武汉市武昌区中南路99号华润万家超市A区3号", "湖北省武汉市武昌区***"),
        ("城市花园A区3栋201", "***"),
        ("广东省深圳市南山区南头街道深南大道1号", "广东省深圳市南山区***"),  # a township under a county: cut
        ("北京市朝阳区建国路1号", "北京市朝阳区***"),
        ("深圳市南山区科技园", "深圳市南山区***"),
        ("广东省惠州市博罗县罗阳街道", "广东省惠州市博罗县***"),
        ("", "***"),
    ],
)
def test_mask_address_keeps_only_the_divisions_at_the_start(value: str, masked: str) -> None:
    assert mask_address(value) == masked


_TOWN_CODES = [*[c for c in REGION_CODES if len(c) == 9][::50], "441900129", "440305001"]


# what people write after the division names: anything, and especially the words the old mask
# cut at (小区, 市场, 超市, A区, …) and more division names
_TOKENS = [
    "小区",
    "市场",
    "超市",
    "城市",
    "A区",
    "镇",
    "乡",
    "街道",
    "区",
    "市",
    "省",
    "县",
    "号",
    "栋",
    "南山区",
    "东城区",
    "长安镇",
    "广东省",
    "东莞市",
    "南城",
    "鸿福路",
    "88",
    "5",
    " ",
    "—",
]
SUFFIXES = st.one_of(
    st.text(min_size=1, max_size=40), st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=3)), min_size=1, max_size=12).map("".join)
)


@settings(max_examples=800, deadline=None)
@given(code=st.sampled_from(_TOWN_CODES), suffix=SUFFIXES)
def test_masked_address_keeps_nothing_of_an_arbitrary_suffix(code: str, suffix: str) -> None:
    """Any address shape: a real division's full name, then anything at all."""
    town = REGIONS[code]
    value = town.full_name + suffix
    masked = mask_address(value)
    assert masked.endswith("***")
    kept = masked[: -len("***")]
    # what is kept is a leading run of the town's own divisions, at most down to the county
    # (for a city without counties, the town) and never a character of the suffix
    allowed = {town.province, town.province + town.city, town.province + town.city + town.district}
    assert kept in allowed or kept == ""
    assert value.startswith(kept) and len(kept) <= len(town.full_name)


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=60))
def test_masked_arbitrary_text_is_a_known_division_or_nothing(value: str) -> None:
    masked = mask_address(value)
    kept = masked[: -len("***")]
    assert masked.endswith("***") and value.startswith(kept)
    assert kept == district_prefix(value)
    assert kept == "" or any(kept.endswith(REGIONS[c].name) for c in REGION_CODES_BY_NAME.get(kept, ()))


REGION_CODES_BY_NAME: dict[str, list[str]] = {}
for _c in REGION_CODES:
    _r = REGIONS[_c]
    if _r.level <= 3 or not _r.county:
        REGION_CODES_BY_NAME.setdefault(_r.full_name, []).append(_c)
        if _r.province != _r.full_name:
            REGION_CODES_BY_NAME.setdefault(_r.full_name[len(_r.province) :], []).append(_c)


@pytest.mark.parametrize("code", ["441900", "441900129", "440305", "441322", "110101", "429004", "000000"])
def test_mask_address_cuts_generated_addresses_to_district(code: str) -> None:
    rng = random.Random(code)
    for _ in range(50):
        value = address(rng, REGIONS[code])
        masked = mask_address(value)
        assert masked == district_prefix(value) + "***"
        assert value.startswith(masked[:-3]) and masked[:-3] != value
        assert "号" not in masked and not any(ch.isdigit() for ch in masked)


def test_mask_address_of_a_town_ends_at_the_town() -> None:
    town = next(t for t in DONGGUAN_TOWNS if t.name == "长安镇")
    assert mask_address(address(random.Random(1), town)) == "广东省东莞市长安镇***"


# --- apply_mask ---------------------------------------------------------------


@pytest.mark.parametrize("rule", [MaskRule.name, MaskRule.id_number, MaskRule.phone, MaskRule.address, MaskRule.redact])
@pytest.mark.parametrize("value", [13812345678, 3.5, True, ["张三"], {"a": 1}])
def test_apply_mask_redacts_non_strings_whole(rule: MaskRule, value: object) -> None:
    assert apply_mask(rule, value) == "***"


@pytest.mark.parametrize("rule", list(MaskRule))
def test_apply_mask_passes_none_through(rule: MaskRule) -> None:
    assert apply_mask(rule, None) is None


@pytest.mark.parametrize("value", ["张三", "13812345678", 42, 1.5, {"x": 1}])
def test_apply_mask_rule_none_passes_through(value: object) -> None:
    assert apply_mask(MaskRule.none, value) is value


def test_apply_mask_dispatches_each_rule() -> None:
    assert apply_mask(MaskRule.name, "欧阳娜娜") == "欧阳**"
    assert apply_mask(MaskRule.id_number, "44190019900307123X") == "441900********123X"
    assert apply_mask(MaskRule.phone, "13812345678") == "138****5678"
    assert apply_mask(MaskRule.address, "广东省东莞市南城街道鸿福路123号") == "广东省东莞市南城街道***"
    assert apply_mask(MaskRule.redact, "anything at all") == "***"
    assert redact("x") == "***"


def test_every_concrete_rule_has_a_masker() -> None:
    assert set(MASKERS) == set(MaskRule) - {MaskRule.none, MaskRule.auto}


# --- properties over generated values -------------------------------------------


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS, code=st.sampled_from(REGION_CODES[::41]))
def test_masked_resident_id_never_reveals_the_birth_date(seed: int, code: str) -> None:
    value = resident_id(random.Random(seed), code)
    masked = mask_id_number(value)
    assert masked != value
    assert len(masked) == len(value)
    assert masked[:6] == value[:6] and masked[-4:] == value[-4:]
    assert set(masked[6:14]) == {"*"}
    birth = value[6:14]
    assert birth not in masked
    # nor through apply_mask, the path the router takes
    assert birth not in apply_mask(MaskRule.id_number, value)


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS)
def test_masked_phone_never_reveals_the_middle_digits(seed: int) -> None:
    value = mobile_phone(random.Random(seed))
    masked = mask_phone(value)
    assert masked != value
    assert len(masked) == len(value)
    # positions 3..6 are hidden; the rest is exactly what the rule keeps
    assert masked == value[:3] + "****" + value[-4:]
    assert not any(ch.isdigit() for ch in masked[3:7])


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS)
def test_masked_name_never_reveals_the_given_name(seed: int) -> None:
    value = chinese_name(random.Random(seed))
    masked = mask_name(value)
    surname = surname_of(value)
    assert masked != value
    assert masked.startswith(surname)
    assert set(masked[len(surname) :]) == {"*"}
    assert len(masked) == len(value)
    given_name = value[len(surname) :]
    assert given_name not in masked[len(surname) :]
