"""The sharing rules as pure functions: what may a record become for each subscriber?

No Kafka, no I/O: the router adapters decode a record, ask :func:`decide`, and encode
what comes back. Everything that depends only on the scenario (which items a subscription
gets, which are masked, whose jurisdiction filters rows) is compiled once into an
:class:`EntryPolicy`, so the per-record cost does not grow with the catalogue.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from exchange.policy.masking import apply_mask
from schemas.envelope import PAD_FIELD, AuditDecision, Topics
from schemas.keys import normalise_key
from schemas.outcomes import DeadLetterReason, Decision, DeliveryReason, DenialReason, Reason
from schemas.regions import contains as region_contains
from schemas.regions import jurisdiction_prefix
from schemas.scenario import CatalogueEntry, ItemType, MaskRule, Scenario, Sharing, Subscription, SubscriptionStatus

MAX_ITEM_CHARS = 65_536  # no data item of a catalogue is longer; anything bigger is an attack or a bug

# Exact types as decoded from JSON (never bool for a number; null always allowed).
_NONE: type = type(None)
_STRING: frozenset[type] = frozenset({str, _NONE})
_NUMBER: frozenset[type] = frozenset({int, float, _NONE})
_PYTHON_TYPES: dict[ItemType, frozenset[type]] = {
    ItemType.latitude: _NUMBER,
    ItemType.longitude: _NUMBER,
    ItemType.decimal: _NUMBER,
    ItemType.integer: frozenset({int, _NONE}),
}
_ANY_STRING: frozenset[type] = frozenset({str})  # the padding field: any length


@dataclass(frozen=True, slots=True)
class Route:
    """One subscription on one entry, compiled."""

    subscription: str
    consumer: str
    topic: str
    approved: bool  # the scenario's status; live approvals override it
    items: tuple[str, ...]
    masks: tuple[tuple[str, MaskRule], ...]
    region: str | None  # the consumer's jurisdiction when narrower than the platform's
    region_prefix: str = ""  # every region inside ``region`` starts with it
    # Precomputed for the per-record path:
    subscription_bytes: bytes = b""
    masked: tuple[str, ...] = ()
    delivered_audit: AuditDecision | None = None  # decision delivered (its consumer's hub) or forwarded (the next hub)
    decision_key: tuple[str, Decision, DeliveryReason] | None = None  # (subscription, decision, reason): what a delivery is counted under


@dataclass(frozen=True, slots=True)
class TransitRoute:
    """One subscription crossing this hub of a cascade, compiled: where it goes next."""

    subscription: str
    consumer: str
    entry: str
    topic: str  # the consumer's delivery topic on this hub, or the next hub's transit topic
    final: bool  # this hub is the consumer's own
    denied: DenialReason | None  # this hub's rule refusing it (its negative list)
    audit: AuditDecision


@dataclass(frozen=True, slots=True)
class Authority:
    """一数一源 for one entry: which of its items it is the source of, which it copies."""

    master_key: str  # item whose value keys the authoritative store
    master_type: str  # its item type: the standard its values are normalised by (schemas/keys.py)
    own: tuple[str, ...]  # items the entry's provider is authoritative for
    copies: tuple[tuple[str, str], ...]  # (item, authoritative department) held by someone else


@dataclass(frozen=True, slots=True)
class EntryPolicy:
    """One catalogue entry compiled for one hub: its routes (one per subscription crossing the
    hub), the JSON types each item accepts, the item holding the record's region (row
    filters), the authority when it is a source of a one-number-one-source item, and whether
    the platform's negative list names it."""

    entry_id: str
    provider: str
    sharing: Sharing
    routes: tuple[Route, ...]
    item_types: Mapping[str, frozenset[type]]
    region_key: str | None
    authority: Authority | None = None
    negative_listed: bool = False


class Outcome(NamedTuple):
    """One record's outcome for one route: delivered or not, the reason (an audit reason), and
    the value to deliver (masked, narrowed to the approved items) when delivered."""

    route: Route | None
    delivered: bool
    reason: Reason
    value: dict[str, Any] | None = None


class InvalidRecord(ValueError):
    """A record that does not fit its catalogue entry; the router dead-letters it."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def delivery_reason(sharing: Sharing) -> DeliveryReason:
    """Why a record of an entry shared as ``sharing`` is delivered when it is: approved
    (有条件共享, an approval in force) or unconditional (无条件共享)."""
    return DeliveryReason.approved if sharing is Sharing.conditional else DeliveryReason.unconditional


def compile_policy(scenario: Scenario, topics: Topics, platform: str | None = None, entries: Collection[str] | None = None) -> dict[str, EntryPolicy]:
    """Compile the rules of every entry published on ``platform`` (the main one by
    default) once, before any record arrives; entry id → its policy. ``entries``
    restricts it to those entries (the live ones, say: most of a real catalogue is
    dormant); KeyError for one that is not in the catalogue."""
    platform = platform or scenario.platform.id
    subs = scenario.subscriptions_by_entry
    hub = scenario.all_platforms[platform]
    negative_entries = set(scenario.negative_list.entries) | set(hub.negative_list.entries)
    return {
        entry.id: _compile_entry(scenario, entry, subs.get(entry.id, ()), topics, _authority(entry, scenario.authority), entry.id in negative_entries)
        for entry in (scenario.catalogue if entries is None else [scenario.entries[e] for e in entries])
        if scenario.platform_of(entry.provider) == platform
    }


def compile_transit(scenario: Scenario, platform: str) -> dict[bytes, TransitRoute]:
    """The subscriptions whose records cross ``platform`` from another hub, by id."""
    hub = scenario.all_platforms[platform]
    out: dict[bytes, TransitRoute] = {}
    for sub in scenario.subscriptions:
        path = scenario.subscription_path(sub)
        if platform not in path[1:]:
            continue
        at = path.index(platform)
        final = at == len(path) - 1
        entry = scenario.entries[sub.entry]
        denied = DenialReason.hub_negative_list if entry.id in hub.negative_list.entries else None
        if denied:
            audit = AuditDecision(entry.id, sub.consumer, sub.id, Decision.denied, denied)
        else:
            reason = delivery_reason(entry.sharing) if final else DeliveryReason.relayed
            audit = AuditDecision(entry.id, sub.consumer, sub.id, Decision.delivered if final else Decision.forwarded, reason)
        out[sub.id.encode()] = TransitRoute(
            subscription=sub.id,
            consumer=sub.consumer,
            entry=entry.id,
            topic=Topics(platform).delivery(sub.consumer) if final else Topics(path[at + 1]).transit,
            final=final,
            denied=denied,
            audit=audit,
        )
    return out


def _authority(entry: CatalogueEntry, authority: Mapping[str, str]) -> Authority | None:
    master = entry.master_key_item
    governed = [i for i in entry.items if i.key in authority and i is not master]
    if master is None or not governed:
        return None
    own = tuple(i.key for i in governed if authority[i.key] == entry.provider)
    copies = tuple((i.key, authority[i.key]) for i in governed if authority[i.key] != entry.provider)
    return Authority(master.key, master.type.value, own, copies)


def _compile_entry(
    scenario: Scenario,
    entry: CatalogueEntry,
    subs: Iterable[Subscription],
    topics: Topics,
    authority: Authority | None = None,
    negative_listed: bool = False,
) -> EntryPolicy:
    routes = []
    region_key = entry.region_item.key if entry.region_item else None
    platforms = scenario.all_platforms
    depts = scenario.department_ids
    # rows are filtered for a consumer whose jurisdiction is narrower than the provider's (a
    # department's own region, else its hub's): a city bureau reading its own city's entry
    # gets all of it, on the city's hub or on the province's
    platform_region = depts[entry.provider].region or platforms[scenario.platform_of(entry.provider)].region
    for sub in subs:
        path = scenario.subscription_path(sub)
        # the scenario's negative items, and those of every hub the records will cross
        banned = scenario.negative_items.union(*(platforms[p].negative_list.items for p in path))
        wanted = (set(sub.items) if sub.items is not None else set(entry.item_keys)) - banned
        items = tuple(i.key for i in entry.items if i.key in wanted)
        clear = set(sub.unmasked)
        masks = tuple(
            (i.key, i.effective_mask) for i in entry.items if i.key in wanted and i.effective_mask is not MaskRule.none and i.key not in clear
        )
        consumer_region = depts[sub.consumer].region or platforms[scenario.platform_of(sub.consumer)].region
        narrower = consumer_region != platform_region and region_contains(platform_region, consumer_region)
        local = len(path) == 1
        decision = Decision.delivered if local else Decision.forwarded
        reason = delivery_reason(entry.sharing)
        routes.append(
            Route(
                subscription=sub.id,
                consumer=sub.consumer,
                topic=topics.delivery(sub.consumer) if local else Topics(path[1]).transit,
                approved=sub.status is SubscriptionStatus.approved,
                items=items,
                masks=masks,
                region=consumer_region if narrower and region_key else None,
                region_prefix=jurisdiction_prefix(consumer_region),
                subscription_bytes=sub.id.encode(),
                masked=tuple(k for k, _ in masks),
                delivered_audit=AuditDecision(entry.id, sub.consumer, sub.id, decision, reason),
                decision_key=(sub.id, decision, reason),
            )
        )
    return EntryPolicy(
        entry_id=entry.id,
        provider=entry.provider,
        sharing=entry.sharing,
        routes=tuple(routes),
        item_types={PAD_FIELD: _ANY_STRING} | {i.key: _PYTHON_TYPES.get(i.type, _STRING) for i in entry.items},
        region_key=region_key,
        authority=authority,
        negative_listed=negative_listed,
    )


def check_record(policy: EntryPolicy, record: object) -> dict[str, Any]:
    """The record as a dict of the entry's items, or :class:`InvalidRecord` saying why not."""
    if not isinstance(record, dict):
        raise InvalidRecord(DeadLetterReason.not_an_object, f"value is a JSON {type(record).__name__}, not an object")
    types = policy.item_types
    for key, value in record.items():
        expected = types.get(key)
        kind = type(value)
        if expected is None or kind not in expected:
            _reject(policy, key, value, expected)
        if kind is str and len(value) > MAX_ITEM_CHARS and expected is not _ANY_STRING:
            raise InvalidRecord(DeadLetterReason.value_too_large, f"item {key!r} has {len(value)} characters (limit {MAX_ITEM_CHARS})")
    return record


def _reject(policy: EntryPolicy, key: str, value: object, expected: frozenset[type] | None) -> None:
    if expected is None:
        raise InvalidRecord(DeadLetterReason.unknown_item, f"{key!r} is not an item of entry {policy.entry_id!r}")
    names = "/".join(sorted(t.__name__ for t in expected if t is not _NONE))
    raise InvalidRecord(DeadLetterReason.wrong_type, f"item {key!r} is {type(value).__name__}, expected {names}")


def decide(
    policy: EntryPolicy, source: str, record: Mapping[str, Any], approvals: Container[str] | Mapping[str, frozenset[str] | None] | None = None
) -> list[Outcome]:
    """One outcome per subscription on the entry (one denial when nobody subscribes).

    ``approvals`` holds the subscriptions currently approved (expired ones left out); a
    mapping may restrict an approval to some items (``None``: all the subscription's).
    ``None`` means the scenario's own statuses apply.
    """
    if not policy.routes:
        return [Outcome(None, False, DenialReason.no_subscriber)]
    if policy.negative_listed:
        return [Outcome(r, False, DenialReason.negative_list) for r in policy.routes]
    if policy.sharing is Sharing.not_shared:
        return [Outcome(r, False, DenialReason.not_shared) for r in policy.routes]
    if source != policy.provider:
        return [Outcome(r, False, DenialReason.not_provider) for r in policy.routes]
    conditional = policy.sharing is Sharing.conditional
    region_key = policy.region_key
    restrict = approvals.get if isinstance(approvals, Mapping) else None
    outcomes = []
    for route in policy.routes:
        granted = None
        if conditional:
            ok = route.approved if approvals is None else route.subscription in approvals
            if not ok:
                outcomes.append(Outcome(route, False, DenialReason.not_approved))
                continue
            if restrict is not None:
                granted = restrict(route.subscription)
        if route.region is not None:
            row_region = record.get(region_key) if region_key is not None else None
            if not isinstance(row_region, str) or not row_region.startswith(route.region_prefix) or len(row_region) not in (6, 9):
                outcomes.append(Outcome(route, False, DenialReason.out_of_jurisdiction))
                continue
        value = {k: record[k] for k in route.items if k in record and (granted is None or k in granted)}
        for key, rule in route.masks:
            if key in value:
                value[key] = apply_mask(rule, value[key])
        outcomes.append(Outcome(route, True, DeliveryReason.approved if conditional else DeliveryReason.unconditional, value))
    return outcomes


def possible_outcomes(policy: EntryPolicy) -> list[tuple[Route | None, Decision, Reason]]:
    """Every (route, decision, reason) :func:`decide` can give for a record of this entry,
    whatever the record, its sender and the approvals in force; route None: nobody subscribes.

    The same rules as :func:`decide`, read for their reach instead of applied to one record:
    a bound for the metrics' label sets (``exchange/metrics/labels.py``), never a guess. The
    decision of a delivery is the route's (``forwarded`` when the consumer is on another
    hub of a cascade, see :func:`compile_transit` for what the hubs on the way decide).
    ``tests/test_vocabulary.py`` checks that what :func:`decide` gives is always among them.
    """
    if not policy.routes:
        return [(None, Decision.denied, DenialReason.no_subscriber)]
    if policy.negative_listed:
        return [(r, Decision.denied, DenialReason.negative_list) for r in policy.routes]
    if policy.sharing is Sharing.not_shared:
        return [(r, Decision.denied, DenialReason.not_shared) for r in policy.routes]
    out: list[tuple[Route | None, Decision, Reason]] = []
    for route in policy.routes:
        out.append((route, Decision.denied, DenialReason.not_provider))
        if policy.sharing is Sharing.conditional:  # approvals come and go during a run
            out.append((route, Decision.denied, DenialReason.not_approved))
        if route.region is not None:
            out.append((route, Decision.denied, DenialReason.out_of_jurisdiction))
        assert route.decision_key is not None  # every compiled route has its delivery decision
        _, decision, reason = route.decision_key
        out.append((route, decision, reason))
    return out


class Reconciled(NamedTuple):
    """What one number, one source makes of a record."""

    record: dict[str, Any]  # copies replaced by authoritative values; unknown ones left out
    updates: dict[str, Any]  # authoritative items whose stored value this record changes
    verified: tuple[str, ...]  # copied items that agree with the source
    conflicts: tuple[tuple[str, str, Any, Any], ...]  # (item, authority, authoritative value, copy value)
    unverified: tuple[str, ...]  # copied items with no authoritative value yet
    invalid_key: tuple[str, ...] = ()  # governed items of a record whose master key fits no standard form


def master_key_of(policy: EntryPolicy, record: dict[str, Any]) -> str | None:
    """The record's master key in its standard form (GB 11643 ID number, GB 32100 credit
    code, GA 36 plate; see schemas/keys.py), which keys the authoritative store; None when
    the record has none or it cannot be normalised."""
    authority = policy.authority
    if authority is None:
        return None
    return normalise_key(authority.master_type, record.get(authority.master_key))


def reconcile(policy: EntryPolicy, record: dict[str, Any], known: Mapping[str, Any] | None) -> Reconciled:
    """一数一源、多源核验: verify copies against the source and deliver only the source's values.

    ``known`` holds the authoritative values stored for the record's master key, looked up
    by its standard form (``master_key_of``). The source's own items update them; another
    department's copy of an item is compared with them (match: verified; mismatch: a
    conflict) and replaced by the authoritative value, or left out when there is none yet:
    a copy is never delivered as the truth. The delivered master key is its standard form
    ('11010519491231002x' → '11010519491231002X', a 15-digit legacy ID → 18 digits).

    A master key that cannot be normalised matches nothing: the record's copies are left
    out and its governed items (copies, and a source's own items, which are not stored)
    are reported as ``invalid_key``, never as unverified.
    """
    authority = policy.authority
    if authority is None:
        return Reconciled(record, {}, (), (), ())
    raw = record.get(authority.master_key)
    if raw is None:
        return Reconciled(record, {}, (), (), ())
    master = normalise_key(authority.master_type, raw)
    if master is None:
        out = dict(record)
        invalid = [k for k in authority.own if k in record]
        for item, _source in authority.copies:
            if item in out:
                del out[item]
                invalid.append(item)
        return Reconciled(out, {}, (), (), (), tuple(invalid))
    known = known or {}
    updates = {k: record[k] for k in authority.own if k in record and known.get(k) != record[k]}
    if not authority.copies:
        if master != raw:
            record = {**record, authority.master_key: master}
        return Reconciled(record, updates, (), (), ())
    out = dict(record)
    out[authority.master_key] = master
    verified, conflicts, unverified = [], [], []
    for item, source in authority.copies:
        if item not in record:
            continue
        copy = out.pop(item)
        if item not in known:
            unverified.append(item)
            continue
        truth = known[item]
        out[item] = truth
        if copy == truth:
            verified.append(item)
        else:
            conflicts.append((item, source, truth, copy))
    return Reconciled(out, updates, tuple(verified), tuple(conflicts), tuple(unverified))
