"""The scenario format: one platform, its departments, catalogue, subscriptions and load.

These models are the single source of truth for scenario files: `exchange validate`
checks files against them and `exchange schema` prints the JSON Schema generated from
them. Chinese terms are accepted where the people who run exchange platforms use them
(``sharing: 有条件共享`` is the same as ``sharing: conditional``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import Enum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

ITEM_KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
REGION_PATTERN = r"^\d{6}(\d{3})?$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, description="lower-case ASCII id: letters, digits, '-' and '_' (used in topic names)")]
RegionCode = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    Field(pattern=REGION_PATTERN, description="administrative division code: 6 digits, or 9 for a town/street"),
]


class _Model(BaseModel):
    # no infinite or NaN rate, multiplier, duration or delay: YAML writes them as .inf / .nan
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


ENUM_ALIASES: dict[type[Enum], dict[str, str]] = {}
"""Each enum's accepted Chinese terms (and spelling variants) → its value; `exchange schema`
lists them too, so that an editor accepts what the loader accepts."""


def _aliases(enum: type[Enum], mapping: dict[str, str]) -> BeforeValidator:
    """Accept the Chinese term (or a spelling variant) for an enum value; a value that is
    neither is refused with both lists."""
    ENUM_ALIASES[enum] = mapping
    values = [m.value for m in enum]

    def convert(value: object) -> object:
        if not isinstance(value, str):
            return value
        value = mapping.get(value.strip(), value.strip())
        if value not in values:
            raise PydanticCustomError(
                "enum", "Input should be {expected} (or {terms})", {"expected": ", ".join(map(repr, values)), "terms": ", ".join(mapping)}
            )
        return value

    return BeforeValidator(convert)


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of scenario files as `exchange validate` reads them:
    the pydantic models' schema, widened where the loader accepts more than the models'
    types say: each enum's Chinese terms (``sharing: 无条件共享``), region codes written
    as numbers (``region: 441900`` unquoted, which YAML reads as an integer), and the topic
    layout written alone (``topics: per-department``). An editor
    pointed at it flags only what the loader refuses; the cross-references (an entry that
    is not in the catalogue, say) only `exchange validate` checks."""
    from pydantic import TypeAdapter

    schema = Scenario.model_json_schema()
    for enum, terms in ENUM_ALIASES.items():
        node = schema["$defs"].get(enum.__name__)
        if node is not None:
            node["enum"] = [*node["enum"], *terms]
    region = TypeAdapter(RegionCode).json_schema()
    as_number = {"type": "integer", "minimum": 100_000, "maximum": 999_999_999, "description": "a code written without quotes"}

    def widen(node: object) -> object:
        if isinstance(node, dict):
            if {k: v for k, v in node.items() if k != "title"} == region:
                return {"anyOf": [region, as_number], **({"title": node["title"]} if "title" in node else {})}
            return {k: widen(v) for k, v in node.items()}
        if isinstance(node, list):
            return [widen(v) for v in node]
        return node

    widened = widen(schema)
    assert isinstance(widened, dict)
    topics = widened["properties"]["topics"]  # the layout alone is the short form (``topics: per-department``)
    widened["properties"]["topics"] = {
        "anyOf": [{"$ref": topics["$ref"]}, {"$ref": "#/$defs/TopicLayout"}],
        **{k: v for k, v in topics.items() if k != "$ref"},
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **widened}


class PlatformLevel(str, Enum):
    """A platform's administrative level (国家级 / 省级 / 市级 / 县级 / 乡镇级)."""

    national = "national"
    provincial = "provincial"
    municipal = "municipal"
    county = "county"
    township = "township"


PlatformLevelField = Annotated[
    PlatformLevel,
    _aliases(
        PlatformLevel,
        {
            "国家级": "national",
            "省级": "provincial",
            "市级": "municipal",
            "县级": "county",
            "区县级": "county",
            "乡镇级": "township",
            "镇街级": "township",
        },
    ),
]


class Sharing(str, Enum):
    """共享属性: the national three-way sharing classification."""

    unconditional = "unconditional"  # 无条件共享
    conditional = "conditional"  # 有条件共享
    not_shared = "not_shared"  # 不予共享


SharingField = Annotated[Sharing, _aliases(Sharing, {"无条件共享": "unconditional", "有条件共享": "conditional", "不予共享": "not_shared"})]


class OpenData(str, Enum):
    """开放属性: whether the dataset may go to the open-data portal."""

    open = "open"  # 无条件开放
    conditional = "conditional"  # 有条件开放
    not_open = "not_open"  # 不予开放


OpenDataField = Annotated[OpenData, _aliases(OpenData, {"无条件开放": "open", "有条件开放": "conditional", "不予开放": "not_open"})]


class DepartmentKind(str, Enum):
    local_bureau = "local_bureau"  # 委办局: a bureau of this level
    vertical = "vertical"  # 垂直部门: managed from the centre (tax, customs), shares locally
    public_institution = "public_institution"  # 事业单位 (e.g. provident fund centre)
    local_government = "local_government"  # a town/street government (镇/街道)
    platform_operator = "platform_operator"  # 政务服务数据管理局


DepartmentKindField = Annotated[
    DepartmentKind,
    _aliases(DepartmentKind, {"委办局": "local_bureau", "垂直部门": "vertical", "事业单位": "public_institution", "镇街": "local_government"}),
]


class DeliveryGuarantee(str, Enum):
    """How often each record reaches a subscriber's delivery topic (Kafka's delivery semantics).

    ``at-least-once``: a router that dies re-routes the batches it had not committed, and
    subscribers drop the redeliveries by trace id. ``exactly-once``: idempotent producers,
    the router's consume-transform-produce in Kafka transactions, subscribers reading
    ``read_committed`` (KIP-98); needs Apache Kafka (Tansu rejects transactional producers).
    """

    at_least_once = "at-least-once"  # 至少一次
    exactly_once = "exactly-once"  # 精确一次


DeliveryGuaranteeField = Annotated[
    DeliveryGuarantee,
    _aliases(
        DeliveryGuarantee,
        {
            "至少一次": "at-least-once",
            "精确一次": "exactly-once",
            "恰好一次": "exactly-once",
            "at_least_once": "at-least-once",
            "exactly_once": "exactly-once",
        },
    ),
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
    _aliases(
        UpdateCycle, {"实时": "realtime", "每小时": "hourly", "每日": "daily", "每天": "daily", "每周": "weekly", "每月": "monthly", "每年": "yearly"}
    ),
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

    key: str = Field(pattern=ITEM_KEY_PATTERN, description="semantic key, e.g. person.name")
    name: str = Field(description="Chinese name of the item, e.g. 姓名")
    type: ItemType
    sensitivity: Sensitivity = Sensitivity.internal
    mask: MaskRule = MaskRule.auto
    authoritative: bool = Field(default=False, description="the entry's provider is the authoritative source (数源部门) of this item")

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
    open_data: OpenDataField = OpenData.not_open
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
    kind: DepartmentKindField = DepartmentKind.local_bureau
    platform: Identifier | None = Field(default=None, description="the platform it attaches to; the main platform when omitted")
    consume_rate: float | None = Field(default=None, gt=0, description="records/s its system can take in at most (its consumer reads no faster)")
    gateway: Identifier | None = Field(
        default=None, description="the boundary gateway it reaches its hub through (a separate network zone, e.g. 公安网)"
    )


class SubscriptionStatus(str, Enum):
    approved = "approved"
    pending = "pending"


class Subscription(_Model):
    """A consumer department's standing request for an entry (a 申请 when conditional)."""

    consumer: Identifier
    entry: Identifier
    purpose: str = Field(default="", description="用途, required for conditional entries")
    items: tuple[str, ...] | None = Field(default=None, description="items asked for; all items when omitted")
    status: SubscriptionStatus = Field(
        default=SubscriptionStatus.pending,
        description=(
            "a conditional entry's application: approved in the scenario, or pending (nothing flows until "
            "`exchange approve`); pending when omitted, so that forgetting it grants nothing. "
            "Unconditional entries ignore it"
        ),
    )
    valid_for: float | None = Field(
        default=None, gt=0, description="seconds an approval given in the scenario lasts from the start of a run (then it expires)"
    )
    unmasked: tuple[str, ...] = Field(
        default=(), description="personal items this subscriber may receive in clear (conditional entries, under approval)"
    )

    @property
    def id(self) -> str:
        return f"{self.consumer}.{self.entry}"


class NegativeList(_Model):
    """负面清单: entries and items never shared, whatever an entry or subscription says."""

    entries: tuple[Identifier, ...] = ()
    items: tuple[str, ...] = ()


class Platform(_Model):
    """A hub (数据共享交换平台). In a cascade each runs its own router with its own rules."""

    id: Identifier
    name: str
    level: PlatformLevelField = PlatformLevel.municipal
    region: RegionCode
    parent: Identifier | None = Field(default=None, description="the platform it cascades up to (级联)")
    negative_list: NegativeList = Field(
        default_factory=lambda: NegativeList(),
        description="this hub's own rule: entries it never lets through (denied here, audited here) and items never sent towards it",
    )


class Gateway(_Model):
    """A security boundary gateway (边界安全网关) between a separate network zone and its hub."""

    id: Identifier
    name: str = Field(default="", description="e.g. 公安网边界接入平台")
    latency_ms: float = Field(default=0.0, ge=0, le=60_000, description="added to every record crossing it, each way")
    max_records_per_s: float | None = Field(default=None, gt=0, description="records/s it lets through at most, each way")


class LoadProfile(_Model):
    """How a producer's rate moves over the run. The rate given is the base: a ramp goes
    from ``start``× to ``end``×; steps switch multiplier at fractions of the run; a burst
    multiplies it for ``length`` (fraction of the run) from ``at``; diurnal compresses a
    working day (night batch window, morning peak, lunch dip) into the run; poisson draws
    exponential inter-arrival times; batch publishes ``rate × every`` rows at once every
    ``every`` seconds (table and file exchange)."""

    kind: Literal["constant", "poisson", "ramp", "steps", "burst", "diurnal", "batch"] = "constant"
    start: float = Field(default=0.1, ge=0, description="ramp: multiplier at the start")
    end: float = Field(default=1.0, ge=0, description="ramp: multiplier at the end")
    steps: tuple[tuple[float, float], ...] = Field(default=(), description="steps: (fraction of the run, multiplier)")
    at: float = Field(default=0.5, ge=0, lt=1, description="burst: where it starts, fraction of the run")
    length: float = Field(default=0.1, gt=0, le=1, description="burst: how long, fraction of the run")
    multiplier: float = Field(default=5.0, gt=0, description="burst: rate multiple during the burst")
    every: float = Field(default=10.0, gt=0, description="batch: seconds between batches (the compressed update cycle)")


class ProducerLoad(_Model):
    department: Identifier
    rate: float = Field(gt=0, le=10_000_000, description="records/s for the department, split over its entries")
    entries: tuple[Identifier, ...] | None = Field(default=None, min_length=1, description="entries to publish; all of its own when omitted")
    profile: LoadProfile | None = Field(default=None, description="shape of the rate over the run; constant when omitted")


class Reaction(_Model):
    """A department acting on what it receives: on each new record of ``on``, after its
    processing time, it publishes a record of its own entry ``publish`` for the same
    master key. Chains of reactions model joint processes such as 企业开办."""

    department: Identifier
    on: Identifier = Field(description="entry whose deliveries trigger the reaction")
    publish: Identifier = Field(description="entry of the department's own to publish")
    delay: float = Field(default=0.2, ge=0, le=3600, description="processing time, seconds")
    jitter: float = Field(default=0.1, ge=0, le=3600, description="uniform extra processing time, seconds")


class Workflow(_Model):
    """A joint process measured end to end, per master key: from the intended send time of
    the ``start`` record to the arrival of the last of the ``steps`` records."""

    name: str
    start: Identifier
    steps: tuple[Identifier, ...] = Field(min_length=1)


class SLO(_Model):
    """A service-level objective the run is judged against (pass or fail, with the value)."""

    name: str
    metric: Literal[
        "e2e_p50_ms",
        "e2e_p99_ms",
        "e2e_p999_ms",
        "e2e_max_ms",
        "publish_delay_p99_ms",
        "denied_rate",
        "dead_letter_rate",
        "unaccounted",
        "delivered_per_s",
        "verification_rate",
        "workflow_p99_ms",
        "batch_within_cycle",
    ]
    max: float | None = Field(default=None, description="the measured value must not exceed this")
    min: float | None = Field(default=None, description="the measured value must reach at least this")
    entries: tuple[Identifier, ...] | None = Field(default=None, description="flows of these entries only (latency, rates)")

    @model_validator(mode="after")
    def _one_bound(self) -> SLO:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of max or min")
        return self


class Responsibility(_Model):
    """责任清单: the items a department is responsible for providing."""

    department: Identifier
    items: tuple[str, ...] = Field(min_length=1)


class Load(_Model):
    duration: float = Field(default=30.0, gt=0, le=86_400, description="seconds of publishing")
    warmup: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="seconds at the start of publishing whose records are routed and counted but kept out of the "
        "aggregated latency figures and SLO verdicts (reported apart); default: min(5 s, a fifth of the run); "
        "min(20 s, a fifth) on an Apache Kafka broker the run starts (a cold JVM)",
    )
    record_size: int = Field(default=512, ge=64, le=1_000_000, description="target bytes per record value (padded)")
    producers: tuple[ProducerLoad, ...] = ()
    default_rate: float = Field(default=0.0, ge=0, le=10_000_000, description="records/s for each entry no producer names")
    mismatch_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of non-authoritative copies published with a value that disagrees with the source"
    )
    regions: tuple[RegionCode, ...] | None = Field(
        default=None, min_length=1, description="regions the synthetic records come from; the platform's own when omitted"
    )

    @field_validator("warmup")
    @classmethod
    def _warmup_within_the_run(cls, warmup: float | None, info: ValidationInfo) -> float | None:
        """A warm-up as long as the file's own run leaves nothing to measure (``exchange run``
        refuses it: exchange/runner/warmup.py); ``validate`` says so too."""
        duration = info.data.get("duration")
        if warmup and duration is not None and warmup >= duration:
            raise ValueError(f"{warmup:g} s is not shorter than load.duration ({duration:g} s): nothing would be measured (0: no warm-up)")
        return warmup


class TopicLayout(str, Enum):
    """How a hub's ingress topics are cut: the unit that gets its own topic.

    ``per-entry``: one topic per catalogue entry (the default: what the exchange always did);
    ``per-department``: one per provider department, all its entries on it; ``per-mode``: one
    per exchange mode (实时事件流, 库表同步, 批量文件); ``per-class``: one per sensitivity
    class (分类分级: an entry's class is the highest of its items'). On a topic several entries
    share, each record names its entry in the ``entry-id`` header (schemas/envelope.py).
    """

    per_entry = "per-entry"
    per_department = "per-department"
    per_mode = "per-mode"
    per_class = "per-class"


TopicLayoutField = Annotated[
    TopicLayout,
    _aliases(
        TopicLayout,
        {
            "per_entry": "per-entry",
            "per_department": "per-department",
            "per_mode": "per-mode",
            "per_class": "per-class",
            "按资源": "per-entry",
            "按部门": "per-department",
            "按交换方式": "per-mode",
            "按分级": "per-class",
        },
    ),
]

#: the placeholder naming the unit of each layout in a topic name template
LAYOUT_KEYS = {TopicLayout.per_entry: "entry", TopicLayout.per_department: "department", TopicLayout.per_mode: "mode", TopicLayout.per_class: "class"}
#: each layout's default name template; per-entry's is the exchange's historical ``dx.<hub>.in.<entry>``
DEFAULT_TOPIC_NAMES = {
    TopicLayout.per_entry: "dx.{hub}.in.{entry}",
    TopicLayout.per_department: "dx.{hub}.in.dept.{department}",
    TopicLayout.per_mode: "dx.{hub}.in.mode.{mode}",
    TopicLayout.per_class: "dx.{hub}.in.class.{class}",
}
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_TOPIC_NAME = 249  # Kafka's limit (kafka.common.internals.Topic)
_SENSITIVITY_ORDER = (Sensitivity.public, Sensitivity.internal, Sensitivity.sensitive, Sensitivity.personal)


def sensitivity_class(entry: CatalogueEntry) -> Sensitivity:
    """An entry's sensitivity class (分类分级): the highest grade among its items."""
    return max((i.sensitivity for i in entry.items), key=_SENSITIVITY_ORDER.index)


class IngressTopics(_Model):
    """The ingress topic layout: where departments publish their entries' records.

    Written as the layout alone (``topics: per-department``) or in full (``topics: {layout:
    per-mode, name: "gov.{hub}.{mode}", partitions: 12}``). ``exchange run --topics``
    overrides the layout. Delivery, audit, dead-letter and the other topics are not affected.
    """

    layout: TopicLayoutField = Field(default=TopicLayout.per_entry, description="the unit that gets its own ingress topic")
    name: str | None = Field(
        default=None,
        description=(
            "topic name template: the literal characters Kafka allows (letters, digits, '.', '_', '-') and the "
            "placeholders {hub} (platform id) and the layout's unit: {entry}, {department}, {mode} (event_stream, "
            "table_sync, file) or {class} (public, internal, sensitive, personal). Default: dx.{hub}.in.{entry}, "
            "dx.{hub}.in.dept.{department}, dx.{hub}.in.mode.{mode}, dx.{hub}.in.class.{class}"
        ),
    )
    partitions: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="partitions of each topic several entries share; default: the most any of its entries has (per-entry: each entry's own)",
    )

    @field_validator("name")
    @classmethod
    def _template(cls, name: str | None, info: ValidationInfo) -> str | None:
        layout = info.data.get("layout")
        if name is not None and layout is not None:
            problem = template_problem(name, layout)
            if problem is not None:
                raise PydanticCustomError("topic_name", "{problem}", {"problem": problem})
        return name

    @property
    def template(self) -> str:
        """The name template in force: ``name``, else the layout's default."""
        return self.name if self.name is not None else DEFAULT_TOPIC_NAMES[self.layout]

    def unit_of(self, entry: CatalogueEntry) -> str:
        """The value of the layout's placeholder for ``entry``: its id, provider, mode or class."""
        layout = self.layout
        if layout is TopicLayout.per_entry:
            return entry.id
        if layout is TopicLayout.per_department:
            return entry.provider
        if layout is TopicLayout.per_mode:
            return entry.exchange_mode.value
        return sensitivity_class(entry).value

    def topic_of(self, entry: CatalogueEntry, hub: str) -> str:
        """The ingress topic ``entry`` is published on, on platform ``hub`` (its provider's)."""
        return self.template.replace("{hub}", hub).replace("{" + LAYOUT_KEYS[self.layout] + "}", self.unit_of(entry))


def template_problem(template: str, layout: TopicLayout) -> str | None:
    """What is wrong with a topic name template for ``layout`` (one sentence), or None."""
    import string

    key = LAYOUT_KEYS[layout]
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"topic name template {template!r} is malformed ({exc}); write placeholders as {{hub}} and {{{key}}}"
    fields = set()
    for literal, field, spec, conversion in parsed:
        bad = sorted(set(literal) - _TOPIC_CHARS)
        if bad:
            return f"topic name template {template!r} has {''.join(bad)!r}: Kafka topic names allow only letters, digits, '.', '_' and '-'"
        if field is None:
            continue
        if spec or conversion:
            return f"topic name template {template!r}: placeholder {{{field}}} takes no format spec or conversion"
        if field not in ("hub", key):
            why = "it differs between the entries that share a topic" if field in LAYOUT_KEYS.values() else "it is not a placeholder"
            return f"topic name template {template!r}: {{{field}}} cannot be used with topics: {layout.value} ({why}); use {{hub}} and {{{key}}}"
        fields.add(field)
    if key not in fields:
        return f"topic name template {template!r} lacks {{{key}}}: with topics: {layout.value} each {key} needs a topic of its own"
    if template.replace("{hub}", "").replace("{" + key + "}", "") in ("", ".", ".."):
        return f"topic name template {template!r} needs more than placeholders"
    return None


def _ingress_topics(value: object) -> object:
    return {"layout": value} if isinstance(value, str) else value


class Scenario(_Model):
    """A whole exchange design to simulate."""

    name: str
    description: str = ""
    platform: Platform
    departments: tuple[Department, ...] = Field(min_length=1)
    catalogue: tuple[CatalogueEntry, ...] = Field(min_length=1)
    subscriptions: tuple[Subscription, ...] = ()
    load: Load = Load()
    platforms: tuple[Platform, ...] = Field(default=(), description="further platforms of a cascade (see `parent`)")
    gateways: tuple[Gateway, ...] = Field(default=(), description="boundary gateways departments may sit behind")
    negative_list: NegativeList = Field(default_factory=lambda: NegativeList(), description="负面清单: never shared")
    responsibilities: tuple[Responsibility, ...] = Field(default=(), description="责任清单: items a department must provide")
    reactions: tuple[Reaction, ...] = ()
    slos: tuple[SLO, ...] = ()
    workflows: tuple[Workflow, ...] = ()
    guarantee: DeliveryGuaranteeField = Field(
        default=DeliveryGuarantee.at_least_once,
        description="delivery guarantee of the exchange: at-least-once (any broker) or exactly-once (Apache Kafka only: "
        "idempotent producers, transactional routers, read_committed subscribers); `exchange run --guarantee` overrides it",
    )
    topics: Annotated[IngressTopics, BeforeValidator(_ingress_topics)] = Field(
        default_factory=lambda: IngressTopics(),
        description="ingress topic layout: per-entry (default), per-department, per-mode or per-class, or a mapping with "
        "layout, name and partitions; `exchange run --topics` overrides the layout",
    )

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
    def all_platforms(self) -> dict[str, Platform]:
        return {p.id: p for p in (self.platform, *self.platforms)}

    def platform_of(self, department: str) -> str:
        return self.department_ids[department].platform or self.platform.id

    def root_of(self, platform: str) -> str:
        """The top of a platform's cascade (its national or provincial hub)."""
        seen = set()
        cur = self.all_platforms[platform]
        while cur.parent is not None and cur.parent in self.all_platforms and cur.id not in seen:
            seen.add(cur.id)
            cur = self.all_platforms[cur.parent]
        return cur.id

    def path(self, source: str, target: str) -> tuple[str, ...]:
        """The hubs a record crosses from platform ``source`` to ``target``: up the
        cascade to their nearest common hub, then down; never sideways."""
        up = [source]
        while (parent := self.all_platforms[up[-1]].parent) is not None and up[-1] != target:
            up.append(parent)
        down = [target]
        while down[-1] not in up:
            parent = self.all_platforms[down[-1]].parent
            if parent is None:
                raise ValueError(f"platforms {source!r} and {target!r} share no hub")
            down.append(parent)
        return (*up[: up.index(down[-1]) + 1], *reversed(down[:-1]))

    def subscription_path(self, subscription: Subscription) -> tuple[str, ...]:
        """The hubs a subscription's records cross, from the provider's to the consumer's."""
        entry = self.entries[subscription.entry]
        return self.path(self.platform_of(entry.provider), self.platform_of(subscription.consumer))

    @cached_property
    def hubs_in_use(self) -> tuple[str, ...]:
        """Platforms some record crosses (each needs a router), in declaration order."""
        used: set[str] = set()
        used.update(self.platform_of(self.entries[e].provider) for e in self.live_entries)
        for sub in self.subscriptions:
            used.update(self.subscription_path(sub))
        return tuple(p for p in self.all_platforms if p in used)

    def runtime_json(self) -> str:
        """The scenario as the run's processes need it: dormant entries left out.

        A provincial catalogue registers thousands of resources that carry no record; each
        process would spend a second parsing them. Read it back with :meth:`from_runtime_json`.
        """
        data = self.model_dump(mode="json")
        data["catalogue"] = [e for e in data["catalogue"] if e["id"] in self.live_entries]
        return Scenario.model_validate(data, context={"skip_references": True}).model_dump_json()

    @classmethod
    def from_runtime_json(cls, data: bytes | str) -> Scenario:
        """A scenario the controller has validated whole: references are not checked again
        (a dormant entry a negative list names, for one, is no longer there)."""
        return cls.model_validate_json(data, context={"skip_references": True})

    @cached_property
    def live_entries(self) -> frozenset[str]:
        """Entries some record can flow on: published under load or by a reaction, subscribed,
        or a source of truth (一数一源) for others. The rest are registered but dormant (most of
        a real catalogue) and need no topic."""
        sources = {e.id for e in self.catalogue if any(i.authoritative for i in e.items)}
        return frozenset(self.entry_rates()) | {r.publish for r in self.reactions} | set(self.subscriptions_by_entry) | sources

    @cached_property
    def gateway_ids(self) -> dict[str, Gateway]:
        return {g.id: g for g in self.gateways}

    def gateway_of(self, department: str) -> Gateway | None:
        gateway = self.department_ids[department].gateway
        return self.gateway_ids.get(gateway) if gateway else None

    @cached_property
    def authority(self) -> dict[str, str]:
        """一数一源: item key → its authoritative source department."""
        return {i.key: e.provider for e in self.catalogue for i in e.items if i.authoritative}

    def copied_items(self, entry: str) -> dict[str, str]:
        """一数一源: the items of catalogue entry ``entry`` its provider holds a copy of, each
        mapped to its authoritative source department (another one), in the entry's item
        order; empty when the provider is the source of all it publishes. KeyError for an
        unknown entry."""
        authority, found = self.authority, self.entries[entry]
        return {i.key: authority[i.key] for i in found.items if i.key in authority and authority[i.key] != found.provider}

    def fanout(self) -> dict[str, int]:
        """Outcomes one record of each catalogue entry accounts for (entry id → count): one
        per subscription, or one denial (no_subscriber) when nobody subscribes. A record
        produced is accounted when that many outcomes (delivered, denied, dead-lettered)
        are counted for it."""
        subs = self.subscriptions_by_entry
        return {e.id: max(1, len(subs.get(e.id, ()))) for e in self.catalogue}

    @cached_property
    def negative_items(self) -> frozenset[str]:
        return frozenset(self.negative_list.items)

    @cached_property
    def department_ids(self) -> dict[str, Department]:
        return {d.id: d for d in self.departments}

    @cached_property
    def subscriptions_by_entry(self) -> dict[str, tuple[Subscription, ...]]:
        out: dict[str, list[Subscription]] = {}
        for sub in self.subscriptions:
            out.setdefault(sub.entry, []).append(sub)
        return {k: tuple(v) for k, v in out.items()}

    def entry_profiles(self) -> dict[str, LoadProfile]:
        """The load profile of each entry a producer with a profile publishes."""
        out: dict[str, LoadProfile] = {}
        for load in self.load.producers:
            if load.profile is not None:
                for entry_id in load.entries or (e.id for e in self.catalogue if e.provider == load.department):
                    out[entry_id] = load.profile
        return out

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


def did_you_mean(written: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a misspelt id or value, or "";
    the validator's messages (exchange/scenarios/loader.py) use it too."""
    close = difflib.get_close_matches(written, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reference_errors(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Cross-reference problems, each with the path of the field at fault."""
    errors: list[tuple[Loc, str]] = []
    _no_duplicates("departments", [d.id for d in scenario.departments], errors)
    _no_duplicates("catalogue", [e.id for e in scenario.catalogue], errors)
    _no_duplicates("gateways", [g.id for g in scenario.gateways], errors)
    _no_duplicates("subscriptions", [s.id for s in scenario.subscriptions], errors, field="entry")
    depts = {d.id for d in scenario.departments}
    entries: dict[str, CatalogueEntry] = {}
    for e in scenario.catalogue:  # a duplicate id is reported above; the checks below use the first
        entries.setdefault(e.id, e)
    entry: CatalogueEntry | None  # each loop below names its entry so
    for n, entry in enumerate(scenario.catalogue):
        seen: set[str] = set()
        for k, item in enumerate(entry.items):  # checked here, at the item, so the entry stays in the other checks
            if item.key in seen:
                errors.append((("catalogue", n, "items", k, "key"), f"item {item.key!r} appears twice in entry {entry.id!r}"))
            seen.add(item.key)
        if entry.provider not in depts:
            errors.append(
                (
                    ("catalogue", n, "provider"),
                    f"entry {entry.id!r}: provider {entry.provider!r} is not a department{did_you_mean(entry.provider, depts)}",
                )
            )
    for n, sub in enumerate(scenario.subscriptions):
        where = f"subscription of {sub.consumer!r} to {sub.entry!r}"
        if sub.consumer not in depts:
            errors.append(
                (("subscriptions", n, "consumer"), f"{where}: consumer {sub.consumer!r} is not a department{did_you_mean(sub.consumer, depts)}")
            )
        entry = entries.get(sub.entry)
        if entry is None:
            errors.append((("subscriptions", n, "entry"), f"{where}: entry {sub.entry!r} is not in the catalogue{did_you_mean(sub.entry, entries)}"))
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
    errors.extend(_platform_errors(scenario))
    subs = {(s.consumer, s.entry) for s in scenario.subscriptions}
    for n, r in enumerate(scenario.reactions):
        where = f"reaction of {r.department!r} to {r.on!r}"
        if (r.department, r.on) not in subs:
            errors.append((("reactions", n, "on"), f"{where}: {r.department!r} has no subscription to {r.on!r}"))
        published = scenario.entries.get(r.publish)
        if published is None or published.provider != r.department:
            errors.append((("reactions", n, "publish"), f"{where}: {r.publish!r} is not an entry {r.department!r} provides"))
        elif published.master_key_item is None:
            errors.append((("reactions", n, "publish"), f"{where}: {r.publish!r} has no master key to react with"))
    for n, w in enumerate(scenario.workflows):
        for k, entry_id in enumerate((w.start, *w.steps)):
            if entry_id not in scenario.entries:
                loc = ("workflows", n, "start") if k == 0 else ("workflows", n, "steps", k - 1)
                errors.append((loc, f"workflow {w.name!r}: {entry_id!r} is not in the catalogue{did_you_mean(entry_id, entries)}"))
    errors.extend(_catalogue_rule_errors(scenario))
    errors.extend(topic_errors(scenario))
    for n, load in enumerate(scenario.load.producers):
        if load.department not in depts:
            errors.append(
                (("load", "producers", n, "department"), f"producer {load.department!r} is not a department{did_you_mean(load.department, depts)}")
            )
        elif load.entries is None and not any(e.provider == load.department for e in scenario.catalogue):
            # an entry whose unknown provider is a near miss of this department: most likely the cause
            misspelt = [e for e in scenario.catalogue if e.provider not in depts and did_you_mean(e.provider, {load.department})]
            why = f" (entry {misspelt[0].id!r} names provider {misspelt[0].provider!r}: {load.department!r} misspelt?)" if misspelt else ""
            errors.append(
                (
                    ("load", "producers", n, "department"),
                    (f"producer {load.department!r} provides no entry of the catalogue, so it has nothing to publish{why}"),
                )
            )
        for k, entry_id in enumerate(load.entries or ()):
            entry = entries.get(entry_id)
            if entry is None:
                errors.append(
                    (("load", "producers", n, "entries", k), f"producer {load.department!r} names entry {entry_id!r}, not in the catalogue")
                )
            elif entry.provider != load.department:
                errors.append(
                    (
                        ("load", "producers", n, "entries", k),
                        f"producer {load.department!r} cannot publish entry {entry_id!r}: its provider is {entry.provider!r}",
                    )
                )
    return errors


def region_problem(code: str) -> str | None:
    """None for a real division code (any level, see schemas/regions.py), else the problem
    with the nearest real codes as a hint: 'region code 441900130 does not exist (nearest:
    441900129 广东省东莞市高埗镇, …)'."""
    from schemas import regions  # the table loads on first use (~0.3 s), so only when checked

    if regions.exists(code):
        return None
    hint = ", ".join(f"{r.code} {r.full_name}" for r in regions.nearest(code))
    return f"region code {code} does not exist" + (f" (nearest: {hint})" if hint else "")


def _platform_errors(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Platform ids, parents (no cycles), region codes, departments' platforms, reachability."""
    errors: list[tuple[Loc, str]] = []
    platforms = scenario.all_platforms
    for n, p in enumerate(scenario.platforms):
        if p.id in {q.id for q in scenario.platforms[:n]} or p.id == scenario.platform.id:
            errors.append((("platforms", n, "id"), f"duplicate platform id {p.id!r}"))
    for loc, p in [(("platform",), scenario.platform)] + [(("platforms", n), p) for n, p in enumerate(scenario.platforms)]:
        if p.parent is not None and p.parent not in platforms:
            errors.append(((*loc, "parent"), f"platform {p.id!r}: parent {p.parent!r} is not a platform"))
        if (problem := region_problem(p.region)) is not None:
            errors.append(((*loc, "region"), f"platform {p.id!r}: {problem}"))
        for k, entry_id in enumerate(p.negative_list.entries):
            if entry_id not in scenario.entries:
                errors.append(
                    ((*loc, "negative_list", "entries", k), f"platform {p.id!r}: negative list names entry {entry_id!r}, not in the catalogue")
                )
        seen, cur = {p.id}, p
        while cur.parent is not None and cur.parent in platforms:
            if cur.parent in seen:
                errors.append(((*loc, "parent"), f"platform {p.id!r}: its parents form a cycle ({' → '.join([*seen, cur.parent])})"))
                break
            seen.add(cur.parent)
            cur = platforms[cur.parent]
    from schemas import regions

    for n, d in enumerate(scenario.departments):
        if d.region is not None and (problem := region_problem(d.region)) is not None:
            errors.append((("departments", n, "region"), f"department {d.id!r}: {problem}"))
        # rows are filtered to a region only inside the platform's: outside it, it would get every row
        elif (
            d.region is not None
            and (hub := platforms.get(d.platform or scenario.platform.id)) is not None
            and region_problem(hub.region) is None
            and not regions.contains(hub.region, d.region)
        ):
            errors.append(
                (
                    ("departments", n, "region"),
                    f"department {d.id!r}: region {d.region} is outside the region of its platform {hub.id!r} ({hub.region})",
                )
            )
        if d.platform is not None and d.platform not in platforms:
            errors.append((("departments", n, "platform"), f"department {d.id!r}: platform {d.platform!r} is not a platform"))
        if d.gateway is not None and d.gateway not in scenario.gateway_ids:
            errors.append((("departments", n, "gateway"), f"department {d.id!r}: gateway {d.gateway!r} is not a gateway"))
    for n, code in enumerate(scenario.load.regions or ()):
        if (problem := region_problem(code)) is not None:
            errors.append((("load", "regions", n), problem))
    if errors:
        return errors
    depts = scenario.department_ids
    for n, sub in enumerate(scenario.subscriptions):
        entry = scenario.entries.get(sub.entry)
        if entry is None or sub.consumer not in depts or entry.provider not in depts:
            continue
        mine, theirs = scenario.platform_of(sub.consumer), scenario.platform_of(entry.provider)
        if scenario.root_of(mine) != scenario.root_of(theirs):
            errors.append(
                (
                    ("subscriptions", n, "entry"),
                    (
                        f"subscription of {sub.consumer!r} to {sub.entry!r}: the entry is on platform {theirs!r}, "
                        f"which no hub path connects to {sub.consumer!r}'s platform {mine!r}"
                    ),
                )
            )
    return errors


def _catalogue_rule_errors(scenario: Scenario) -> list[tuple[Loc, str]]:
    """One authority per item; negative list and responsibility list consistent."""
    errors: list[tuple[Loc, str]] = []
    authority: dict[str, str] = {}
    item: DataItem | str  # the catalogue's items, then the negative list's item keys
    for n, entry in enumerate(scenario.catalogue):
        for k, item in enumerate(entry.items):
            if not item.authoritative:
                continue
            claimed = authority.setdefault(item.key, entry.provider)
            if claimed != entry.provider:
                errors.append(
                    (
                        ("catalogue", n, "items", k, "authoritative"),
                        (
                            f"item {item.key!r}: {entry.provider!r} and {claimed!r} both claim to be its authoritative source; "
                            "one number, one source (一数一源) allows one"
                        ),
                    )
                )
    all_items = {i.key for e in scenario.catalogue for i in e.items}
    negative = scenario.negative_list
    for k, entry_id in enumerate(negative.entries):
        if entry_id not in scenario.entries:
            errors.append((("negative_list", "entries", k), f"negative list names entry {entry_id!r}, not in the catalogue"))
    for k, item in enumerate(negative.items):
        if item not in all_items:
            errors.append((("negative_list", "items", k), f"negative list names item {item!r}, which no entry has"))
    banned = set(negative.items)
    for n, sub in enumerate(scenario.subscriptions):
        for field in ("items", "unmasked"):
            listed = sorted(set(getattr(sub, field) or ()) & banned)
            if listed:
                errors.append(
                    (
                        ("subscriptions", n, field),
                        (f"subscription of {sub.consumer!r} to {sub.entry!r} asks for {listed}, on the negative list (负面清单)"),
                    )
                )
    for n, duty in enumerate(scenario.responsibilities):
        if duty.department not in scenario.department_ids:
            errors.append((("responsibilities", n, "department"), f"{duty.department!r} is not a department"))
            continue
        provided = {i.key for e in scenario.catalogue if e.provider == duty.department for i in e.items}
        missing = [i for i in duty.items if i not in provided]
        if missing:
            errors.append(
                (("responsibilities", n, "items"), (f"{duty.department!r} is responsible for {missing} (责任清单) but provides no entry with them"))
            )
    return errors


def topic_errors(scenario: Scenario) -> list[tuple[Loc, str]]:
    """The ingress topic names the ``topics`` setting gives: valid Kafka names, one unit of one
    hub each, and none taken by the exchange's other topics (delivery, audit, dead letters…)."""
    from schemas.envelope import Topics  # envelope names the other topics; it imports nothing of this module at run time

    setting = scenario.topics
    loc: Loc = ("topics", "name") if setting.name is not None else ("topics", "layout")
    hubs = list(scenario.all_platforms)
    reserved: dict[str, str] = {}
    for hub in hubs:
        t = Topics(hub)
        for kind in ("audit", "dead_letter", "quality", "control", "verdicts", "transit"):
            reserved[getattr(t, kind)] = f"the {kind.replace('_', '-')} topic of hub {hub!r}"
    for d in scenario.departments:
        reserved[Topics(scenario.platform_of(d.id)).delivery(d.id)] = f"the delivery topic of department {d.id!r}"
    owner: dict[str, tuple[str, str]] = {}  # topic → (hub, unit)
    for entry in scenario.catalogue:
        hub = scenario.platform_of(entry.provider) if entry.provider in scenario.department_ids else scenario.platform.id
        unit = setting.unit_of(entry)
        topic = setting.topic_of(entry, hub)
        key = LAYOUT_KEYS[setting.layout]
        if len(topic) > MAX_TOPIC_NAME:
            return [(loc, f"ingress topic {topic[:60]!r}… of {key} {unit!r} is {len(topic)} characters long; Kafka allows {MAX_TOPIC_NAME}")]
        if topic in reserved:
            return [(loc, f"ingress topic {topic!r} of {key} {unit!r} would be {reserved[topic]}; choose another topic name template")]
        other = owner.setdefault(topic, (hub, unit))
        if other != (hub, unit):
            fix = "add {hub} to the topic name template" if other[0] != hub else "choose another topic name template"
            return [(loc, f"{key}s {other[1]!r} (hub {other[0]!r}) and {unit!r} (hub {hub!r}) would share ingress topic {topic!r}; {fix}")]
    return []


def _no_duplicates(section: str, ids: list[str], errors: list[tuple[Loc, str]], field: str = "id") -> None:
    seen: set[str] = set()
    for n, i in enumerate(ids):
        if i in seen:
            errors.append(((section, n, field), f"duplicate id {i!r} in {section}"))
        seen.add(i)
