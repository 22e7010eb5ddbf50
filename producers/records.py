"""Synthetic records for catalogue entries, drawn from one shared pool of people,
enterprises and vehicles.

Departments describe the same people and enterprises: a tax record and a registration
record for one credit code carry the same name and address, which is what makes
"one number, one source" verification and masking meaningful. The pool is built once per
seed; building a record is then a handful of lookups, fast enough for 100,000 records/s.
"""

from __future__ import annotations

import datetime as dt
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from producers import identity
from schemas import regions
from schemas.envelope import PAD_FIELD
from schemas.scenario import CatalogueEntry, ItemType, Scenario

_STATUSES = ("正常", "正常", "正常", "变更", "注销", "吊销")
_SUFFIXES = ("科技有限公司", "贸易有限公司", "电子有限公司", "制造有限公司", "实业有限公司", "餐饮管理有限公司")
_TRADE = "华盛鸿达嘉信恒通远航瑞丰德隆创新宏图卓越金源兴业"
_TEXT = ("依法办理", "按期完成", "已核验", "待补正", "已归档")


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    phone: str
    address: str
    region: str


@dataclass(frozen=True, slots=True)
class Enterprise:
    code: str
    name: str
    address: str
    region: str
    legal_rep: Person
    phone: str


@dataclass(frozen=True, slots=True)
class Vehicle:
    plate: str
    region: str


def sample_leaf(rng: random.Random, region: identity.Region) -> identity.Region:
    """A smallest division inside ``region``, chosen level by level (each city of a
    province, each county of a city, each town of a county equally likely), so every
    jurisdiction below gets its share of rows however many towns its neighbours have."""
    kids = regions.children(region.code)
    while kids:
        region = regions.get(kids[int(rng.random() * len(kids))])
        kids = regions.children(region.code)
    return region


class EntityPool:
    """People, enterprises and vehicles of the platform's regions, fixed by the seed.

    ``regions`` are the divisions records come from, each equally likely; inside one, a
    township is chosen level by level (``sample_leaf``)."""

    def __init__(self, seed: int, regions: list[identity.Region], people: int = 20_000, enterprises: int = 5_000, vehicles: int = 37_000) -> None:
        rng = random.Random(seed)
        self.regions = regions
        self.people = [self._person(rng) for _ in range(people)]
        self.enterprises = [self._enterprise(rng) for _ in range(enterprises)]
        self.vehicles = [Vehicle(identity.plate_number(rng), self._region(rng).code) for _ in range(vehicles)]

    def _region(self, rng: random.Random) -> identity.Region:
        return sample_leaf(rng, self.regions[int(rng.random() * len(self.regions))])

    def _person(self, rng: random.Random) -> Person:
        region = self._region(rng)
        return Person(
            id=identity.resident_id(rng, region.code[:6]),
            name=identity.chinese_name(rng),
            phone=identity.mobile_phone(rng),
            address=identity.address(rng, region),
            region=region.code,
        )

    def _enterprise(self, rng: random.Random) -> Enterprise:
        region = self._region(rng)
        name = region.city + "".join(rng.choices(_TRADE, k=2)) + rng.choice(_SUFFIXES)
        return Enterprise(
            code=identity.credit_code(rng, region.code[:6]),
            name=name,
            address=identity.address(rng, region),
            region=region.code,
            legal_rep=rng.choice(self.people),
            phone=identity.mobile_phone(rng),
        )


# How each item type is filled, given the record's subject (a person, enterprise or vehicle).
Getter = Callable[[Any, random.Random], Any]


def _person_of(subject: Any) -> Person:
    return subject.legal_rep if isinstance(subject, Enterprise) else subject


def _region_obj(code: str) -> identity.Region:
    return regions.get(code) or regions.get(code[:6]) or regions.get(regions.NATIONAL)


GETTERS: dict[ItemType, Getter] = {
    ItemType.resident_id: lambda s, r: _person_of(s).id,
    ItemType.person_name: lambda s, r: _person_of(s).name,
    ItemType.credit_code: lambda s, r: s.code,
    ItemType.enterprise_name: lambda s, r: s.name,
    ItemType.phone: lambda s, r: s.phone,
    ItemType.address: lambda s, r: s.address,
    ItemType.region_code: lambda s, r: s.region,
    ItemType.plate: lambda s, r: s.plate,
    ItemType.latitude: lambda s, r: identity.gps_fix(r, _region_obj(s.region))[0],
    ItemType.longitude: lambda s, r: identity.gps_fix(r, _region_obj(s.region))[1],
    ItemType.date: lambda s, r: (dt.date(2015, 1, 1) + dt.timedelta(days=r.randrange(4000))).isoformat(),
    ItemType.datetime: lambda s, r: dt.datetime.now().isoformat(timespec="seconds"),
    ItemType.integer: lambda s, r: r.randrange(0, 100_000),
    ItemType.decimal: lambda s, r: round(r.uniform(0, 120), 2),
    ItemType.status: lambda s, r: r.choice(_STATUSES),
    ItemType.text: lambda s, r: r.choice(_TEXT),
}

_SUBJECT_OF_KEY = {ItemType.credit_code: "enterprises", ItemType.plate: "vehicles", ItemType.resident_id: "people"}


class RecordFactory:
    """Makes (key, record) pairs for one entry; the key is the record's master key."""

    def __init__(
        self,
        entry: CatalogueEntry,
        pool: EntityPool,
        rng: random.Random,
        record_size: int = 0,
        mismatch_items: tuple[str, ...] = (),
        mismatch_rate: float = 0.0,
    ) -> None:
        self.entry = entry
        self.rng = rng
        self.mismatch_items = mismatch_items  # copies of another department's items that may disagree
        self.mismatch_rate = mismatch_rate if mismatch_items else 0.0
        self._by_key: dict[str, Any] | None = None
        master = entry.master_key_item
        kinds = {i.type for i in entry.items}
        if master is not None:
            subjects = _SUBJECT_OF_KEY[master.type]
        elif ItemType.credit_code in kinds or ItemType.enterprise_name in kinds:
            subjects = "enterprises"
        else:
            subjects = "people"
        self.subjects = getattr(pool, subjects)
        if subjects == "vehicles":
            # a vehicle carries no phone or address; describe its owner where asked
            self._getters = [(i.key, _vehicle_getter(i.type, pool)) for i in entry.items]
        else:
            self._getters = [(i.key, GETTERS[i.type]) for i in entry.items]
        self._master_getter = GETTERS[master.type] if master else None
        self.pad = "x" * max(0, record_size - self._estimate_size()) if record_size else ""

    def _estimate_size(self) -> int:
        sample = [orjson.dumps(self._record(self.subjects[i % len(self.subjects)])[1]) for i in range(8)]
        return sum(len(s) for s in sample) // len(sample) + len(PAD_FIELD) + 6

    def _record(self, subject: Any) -> tuple[bytes | None, dict[str, Any]]:
        rng = self.rng
        record = {key: get(subject, rng) for key, get in self._getters}
        key = self._master_getter(subject, rng).encode() if self._master_getter else None
        return key, record

    def for_key(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """A record about the subject with this master key (a reaction to someone else's record)."""
        if self._by_key is None:
            get = self._master_getter
            self._by_key = {get(s, self.rng): s for s in self.subjects} if get else {}
        subject = self._by_key.get(key) or self.subjects[int(self.rng.random() * len(self.subjects))]
        k, record = self._record(subject)
        if self.mismatch_rate and self.rng.random() < self.mismatch_rate:
            item = self.rng.choice(self.mismatch_items)
            if isinstance(record.get(item), str):
                record[item] = perturb(record[item], self.rng)
        return k, record

    def encoded(self, n: int) -> list[tuple[bytes | None, bytes]]:
        """``n`` records as (key, JSON bytes), ready to publish."""
        dumps = orjson.dumps
        return [(key, dumps(record)) for key, record in (self.make() for _ in range(n))]

    def make(self) -> tuple[bytes | None, dict[str, Any]]:
        key, record = self._record(self.subjects[int(self.rng.random() * len(self.subjects))])
        if self.mismatch_rate and self.rng.random() < self.mismatch_rate:
            item = self.rng.choice(self.mismatch_items)
            if isinstance(record.get(item), str):
                record[item] = perturb(record[item], self.rng)
        if self.pad:
            record[PAD_FIELD] = self.pad
        return key, record


def perturb(value: str, rng: random.Random) -> str:
    """A copy that disagrees with the source the way copies do: a typo, a stale number."""
    if value.endswith("号") and any(c.isdigit() for c in value):
        return value.rstrip("0123456789号") + f"{rng.randrange(1, 1000)}号"
    if value[-1:].isdigit():
        return value[:-1] + str((int(value[-1]) + rng.randrange(1, 10)) % 10)
    return value[:-1] + rng.choice("华明丽强伟芳") if len(value) > 1 else value + "甲"


def _vehicle_getter(kind: ItemType, pool: EntityPool) -> Getter:
    if kind in (ItemType.plate, ItemType.region_code, ItemType.latitude, ItemType.longitude):
        return GETTERS[kind]
    people = pool.people
    base = GETTERS[kind]
    return lambda s, r: base(people[zlib.crc32(s.plate.encode()) % len(people)], r)


def region_of(code: str) -> identity.Region:
    """The division with this code. Raises ValueError, with the nearest real codes, for a
    code that is not in the division table (schemas/regions.py)."""
    region = regions.get(code)
    if region is None:
        hint = ", ".join(f"{r.code} {r.full_name}" for r in regions.nearest(code))
        raise ValueError(f"region {code} is not in the division table (nearest: {hint})")
    return region


def regions_of(platform_region: str) -> list[identity.Region]:
    """The regions a platform's records come from: the smallest divisions inside its own
    (its townships and streets; itself if it is one), so that a row filter at any level
    below finds its rows. Raises ValueError, with the nearest real codes, for a code that
    is not in the division table (schemas/regions.py)."""
    return list(regions.leaves(region_of(platform_region).code))


def entity_pool(scenario: Scenario, seed: int) -> EntityPool:
    """The people, enterprises and vehicles records are about (the same in every process)."""
    return EntityPool(seed, [region_of(code) for code in (scenario.load.regions or (scenario.platform.region,))])
