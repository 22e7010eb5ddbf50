"""The scenario format: one platform, its departments, catalogue, subscriptions and load.

These models are the single source of truth for scenario files: `exchange validate`
checks files against them and `exchange schema` prints the JSON Schema generated from
them. Chinese terms are accepted where the people who run exchange platforms use them
(``sharing: 有条件共享`` is the same as ``sharing: conditional``).
"""

from __future__ import annotations

from enum import Enum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Identifier = Annotated[
    str,
    Field(pattern=_ID, description="lower-case ASCII id: letters, digits, '-' and '_' (used in topic names)"),
]
RegionCode = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    Field(pattern=r"^\d{6}(\d{3})?$", description="administrative division code: 6 digits, or 9 for a town/street"),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _aliases(mapping: dict[str, str]):
    """Accept the Chinese term (or a spelling variant) for an enum value."""

    def convert(value: object) -> object:
        if isinstance(value, str):
            return mapping.get(value.strip(), value.strip())
        return value

    return BeforeValidator(convert)


class Sharing(str, Enum):
    """共享属性: the national three-way sharing classification."""

    unconditional = "unconditional"  # 无条件共享
    conditional = "conditional"  # 有条件共享
    not_shared = "not_shared"  # 不予共享


SharingField = Annotated[
    Sharing,
    _aliases({"无条件共享": "unconditional", "有条件共享": "conditional", "不予共享": "not_shared"}),
]


class ExchangeMode(str, Enum):
    event_stream = "event_stream"  # 实时事件流 / 服务调用
    table_sync = "table_sync"  # 库表同步
    file = "file"  # 批量文件


class UpdateCycle(str, Enum):
    realtime = "realtime"  # 实时
    hourly = "hourly"
    daily = "daily"  # 每日
    weekly = "weekly"
    monthly = "monthly"  # 每月
    yearly = "yearly"


UpdateCycleField = Annotated[
    UpdateCycle,
    _aliases({"实时": "realtime", "每小时": "hourly", "每日": "daily", "每周": "weekly", "每月": "monthly", "每年": "yearly"}),
]


class ItemType(str, Enum):
    """What a data item holds; drives the synthetic value generator and default masking."""

    resident_id = "resident_id"  # 18-digit 公民身份号码
    credit_code = "credit_code"  # 18-char 统一社会信用代码
    person_name = "person_name"
    enterprise_name = "enterprise_name"
    phone = "phone"
    address = "address"
    region_code = "region_code"
    plate = "plate"
    latitude = "latitude"
    longitude = "longitude"
    date = "date"
    datetime = "datetime"
    integer = "integer"
    decimal = "decimal"
    text = "text"
    status = "status"


class Sensitivity(str, Enum):
    """分类分级: the grade a data item is classified at."""

    public = "public"
    internal = "internal"
    sensitive = "sensitive"
    personal = "personal"  # 个人信息


class MaskRule(str, Enum):
    """数据脱敏 rules; ``auto`` picks the rule from the item type for personal data."""

    auto = "auto"
    none = "none"
    name = "name"  # keep the surname: 张**
    id_number = "id_number"  # keep first 6 and last 4
    phone = "phone"  # keep 3 + 4 digits
    address = "address"  # cut to district level
    redact = "redact"  # replace entirely


_AUTO_MASK = {
    ItemType.person_name: MaskRule.name,
    ItemType.resident_id: MaskRule.id_number,
    ItemType.phone: MaskRule.phone,
    ItemType.address: MaskRule.address,
}


class DataItem(_Model):
    """数据项: one field of a catalogue entry, named by a semantic key."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", description="semantic key, e.g. person.name")
    name: str = Field(description="Chinese name of the item, e.g. 姓名")
    type: ItemType
    sensitivity: Sensitivity = Sensitivity.internal
    mask: MaskRule = MaskRule.auto

    @property
    def effective_mask(self) -> MaskRule:
        if self.mask is not MaskRule.auto:
            return self.mask
        if self.sensitivity is Sensitivity.personal:
            return _AUTO_MASK.get(self.type, MaskRule.redact)
        return MaskRule.none


MASTER_KEY_TYPES = (ItemType.resident_id, ItemType.credit_code, ItemType.plate)


class CatalogueEntry(_Model):
    """政务信息资源目录 entry: a dataset a provider department registers for sharing."""

    id: Identifier
    name: str
    provider: Identifier = Field(description="id of the provider department (数源部门 for its items)")
    theme: str | None = None
    sharing: SharingField
    exchange_mode: ExchangeMode = ExchangeMode.event_stream
    update_cycle: UpdateCycleField = UpdateCycle.realtime
    partitions: int = Field(default=1, ge=1, le=1024)
    items: tuple[DataItem, ...] = Field(min_length=1)
    master_key: str | None = Field(
        default=None, description="item keying the records (an ID number, credit code or plate); first such item when omitted"
    )

    @model_validator(mode="after")
    def _master_key_is_an_id(self) -> CatalogueEntry:
        if self.master_key is not None:
            item = next((i for i in self.items if i.key == self.master_key), None)
            if item is None:
                raise ValueError(f"master_key {self.master_key!r} is not an item of this entry")
            if item.type not in MASTER_KEY_TYPES:
                raise ValueError(f"master_key {self.master_key!r} is a {item.type.value}, not an ID number, credit code or plate")
        return self

    @field_validator("items")
    @classmethod
    def _unique_item_keys(cls, items: tuple[DataItem, ...]) -> tuple[DataItem, ...]:
        seen: set[str] = set()
        for item in items:
            if item.key in seen:
                raise ValueError(f"item {item.key!r} appears twice in this entry")
            seen.add(item.key)
        return items

    @cached_property
    def item_keys(self) -> frozenset[str]:
        return frozenset(i.key for i in self.items)

    @cached_property
    def master_key_item(self) -> DataItem | None:
        """The item whose value keys the record: ``master_key``, else the first ID number,
        credit code or plate among the items."""
        if self.master_key is not None:
            return next(i for i in self.items if i.key == self.master_key)
        return next((i for i in self.items if i.type in MASTER_KEY_TYPES), None)

    @cached_property
    def region_item(self) -> DataItem | None:
        return next((i for i in self.items if i.type is ItemType.region_code), None)


class Department(_Model):
    """委办厅局: a department attached to the platform, publishing and/or subscribing."""

    id: Identifier
    name: str = Field(description="Chinese name, e.g. 市场监管局")
    region: RegionCode | None = Field(default=None, description="the jurisdiction it serves; defaults to the platform's")


class SubscriptionStatus(str, Enum):
    approved = "approved"
    pending = "pending"


class Subscription(_Model):
    """A consumer department's standing request for an entry (a 申请 when conditional)."""

    consumer: Identifier
    entry: Identifier
    purpose: str = Field(default="", description="用途, required for conditional entries")
    items: tuple[str, ...] | None = Field(default=None, description="items asked for; all items when omitted")
    status: SubscriptionStatus = SubscriptionStatus.approved
    unmasked: tuple[str, ...] = Field(
        default=(), description="personal items this subscriber may receive in clear (conditional entries, under approval)"
    )

    @property
    def id(self) -> str:
        return f"{self.consumer}.{self.entry}"


class Platform(_Model):
    id: Identifier
    name: str
    level: Literal["national", "provincial", "municipal", "county", "township"] = "municipal"
    region: RegionCode


class ProducerLoad(_Model):
    department: Identifier
    rate: float = Field(gt=0, le=10_000_000, description="records/s for the department, split over its entries")
    entries: tuple[Identifier, ...] | None = Field(
        default=None, min_length=1, description="entries to publish; all of its own when omitted"
    )


class Load(_Model):
    duration: float = Field(default=30.0, gt=0, le=86_400, description="seconds of publishing")
    record_size: int = Field(default=512, ge=64, le=1_000_000, description="target bytes per record value (padded)")
    producers: tuple[ProducerLoad, ...] = ()
    default_rate: float = Field(default=0.0, ge=0, description="records/s for each entry no producer names")
    regions: tuple[RegionCode, ...] | None = Field(
        default=None, min_length=1, description="regions the synthetic records come from; the platform's own when omitted"
    )


class Scenario(_Model):
    """A whole exchange design to simulate."""

    name: str
    description: str = ""
    platform: Platform
    departments: tuple[Department, ...] = Field(min_length=1)
    catalogue: tuple[CatalogueEntry, ...] = Field(min_length=1)
    subscriptions: tuple[Subscription, ...] = ()
    load: Load = Load()

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Scenario:
        if info.context and info.context.get("skip_references"):
            return self
        problems = reference_errors(self)
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        return self

    @cached_property
    def entries(self) -> dict[str, CatalogueEntry]:
        return {e.id: e for e in self.catalogue}

    @cached_property
    def department_ids(self) -> dict[str, Department]:
        return {d.id: d for d in self.departments}

    @cached_property
    def subscriptions_by_entry(self) -> dict[str, tuple[Subscription, ...]]:
        out: dict[str, list[Subscription]] = {}
        for sub in self.subscriptions:
            out.setdefault(sub.entry, []).append(sub)
        return {k: tuple(v) for k, v in out.items()}

    def entry_rates(self) -> dict[str, float]:
        """Records/s per entry: each producer's rate split evenly over its entries."""
        named: dict[str, float] = {}
        for load in self.load.producers:
            own = load.entries or tuple(e.id for e in self.catalogue if e.provider == load.department)
            for entry_id in own:
                named[entry_id] = named.get(entry_id, 0.0) + load.rate / len(own)
        rates = {e.id: named.get(e.id, self.load.default_rate) for e in self.catalogue}
        return {k: v for k, v in rates.items() if v > 0}


Loc = tuple[str | int, ...]


def reference_errors(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Cross-reference problems, each with the path of the field at fault."""
    errors: list[tuple[Loc, str]] = []
    _no_duplicates("departments", [d.id for d in scenario.departments], errors)
    _no_duplicates("catalogue", [e.id for e in scenario.catalogue], errors)
    _no_duplicates("subscriptions", [s.id for s in scenario.subscriptions], errors, field="entry")
    depts = {d.id for d in scenario.departments}
    entries = {e.id: e for e in scenario.catalogue}
    for n, entry in enumerate(scenario.catalogue):
        if entry.provider not in depts:
            errors.append((("catalogue", n, "provider"), f"entry {entry.id!r}: provider {entry.provider!r} is not a department"))
    for n, sub in enumerate(scenario.subscriptions):
        where = f"subscription of {sub.consumer!r} to {sub.entry!r}"
        if sub.consumer not in depts:
            errors.append((("subscriptions", n, "consumer"), f"{where}: consumer {sub.consumer!r} is not a department"))
        entry = entries.get(sub.entry)
        if entry is None:
            errors.append((("subscriptions", n, "entry"), f"{where}: entry {sub.entry!r} is not in the catalogue"))
            continue
        unknown = sorted(set(sub.items or ()) - entry.item_keys)
        if unknown:
            errors.append((("subscriptions", n, "items"), f"{where}: {unknown} are not items of entry {entry.id!r}"))
        clear = sorted(set(sub.unmasked) - entry.item_keys)
        if clear:
            errors.append((("subscriptions", n, "unmasked"), f"{where}: {clear} are not items of entry {entry.id!r}"))
        elif sub.unmasked and entry.sharing is not Sharing.conditional:
            errors.append((("subscriptions", n, "unmasked"), f"{where}: only a conditional entry's approval can lift masking"))
        if entry.sharing is Sharing.conditional and not sub.purpose:
            errors.append((("subscriptions", n, "purpose"), f"{where}: a conditional entry needs a purpose (用途)"))
    for n, load in enumerate(scenario.load.producers):
        if load.department not in depts:
            errors.append((("load", "producers", n, "department"), f"producer {load.department!r} is not a department"))
        for k, entry_id in enumerate(load.entries or ()):
            entry = entries.get(entry_id)
            if entry is None:
                errors.append((("load", "producers", n, "entries", k), f"producer {load.department!r} names entry {entry_id!r}, not in the catalogue"))
            elif entry.provider != load.department:
                errors.append((("load", "producers", n, "entries", k), f"producer {load.department!r} cannot publish entry {entry_id!r}: its provider is {entry.provider!r}"))
    return errors


def _no_duplicates(section: str, ids: list[str], errors: list[tuple[Loc, str]], field: str = "id") -> None:
    seen: set[str] = set()
    for n, i in enumerate(ids):
        if i in seen:
            errors.append(((section, n, field), f"duplicate id {i!r} in {section}"))
        seen.add(i)
