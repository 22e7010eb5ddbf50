"""Synthetic but *valid* Chinese identity values for department producers.

Exchange platforms (政务数据共享交换平台) match records across departments on
master keys ("一数一源": one number, one authoritative source) and mask them
before sharing.  Matching, deduplication and masking are only exercised
meaningfully if the keys look real: resident ID numbers with correct MOD 11-2
check digits and embedded birth dates, unified social credit codes with MOD 31
check characters, names whose surname can be kept while the given name is
masked, and addresses that can be cut back to district level.

Every generator takes a ``random.Random`` so a run is reproducible from its
seed.  No I/O besides the division table (schemas/regions.py, read once); constant
tables are built once at import because producers call these at ~100k values/s.
"""

from __future__ import annotations

import datetime
import random

from schemas import regions as _regions
from schemas.keys import CC_ALPHABET as _CC_ALPHABET
from schemas.keys import ID_CHECK as _ID_CHECK
from schemas.keys import ID_WEIGHTS as _ID_WEIGHTS
from schemas.keys import cc_check as _cc_check
from schemas.keys import (  # the standards' rules live with the matching that uses them
    credit_code_check_char,
    is_ascii_digits,
    is_valid_credit_code,
    is_valid_resident_id,
    resident_id_check_digit,
)
from schemas.keys import weighted as _weighted
from schemas.names import COMPOUND_SURNAMES, surname_of  # re-exported
from schemas.names import SURNAME_TABLE as _SURNAME_TABLE
from schemas.regions import Region

__all__ = [  # DONGGUAN_TOWNS and REGIONS come from __getattr__ below
    "COMPOUND_SURNAMES",
    "DONGGUAN_TOWNS",  # noqa: F822
    "REGIONS",  # noqa: F822
    "Region",
    "credit_code_check_char",
    "date_between",
    "district_prefix",
    "gps_fix",
    "is_valid_credit_code",
    "is_valid_resident_id",
    "mobile_phone",
    "plate_number",
    "NATIONAL",
    "jurisdiction_prefix",
    "region_contains",
    "region_exists",
    "resident_id",
    "resident_id_check_digit",
    "surname_of",
    "address",
    "chinese_name",
    "credit_code",
]

_DIGITS = frozenset("0123456789")

# --- Resident identity number (GB 11643-1999, ISO 7064 MOD 11-2) ------------


def _birth_table(first: datetime.date, last: datetime.date) -> tuple[tuple[str, int], ...]:
    ys = {y: (f"{y:04d}", _weighted(f"{y:04d}", _ID_WEIGHTS[6:10])) for y in range(first.year, last.year + 1)}
    md = {n: (f"{n:02d}", _weighted(f"{n:02d}", _ID_WEIGHTS[10:12]), _weighted(f"{n:02d}", _ID_WEIGHTS[12:14])) for n in range(1, 32)}
    rows = []
    for o in range(first.toordinal(), last.toordinal() + 1):
        d = datetime.date.fromordinal(o)
        (y, ysum), (m, msum, _), (dd, _, dsum) = ys[d.year], md[d.month], md[d.day]
        rows.append((y + m + dd, ysum + msum + dsum))
    return tuple(rows)


# Precomputed (text, partial weighted sum) for every default birth date and
# sequence number: resident_id() then costs two table look-ups and an add.
_BIRTHS = _birth_table(datetime.date(1940, 1, 1), datetime.date(2007, 12, 31))
_SEQS = tuple((f"{i:03d}", _weighted(f"{i:03d}", _ID_WEIGHTS[14:])) for i in range(1000))
_REGION_SUMS: dict[str, int] = {}


def resident_id(rng: random.Random, region_code: str, birth: datetime.date | None = None) -> str:
    """Valid 18-digit ID: 6-digit region + YYYYMMDD + 3-digit sequence + check.

    A 9-digit township code is truncated to its county (IDs carry 6 digits).
    """
    region_sum = _REGION_SUMS.get(region_code)
    if region_sum is None:
        if len(region_code) not in (6, 9) or not is_ascii_digits(region_code):
            raise ValueError(f"region code must be 6 or 9 digits, got {region_code!r}")
        region_sum = _REGION_SUMS[region_code] = _weighted(region_code[:6], _ID_WEIGHTS[:6])
    if birth is None:
        birth_s, birth_sum = _BIRTHS[rng.randrange(len(_BIRTHS))]
    else:
        birth_s = f"{birth.year:04d}{birth.month:02d}{birth.day:02d}"
        birth_sum = _weighted(birth_s, _ID_WEIGHTS[6:14])
    seq_s, seq_sum = _SEQS[rng.randrange(1000)]
    return f"{region_code[:6]}{birth_s}{seq_s}{_ID_CHECK[(region_sum + birth_sum + seq_sum) % 11]}"


# --- Unified social credit code (GB 32100-2015, MOD 31) ----------------------

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code


def _org_code_check(body8: str) -> str:
    """GB 11714 check char of the organisation code embedded at positions 9-17."""
    c = 11 - sum(w * (int(ch) if ch in _DIGITS else ord(ch) - 55) for ch, w in zip(body8, _ORG_WEIGHTS, strict=True)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def credit_code(rng: random.Random, region_code: str) -> str:
    """Valid '91' (market-regulation-registered enterprise) credit code.

    The body mimics both post-2015 'MA…' codes and legacy all-digit
    organisation codes and carries its own GB 11714 check character.
    """
    if len(region_code) not in (6, 9) or not is_ascii_digits(region_code):
        raise ValueError(f"region code must be 6 or 9 digits, got {region_code!r}")
    if rng.random() < 0.6:
        body = "MA" + "".join(rng.choices(_CC_ALPHABET, k=6))
    else:
        body = f"{rng.randrange(10**8):08d}"
    first17 = "91" + region_code[:6] + body + _org_code_check(body)
    return first17 + _cc_check(first17)


# --- Names -------------------------------------------------------------------

_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力宇浩然轩涵欣怡"
    "雨晨思博俊嘉瑞婷雪琳晓颖佳鑫鹏飞志海燕凯亮欢波斌宁国庆春兰梅丹玲凤霖睿泽诗子琪瑶龙昊"
)


def chinese_name(rng: random.Random) -> str:
    """Surname (frequency-weighted, rare compounds) + 1-2 given-name characters."""
    surname = rng.choice(_SURNAME_TABLE)
    if rng.random() < 0.3:
        return surname + rng.choice(_GIVEN)
    return surname + rng.choice(_GIVEN) + rng.choice(_GIVEN)


# --- Phones, plates, coordinates, dates --------------------------------------

_MOBILE_PREFIXES = tuple(
    [str(p) for p in range(130, 140)]
    + ["150", "151", "152", "153"]
    + [str(p) for p in range(155, 160)]
    + ["166"]
    + [str(p) for p in range(170, 179)]
    + [str(p) for p in range(180, 190)]
    + ["198", "199"]
)
_PLATE_CHARS = "0123456789" * 3 + "ABCDEFGHJKLMNPQRSTUVWXYZ"  # digit-heavy, no I/O


def mobile_phone(rng: random.Random) -> str:
    """11-digit mainland mobile number with a real carrier prefix."""
    return f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def plate_number(rng: random.Random, prefix: str = "粤S") -> str:
    """Licence plate: province char + city letter (粤S = Dongguan) + 5 alnum."""
    return prefix + "".join(rng.choices(_PLATE_CHARS, k=5))


_DONGGUAN_BBOX = (22.65, 23.15, 113.50, 114.25)
_CHINA_BBOX = (22.0, 41.0, 100.0, 121.0)  # populated eastern/central China


def gps_fix(rng: random.Random, region: Region) -> tuple[float, float]:
    """(lat, lon) inside Dongguan for 4419* regions, else a generic China box."""
    lat0, lat1, lon0, lon1 = _DONGGUAN_BBOX if region.code.startswith("4419") else _CHINA_BBOX
    return (round(lat0 + rng.random() * (lat1 - lat0), 6), round(lon0 + rng.random() * (lon1 - lon0), 6))


def date_between(rng: random.Random, start: datetime.date, end: datetime.date) -> datetime.date:
    """Uniform date in [start, end], both inclusive."""
    if end < start:
        raise ValueError(f"end {end} precedes start {start}")
    return datetime.date.fromordinal(rng.randint(start.toordinal(), end.toordinal()))


# --- Regions -----------------------------------------------------------------
# The national division table lives in schemas/regions.py (no project imports, so the
# validator and the policy core use the very same table); these are its generator-side names.

NATIONAL = _regions.NATIONAL
jurisdiction_prefix = _regions.jurisdiction_prefix
region_contains = _regions.contains
region_exists = _regions.exists


def __getattr__(name: str):
    # REGIONS (code → Region, every division of the country) and DONGGUAN_TOWNS (its 32
    # towns and streets) are built from the table on first use, not at import.
    if name == "REGIONS":
        return _regions.table().by_code
    if name == "DONGGUAN_TOWNS":
        return tuple(_regions.get(c) for c in _regions.children("441900"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- Addresses ---------------------------------------------------------------

_ROADS = tuple(
    stem + suffix
    for stem in (
        "鸿福 胜和 元美 莞太 新城 人民 解放 中山 建设 和平 文化 新华 光明 迎宾 振兴 "
        "长青 金湖 环城 学院 体育 滨江 工业 科技 创业 育才 花园 银湖 翠竹 朝阳 青年"
    ).split()
    for suffix in ("路", "大道", "街")
)


def address(rng: random.Random, region: Region) -> str:
    """Street address in ``region`` (in one of its townships if it has any).

    Shape: the township's full name as the division table spells it + road + number, e.g.
    广东省东莞市南城街道鸿福路123号 or 广东省深圳市南山区南头街道中山大道8号, so
    ``district_prefix`` finds the province, city and county-level part exactly.
    Raises KeyError for a region the table does not hold.
    """
    leaves = _regions.leaves(region.code)
    leaf = leaves[rng.randrange(len(leaves))] if len(leaves) > 1 else leaves[0]
    return f"{leaf.full_name}{rng.choice(_ROADS)}{rng.randrange(1, 1000)}号"


def district_prefix(address: str) -> str:
    """Leading province + city + county-level part of an address that the division table
    recognises ('' if none); see ``schemas.regions.address_prefix``."""
    return _regions.address_prefix(address)
