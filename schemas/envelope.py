"""The wire format of records on the exchange: headers, values and topic names.

A record's value is a flat JSON object of data items keyed by semantic key; everything
about the record (who sent it, for which entry, when it was meant to be sent) travels in
Kafka headers, so the router can decide without decoding the value twice and consumers
can measure latency without decoding it at all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field

from schemas.outcomes import AUDITED_DECISIONS, Decision

if TYPE_CHECKING:
    from schemas.scenario import Scenario

SCHEMA_VERSION = b"1"

# Header names (bytes, as aiokafka carries them).
H_TRACE = "trace-id"  # "<producer>.<seq>": unique per produced record, used to drop duplicates
H_ENTRY = "entry-id"  # the catalogue entry; on a topic several entries share, the router routes by it
H_SOURCE = "source-dept"
H_INTENDED = "intended-ns"  # the rate schedule's send time, epoch ns (no coordinated omission)
H_SENT = "sent-ns"  # when the producer handed it to the client, epoch ns
H_SCHEMA = "schema-version"
H_ORIGIN = "origin-ns"  # reactions: the intended send time of the record that started the process
H_RUN = "run-id"  # which run published it: a shared cluster keeps records of earlier runs
H_SUBSCRIPTION = "subscription"  # set by the router on deliveries
H_ROUTED = "routed-ns"  # set by the router on deliveries
H_HOPS = "hops"  # "<hub>:<in ns>:<out ns>" per hub crossed, ";"-separated: when each took the record in and let it out

HOP_PRODUCER, HOP_CONSUMER = "producer", "consumer"  # the ends of a hub path's segments


def hop_link(a: str, b: str) -> str:
    """The segment between two stops of a hub path (``gy → gz``); a hub's own segment is its id."""
    return f"{a} → {b}"


def hop_segments(path: tuple[str, ...] | list[str]) -> list[str]:
    """Every segment a delivery along ``path`` splits into, in order."""
    names, previous = [], HOP_PRODUCER
    for hub in path:
        names += [hop_link(previous, hub), hub]
        previous = hub
    return [*names, hop_link(previous, HOP_CONSUMER)]


REQUIRED_HEADERS = (H_TRACE, H_ENTRY, H_SOURCE, H_INTENDED, H_SENT, H_SCHEMA)
PAD_FIELD = "_pad"  # filler to reach the scenario's record size; never delivered


class IngressLayout:
    """Which ingress topic each catalogue entry is published on: a scenario's ``topics`` setting
    (:class:`~schemas.scenario.IngressTopics`) applied to its catalogue.

    ``topic_of``: entry id → topic, for every entry of the catalogue; ``entries_on``: topic →
    the ``live`` entries on it (default: the scenario's, see ``Scenario.live_entries``), in
    catalogue order; ``hub_of``: topic → its platform; ``partitions``: topic → partitions.
    Only live entries count (a dormant entry has no topic of its own, and the processes of a
    run see only live entries), so the controller and every process agree. A shared topic has the
    setting's ``partitions``, else the most any of its live entries has: its busiest entry
    keeps the parallelism it asked for, and quiet entries add no partitions (a sum would
    bring back the per-entry count the layout exists to avoid). Records keep their master
    key as the Kafka key, so one key's records stay on one partition, in order.
    """

    def __init__(self, scenario: Scenario, live: Collection[str] | None = None) -> None:
        setting = scenario.topics
        live = scenario.live_entries if live is None else live
        self.layout = setting.layout.value
        self.topic_of: dict[str, str] = {}
        self.hub_of: dict[str, str] = {}
        entries_on: dict[str, list[str]] = {}
        for entry in scenario.catalogue:
            hub = scenario.platform_of(entry.provider)
            topic = self.topic_of[entry.id] = setting.topic_of(entry, hub)
            if entry.id in live:
                self.hub_of[topic] = hub
                entries_on.setdefault(topic, []).append(entry.id)
        self.entries_on = {t: tuple(es) for t, es in entries_on.items()}
        self.partitions: dict[str, int] = {}
        for entry in scenario.catalogue:
            if entry.id in live:
                topic = self.topic_of[entry.id]
                own = entry.partitions if setting.partitions is None or not self.shared(topic) else setting.partitions
                self.partitions[topic] = max(self.partitions.get(topic, 0), own)

    def shared(self, topic: str) -> bool:
        """Whether several entries publish on ``topic`` (the router then reads the entry from the ``entry-id`` header)."""
        return len(self.entries_on.get(topic, ())) > 1


class Topics:
    """Topic names for one platform: ``dx.<platform>.<kind>[.<id>]``.

    One ingress topic per catalogue entry (``dx.dg.in.gps-fix``) unless the scenario's
    ``topics`` setting cuts them otherwise (``layout``, an :class:`IngressLayout`: per
    department, mode or sensitivity class), one delivery topic per subscribing department
    (``dx.dg.out.urban``), and per platform an audit topic, a dead-letter topic, a quality
    topic, a control topic and its verdict topic (the router's answer to each control
    event) and, in a cascade, a transit topic where neighbouring hubs hand it records on
    their way up or down (``dx.gz.transit``).
    """

    def __init__(self, platform: str, layout: IngressLayout | None = None) -> None:
        self.platform = platform
        self.prefix = f"dx.{platform}"
        self.audit = f"{self.prefix}.audit"
        self.dead_letter = f"{self.prefix}.dlq"
        self.quality = f"{self.prefix}.quality"
        self.control = f"{self.prefix}.control"
        self.verdicts = f"{self.prefix}.verdicts"  # the router's answer to each control event
        self.transit = f"{self.prefix}.transit"
        self._ingress = f"{self.prefix}.in."
        self._delivery = f"{self.prefix}.out."
        self.layout = layout

    @classmethod
    def of(cls, scenario: Scenario, platform: str | None = None, layout: IngressLayout | None = None) -> Topics:
        """The topics of ``platform`` (default: the main one) under the scenario's ingress layout."""
        return cls(platform or scenario.platform.id, layout or IngressLayout(scenario))

    def ingress(self, entry_id: str) -> str:
        """The ingress topic of catalogue entry ``entry_id`` (an entry the layout does not know: per-entry's name)."""
        if self.layout is not None:
            found = self.layout.topic_of.get(entry_id)
            if found is not None:
                return found
        return self._ingress + entry_id

    def delivery(self, department_id: str) -> str:
        return self._delivery + department_id

    def entry_of(self, topic: str) -> str | None:
        """The one entry published on ingress topic ``topic`` of this hub; None for a shared
        topic (see :meth:`shared_entries`) and any other topic."""
        if self.layout is None:
            return topic[len(self._ingress) :] if topic.startswith(self._ingress) else None
        entries = self.layout.entries_on.get(topic)
        return entries[0] if entries is not None and len(entries) == 1 and self.layout.hub_of[topic] == self.platform else None

    def shared_entries(self, topic: str) -> tuple[str, ...]:
        """The entries several of which share ingress topic ``topic`` of this hub; empty for any other topic."""
        if self.layout is None or self.layout.hub_of.get(topic) != self.platform:
            return ()
        entries = self.layout.entries_on.get(topic, ())
        return entries if len(entries) > 1 else ()

    def department_of(self, topic: str) -> str | None:
        return topic[len(self._delivery) :] if topic.startswith(self._delivery) else None


def record_headers(
    trace: bytes, entry: str, source: str, intended_ns: int, sent_ns: int, run: str, origin_ns: bytes | None = None
) -> list[tuple[str, bytes]]:
    """The headers every ingress record carries (the producers build the same list inline,
    with the constant part prebuilt, on their hot path)."""
    headers = [
        (H_TRACE, trace),
        (H_ENTRY, entry.encode()),
        (H_SOURCE, source.encode()),
        (H_INTENDED, b"%d" % intended_ns),
        (H_SENT, b"%d" % sent_ns),
        (H_SCHEMA, SCHEMA_VERSION),
        (H_RUN, run.encode()),
    ]
    if origin_ns is not None:
        headers.append((H_ORIGIN, origin_ns))
    return headers


def trace_id(producer: int, seq: int) -> bytes:
    return b"%d.%d" % (producer, seq)


def parse_trace_id(value: bytes) -> tuple[int, int] | None:
    """(producer, seq) from a trace id, or None when it is not one of ours.

    Ours are two decimal numbers below 10**18 (they fit Kafka's int64); longer digit runs
    are not ours (and ``int()`` refuses more than 4,300 digits).
    """
    head, sep, tail = value.partition(b".")
    if not sep or not head.isdigit() or not tail.isdigit() or len(head) > 18 or len(tail) > 18:
        return None
    return int(head), int(tail)


RoutingDecision = Literal[Decision.delivered, Decision.denied, Decision.forwarded]


class AuditRecord(BaseModel):
    """One decision of the router about one record for one subscription (全程留痕)."""

    model_config = ConfigDict(extra="forbid")

    trace: str = Field(description="trace id of the record decided on")
    run: str = Field(description="run id of the record")
    source: str = Field(description="department that published the record")
    at_ns: int = Field(description="router decision time, epoch ns")
    entry: str
    consumer: str | list[str] | None = Field(
        description="subscribing department; a list when one rule denied the record to several at once; None when no one subscribes"
    )
    subscription: str | list[str] | None
    decision: RoutingDecision = Field(
        description="delivered (to the consumer, by its own hub), denied, or forwarded (handed to the next hub of a cascade)"
    )
    reason: str = Field(description="rule that decided (schemas/outcomes.py): a DeliveryReason or a DenialReason")
    items: list[str] = Field(default_factory=list, description="items delivered (empty when denied)")
    masked: list[str] = Field(default_factory=list, description="items delivered masked")


AUDIT_FIELDS = tuple(AuditRecord.model_fields)
assert tuple(get_args(RoutingDecision)) == AUDITED_DECISIONS  # one source: schemas/outcomes.py


class AuditDecision(NamedTuple):
    """The part of an audit row the compiled policy knows before any record arrives.

    Fields are :data:`AUDIT_FIELDS` ``entry`` to ``reason``; a compiled route, transit
    route or denied group holds one, and the router splices it into each row
    (``(trace, run, source, at_ns, *decision, items, masked)``).
    """

    entry: str
    consumer: str | list[str] | None  # a list when one rule denies the record to several consumers at once
    subscription: str | list[str] | None  # likewise; None when nobody subscribes to the entry
    decision: str  # a Decision (routing rows) or an approval state (control-plane rows)
    reason: str  # a DeliveryReason or DenialReason (routing rows), free text (control-plane rows)


class AuditRow(NamedTuple):
    """One row of an audit block, in :data:`AUDIT_FIELDS` order (what :class:`AuditRecord` describes).

    ``orjson`` does not encode a NamedTuple, so the router's hot path builds rows as plain
    tuples in this order, and :class:`~exchange.policy.audit.AuditWriter` encodes an
    ``AuditRow`` as the plain tuple it is: the bytes, and so the chain's hashes, are the same.
    """

    trace: str  # trace id of the record decided on (the application id on a control-plane row)
    run: str
    source: str  # publishing department (the actor on a control-plane row)
    at_ns: int  # decision time, epoch ns
    entry: str
    consumer: str | list[str] | None
    subscription: str | list[str] | None
    decision: str
    reason: str
    items: Any  # a tuple or list of item keys delivered (empty when denied)
    masked: Any  # a tuple or list of item keys delivered masked


assert AuditRow._fields == AUDIT_FIELDS, "AuditRow must follow AuditRecord's fields"
assert AuditRow._fields[4:9] == AuditDecision._fields


def audit_rows(block: dict) -> list[AuditRow]:
    """The rows of a decoded audit message as :class:`AuditRow` (columns matched by name)."""
    at = [block["fields"].index(f) for f in AUDIT_FIELDS]
    return [AuditRow._make(row[i] for i in at) for row in block["rows"]]


def audit_records(block: dict) -> list[dict]:
    """The rows of a decoded audit message as one dict per decision (the fast path)."""
    fields = block["fields"]
    return [dict(zip(fields, row, strict=True)) for row in block["rows"]]


class DeadLetter(BaseModel):
    """A record the router could not route, kept whole with the reason (nothing is lost)."""

    model_config = ConfigDict(extra="forbid")

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    trace: str | None = None
    entry: str | None = None
    subscription: str | None = Field(
        default=None, description="set when a hub of a cascade refused a record in transit (it carried this one subscription)"
    )
    last_offset: int | None = Field(
        default=None, description="set when the letter stands for a fetched batch that cannot be decoded: its offsets run from offset to last_offset"
    )
    records: int | None = Field(default=None, description="records an undecodable batch's letter stands for (from the batch header)")
    value_b64: str = Field(description="the original value bytes, base64 (for an undecodable batch: the batch as fetched, up to 1 MiB)")
    headers: list[tuple[str, str]] = Field(description="original headers, values base64")
    at_ns: int
