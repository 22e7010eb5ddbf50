"""Synthetic but *valid* Chinese identity values for department producers.

Exchange platforms (政务数据共享交换平台) match records across departments on
master keys ("一数一源": one number, one authoritative source) and mask them
before sharing.  Matching, deduplication and masking are only exercised
meaningfully if the keys look real: resident ID numbers with correct MOD 11-2
check digits and embedded birth dates, unified social credit codes with MOD 31
check characters, names whose surname can be kept while the given name is
masked, and addresses that can be cut back to district level.

Every generator takes a ``random.Random`` so a run is reproducible from its
seed.  Stdlib only, no I/O; constant tables are built once at import because
producers call these at ~100k values/s.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from functools import lru_cache
from operator import mul

__all__ = [
    "COMPOUND_SURNAMES", "DONGGUAN_TOWNS", "REGIONS", "Region", "address", "chinese_name", "credit_code",
    "credit_code_check_char", "date_between", "district_prefix", "gps_fix",
    "is_valid_credit_code", "is_valid_resident_id", "mobile_phone", "plate_number",
    "region_contains", "resident_id", "resident_id_check_digit", "surname_of",
]

_DIGITS = frozenset("0123456789")

# --- Resident identity number (GB 11643-1999, ISO 7064 MOD 11-2) ------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(map(mul, map(int, digits), weights))


def _birth_table(first: datetime.date, last: datetime.date) -> tuple[tuple[str, int], ...]:
    ys = {y: (f"{y:04d}", _weighted(f"{y:04d}", _ID_WEIGHTS[6:10])) for y in range(first.year, last.year + 1)}
    md = {n: (f"{n:02d}", _weighted(f"{n:02d}", _ID_WEIGHTS[10:12]), _weighted(f"{n:02d}", _ID_WEIGHTS[12:14]))
          for n in range(1, 32)}
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


def _is_digits(s: str) -> bool:
    # str.isdigit() alone accepts non-ASCII digits such as '١'.
    return s.isascii() and s.isdigit()


def resident_id_check_digit(first17: str) -> str:
    """Check character (0-9 or 'X') for the first 17 digits of a resident ID."""
    if len(first17) != 17 or not _is_digits(first17):
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    return _ID_CHECK[_weighted(first17, _ID_WEIGHTS) % 11]


def is_valid_resident_id(value: str) -> bool:
    """Length, digits, real birth date (year 1900..2025) and check character."""
    if len(value) != 18 or not _is_digits(value[:17]):
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not 1900 <= year <= 2025:
        return False
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return value[17] == _ID_CHECK[_weighted(value[:17], _ID_WEIGHTS) % 11]


def resident_id(rng: random.Random, region_code: str, birth: datetime.date | None = None) -> str:
    """Valid 18-digit ID: 6-digit region + YYYYMMDD + 3-digit sequence + check.

    A 9-digit township code is truncated to its county (IDs carry 6 digits).
    """
    region_sum = _REGION_SUMS.get(region_code)
    if region_sum is None:
        if len(region_code) not in (6, 9) or not _is_digits(region_code):
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

_CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I O Z S V
_CC_VALUE = {c: i for i, c in enumerate(_CC_ALPHABET)}
_CC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code


def _cc_check(first17: str) -> str:
    return _CC_ALPHABET[(31 - sum(map(mul, map(_CC_VALUE.__getitem__, first17), _CC_WEIGHTS)) % 31) % 31]


def credit_code_check_char(first17: str) -> str:
    """Check character for the first 17 characters of a credit code."""
    if len(first17) != 17 or not set(first17) <= _CC_VALUE.keys():
        raise ValueError(f"expected 17 characters from {_CC_ALPHABET}, got {first17!r}")
    return _cc_check(first17)


def is_valid_credit_code(value: str) -> bool:
    """Length 18, code alphabet, digit region part (positions 3-8), check char."""
    if len(value) != 18 or not set(value) <= _CC_VALUE.keys():
        return False
    return _is_digits(value[2:8]) and value[17] == _cc_check(value[:17])


def _org_code_check(body8: str) -> str:
    """GB 11714 check char of the organisation code embedded at positions 9-17."""
    c = 11 - sum(w * (int(ch) if ch in _DIGITS else ord(ch) - 55) for ch, w in zip(body8, _ORG_WEIGHTS)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def credit_code(rng: random.Random, region_code: str) -> str:
    """Valid '91' (market-regulation-registered enterprise) credit code.

    The body mimics both post-2015 'MA…' codes and legacy all-digit
    organisation codes and carries its own GB 11714 check character.
    """
    if len(region_code) not in (6, 9) or not _is_digits(region_code):
        raise ValueError(f"region code must be 6 or 9 digits, got {region_code!r}")
    if rng.random() < 0.6:
        body = "MA" + "".join(rng.choices(_CC_ALPHABET, k=6))
    else:
        body = f"{rng.randrange(10**8):08d}"
    first17 = "91" + region_code[:6] + body + _org_code_check(body)
    return first17 + _cc_check(first17)


# --- Names -------------------------------------------------------------------

_SURNAMES_COMMON = "王李张刘陈杨黄赵吴周"  # weight 32 each
_SURNAMES_FREQUENT = "徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"  # weight 16
_SURNAMES_OTHER = "彭曾肖田董袁潘蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖"  # weight 8
COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "皇甫", "令狐")  # weight 1
_COMPOUND_SET = frozenset(COMPOUND_SURNAMES)
_SURNAME_TABLE = tuple(
    [s for s in _SURNAMES_COMMON for _ in range(32)]
    + [s for s in _SURNAMES_FREQUENT for _ in range(16)]
    + [s for s in _SURNAMES_OTHER for _ in range(8)]
    + list(COMPOUND_SURNAMES)
)
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


def surname_of(name: str) -> str:
    """Surname of a generated name (compound-aware), for masking 张三 -> 张*."""
    return name[:2] if name[:2] in _COMPOUND_SET else name[:1]


# --- Phones, plates, coordinates, dates --------------------------------------

_MOBILE_PREFIXES = tuple(
    [str(p) for p in range(130, 140)] + ["150", "151", "152", "153"]
    + [str(p) for p in range(155, 160)] + ["166"] + [str(p) for p in range(170, 179)]
    + [str(p) for p in range(180, 190)] + ["198", "199"]
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


@dataclass(frozen=True)
class Region:
    """An administrative division (GB/T 2260 6-digit, or 9-digit township).

    ``district`` is the county/district/town name, empty above that level.
    """

    code: str
    name: str
    province: str
    city: str
    district: str = ""


def _towns() -> tuple[Region, ...]:
    # Dongguan has no counties: towns and streets report to the city directly.
    # Codes are ILLUSTRATIVE ("441900" + 3 digits: streets 003-006, towns
    # 101-128, Songshan Lake 401), not the authoritative NBS township codes.
    streets = ("莞城街道", "南城街道", "东城街道", "万江街道")
    towns = (
        "石碣镇 石龙镇 茶山镇 石排镇 企石镇 横沥镇 桥头镇 谢岗镇 东坑镇 常平镇 寮步镇 樟木头镇 大朗镇 黄江镇 "
        "清溪镇 塘厦镇 凤岗镇 大岭山镇 长安镇 虎门镇 厚街镇 沙田镇 道滘镇 洪梅镇 麻涌镇 望牛墩镇 中堂镇 高埗镇"
    ).split()
    codes = [f"441900{i:03d}" for i in range(3, 7)] + [f"441900{i:03d}" for i in range(101, 129)] + ["441900401"]
    names = list(streets) + towns + ["松山湖功能区"]
    return tuple(Region(c, n, "广东省", "东莞市", n) for c, n in zip(codes, names))


DONGGUAN_TOWNS: tuple[Region, ...] = _towns()


def _build_regions() -> dict[str, Region]:
    rows: list[Region] = [
        Region("440000", "广东省", "广东省", ""),
        Region("420000", "湖北省", "湖北省", ""),
        Region("520000", "贵州省", "贵州省", ""),
        Region("441900", "东莞市", "广东省", "东莞市"),
        Region("440300", "深圳市", "广东省", "深圳市"),
        Region("420100", "武汉市", "湖北省", "武汉市"),
        Region("520100", "贵阳市", "贵州省", "贵阳市"),
    ]
    for code, city, province, dists in (
        ("4403", "深圳市", "广东省", (("03", "罗湖区"), ("04", "福田区"), ("05", "南山区"))),
        ("4201", "武汉市", "湖北省", (("02", "江岸区"), ("06", "武昌区"), ("11", "洪山区"))),
        ("5201", "贵阳市", "贵州省", (("02", "南明区"), ("03", "云岩区"))),
    ):
        rows += [Region(code + suffix, name, province, city, name) for suffix, name in dists]
    rows += DONGGUAN_TOWNS
    for code, name in _HUBEI_CITIES + _GUIZHOU_CITIES:
        province = "湖北省" if code.startswith("42") else "贵州省"
        rows.append(Region(code, name, province, name))
    rows.append(Region(NATIONAL, "全国", "", ""))
    for code, name in PROVINCES.items():
        rows.append(Region(code, name, name, ""))
    return {r.code: r for r in rows}


NATIONAL = "000000"  # the national hub's jurisdiction: contains every region

#: The 34 provincial-level divisions (GB/T 2260), by 6-digit code.
PROVINCES: dict[str, str] = {
    f"{c}0000": n
    for c, n in (
        ("11", "北京市"), ("12", "天津市"), ("13", "河北省"), ("14", "山西省"), ("15", "内蒙古自治区"),
        ("21", "辽宁省"), ("22", "吉林省"), ("23", "黑龙江省"), ("31", "上海市"), ("32", "江苏省"),
        ("33", "浙江省"), ("34", "安徽省"), ("35", "福建省"), ("36", "江西省"), ("37", "山东省"),
        ("41", "河南省"), ("42", "湖北省"), ("43", "湖南省"), ("44", "广东省"), ("45", "广西壮族自治区"),
        ("46", "海南省"), ("50", "重庆市"), ("51", "四川省"), ("52", "贵州省"), ("53", "云南省"),
        ("54", "西藏自治区"), ("61", "陕西省"), ("62", "甘肃省"), ("63", "青海省"), ("64", "宁夏回族自治区"),
        ("65", "新疆维吾尔自治区"), ("71", "台湾省"), ("81", "香港特别行政区"), ("82", "澳门特别行政区"),
    )
}

#: Hubei's 17 cities and prefectures (市州), including the province-administered ones.
_HUBEI_CITIES = (
    ("420200", "黄石市"), ("420300", "十堰市"), ("420500", "宜昌市"), ("420600", "襄阳市"),
    ("420700", "鄂州市"), ("420800", "荆门市"), ("420900", "孝感市"), ("421000", "荆州市"), ("421100", "黄冈市"),
    ("421200", "咸宁市"), ("421300", "随州市"), ("422800", "恩施土家族苗族自治州"), ("429004", "仙桃市"),
    ("429005", "潜江市"), ("429006", "天门市"), ("429021", "神农架林区"),
)  # with 420100 武汉市 above: 17

#: Guizhou's 9 cities and prefectures (市州), plus Gui'an New Area, which has no division
#: code of its own (it spans Guiyang and Anshun): 520190 is illustrative.
_GUIZHOU_CITIES = (
    ("520200", "六盘水市"), ("520300", "遵义市"), ("520400", "安顺市"), ("520500", "毕节市"),
    ("520600", "铜仁市"), ("522300", "黔西南布依族苗族自治州"), ("522600", "黔东南苗族侗族自治州"),
    ("522700", "黔南布依族苗族自治州"), ("520190", "贵安新区"),
)  # with 520100 贵阳市 above: 9 + 贵安新区

#: Cities whose every town/district is in the table: a code under them not in it does not exist.
_COMPLETE_CITIES = ("441900",)


def region_exists(code: str) -> bool:
    """False when the code provably names no region: an unknown province, or a town
    missing from a city whose towns are all known. Other well-formed codes pass, since the
    table does not hold all ~3,000 counties."""
    if code in REGIONS:
        return True
    if len(code) not in (6, 9) or not _is_digits(code) or code[:2] + "0000" not in PROVINCES:
        return False
    return not any(code.startswith(city[:4]) and code[4:6] == city[4:6] for city in _COMPLETE_CITIES)


REGIONS: dict[str, Region] = _build_regions()


@lru_cache(maxsize=4096)
def _scope(code: str) -> str:
    """Code prefix that all descendants share: strip '00' admin levels."""
    if len(code) == 9:
        return code
    if code.endswith("0000"):
        return code[:2]
    return code[:4] if code.endswith("00") else code


def jurisdiction_prefix(code: str) -> str:
    """The prefix every region inside ``code`` starts with ('' for the nation): precompute
    it once and row filters become one ``startswith``."""
    return "" if code == NATIONAL else _scope(code)


def region_contains(parent_code: str, child_code: str) -> bool:
    """Jurisdiction test used by row filters; a region contains itself.

    6-digit codes are 2 digits province + 2 city + 2 county, 9-digit codes add
    3 township digits.  Trailing '00' levels of the parent are stripped (at
    most down to the province) and the child must start with what remains:
    440000 ⊇ 441900 ⊇ 441900003; 420102 ⊇ only 420102 and 420102xxx.
    """
    if len(child_code) not in (6, 9) or not _is_digits(child_code):
        return False
    if parent_code == NATIONAL:
        return True
    return child_code.startswith(_scope(parent_code))


# --- Addresses ---------------------------------------------------------------

_ROADS = tuple(
    stem + suffix
    for stem in (
        "鸿福 胜和 元美 莞太 新城 人民 解放 中山 建设 和平 文化 新华 光明 迎宾 振兴 "
        "长青 金湖 环城 学院 体育 滨江 工业 科技 创业 育才 花园 银湖 翠竹 朝阳 青年"
    ).split()
    for suffix in ("路", "大道", "街")
)
_PROVINCE_ENDS = ("省", "自治区", "特别行政区")
_CITY_ENDS = ("市", "自治州", "地区", "盟")
_DISTRICT_ENDS = ("街道", "区", "县", "镇", "乡", "市")
_ADDRESS_PREFIXES: dict[str, tuple[str, ...]] = {}


def _prefixes_for(region: Region) -> tuple[str, ...]:
    if region.district:
        return (region.province + region.city + region.district,)
    leaves = tuple(
        r.province + r.city + r.district
        for r in REGIONS.values() if r.district and region_contains(region.code, r.code)
    )
    if not leaves:
        # a city whose districts the table does not list: its urban area (城区)
        city = region.city if region.city != region.province else ""
        return (region.province + city + "城区",)
    return leaves


def address(rng: random.Random, region: Region) -> str:
    """Street address in ``region`` (a random district/town if it is larger).

    Shape: province + city + district/town + road + number, e.g.
    广东省东莞市南城街道鸿福路123号, so ``district_prefix`` recovers the
    province+city+district part exactly.
    """
    prefixes = _ADDRESS_PREFIXES.get(region.code)
    if prefixes is None:
        prefixes = _ADDRESS_PREFIXES[region.code] = _prefixes_for(region)
    return f"{rng.choice(prefixes)}{rng.choice(_ROADS)}{rng.randrange(1, 1000)}号"


def _first_end(s: str, start: int, markers: tuple[str, ...]) -> int:
    """End index of the earliest marker occurrence at/after ``start``, or -1."""
    best, end = -1, -1
    for m in markers:
        p = s.find(m, start)
        if p != -1 and (best == -1 or p < best):
            best, end = p, p + len(m)
    return end


def district_prefix(address: str) -> str:
    """Leading province+city+district part of an address, for masking.

    Rule, applied left to right:
      1. province ends at the first 省/自治区 (absent for municipalities such
         as 北京市, or if it only occurs after the first city marker);
      2. city ends at the next 市/自治州/地区/盟;
      3. district-level unit ends at the next 街道/区/县/镇/乡/市.
    Returns the text up to the deepest level found ('' if none), so masking
    never reveals more than district level.  Road names produced by
    ``address()`` contain none of these markers.
    """
    p_end = _first_end(address, 0, _PROVINCE_ENDS)
    c_first = _first_end(address, 0, _CITY_ENDS)
    if p_end == -1 or (c_first != -1 and p_end > c_first):
        p_end = 0
    c_end = _first_end(address, p_end, _CITY_ENDS)
    if c_end == -1:
        return address[:p_end]
    d_end = _first_end(address, c_end, _DISTRICT_ENDS)
    return address[: d_end if d_end != -1 else c_end]
