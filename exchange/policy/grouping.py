"""The sharing rules again, answered per group of subscriptions instead of one by one.

:func:`~exchange.policy.sharing.decide` gives one :class:`~exchange.policy.sharing.Outcome` per
subscription, which is the clearest statement of the rules and stays their reference. It
is also what made the Dongguan preset's GPS stream expensive: 35 subscriptions per
record, 33 of them towns with a row filter, so each record built 32 denials that all say
the same thing ("not this town"). Here the same decision comes out as the deliveries plus
a few :class:`DeniedGroup` objects, built once and shared by every record they fit:

- what depends only on the approvals in force (which routes are approved, which items an
  approval grants, the routes nobody approved) is computed once per batch (:class:`Grant`);
- the row-filtered routes are indexed by jurisdiction prefix, so a record's region finds
  its towns with a dict lookup per prefix length, and everything else it is denied is one
  precomputed group, cached per region value.

Pure: no I/O, no clock. ``tests/test_grouping.py`` checks it agrees with ``decide()``.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, NamedTuple

from exchange.policy.masking import apply_mask
from exchange.policy.sharing import EntryPolicy, Route, delivery_reason
from schemas.envelope import AuditDecision
from schemas.outcomes import Decision, DeliveryReason, DenialReason
from schemas.scenario import Sharing

MAX_CACHED_REGIONS = 4096  # distinct region values remembered per entry and batch; beyond, computed each time


class DeniedGroup:
    """Every subscription of one entry that one rule denies a record to, with its audit fields.

    Compared by identity on purpose: the router counts records per group in a Counter,
    and hashing an object is far cheaper than hashing 32 routes.
    """

    __slots__ = ("reason", "routes", "scopes", "audit")

    def __init__(self, entry_id: str, reason: DenialReason, routes: tuple[Route, ...]) -> None:
        self.reason = reason
        self.routes = routes
        # what each denial is counted under: the subscription, or the entry when nobody subscribes
        self.scopes = tuple(r.subscription for r in routes) or (entry_id,)
        self.audit: tuple[str, str | list[str] | None, str | list[str] | None, str, str]
        if not routes:
            self.audit = AuditDecision(entry_id, None, None, Decision.denied, reason)
        elif len(routes) == 1:
            self.audit = AuditDecision(entry_id, routes[0].consumer, routes[0].subscription, Decision.denied, reason)
        else:
            self.audit = AuditDecision(entry_id, [r.consumer for r in routes], [r.subscription for r in routes], Decision.denied, reason)

    def __repr__(self) -> str:
        return f"DeniedGroup({self.reason!r}, {list(self.scopes)})"


Granted = tuple[Route, frozenset[str] | None]  # a route and the items its approval grants (None: all of its items)


class Grouped(NamedTuple):
    """One record's decision over all subscriptions of its entry (:func:`decide_grouped`)."""

    delivered: list[tuple[Route, dict[str, Any]]]  # in the order of the entry's subscriptions
    denied: tuple[DeniedGroup, ...]
    reason: DeliveryReason  # why the deliveries were allowed: approved or unconditional


class Grant:
    """What the approvals in force allow on one entry, for every record of a batch."""

    __slots__ = ("policy", "reason", "whole", "not_provider", "not_approved", "open", "filtered", "index", "unfit", "_by_region")

    def __init__(self, policy: EntryPolicy, approvals: Container[str] | Mapping[str, frozenset[str] | None] | None = None) -> None:
        self.policy = policy
        entry, routes = policy.entry_id, policy.routes
        conditional = policy.sharing is Sharing.conditional
        self.reason = delivery_reason(policy.sharing)
        # a rule that denies every route whoever sends the record and whatever it holds
        whole = None
        if not routes:
            whole = DeniedGroup(entry, DenialReason.no_subscriber, ())
        elif policy.negative_listed:
            whole = DeniedGroup(entry, DenialReason.negative_list, routes)
        elif policy.sharing is Sharing.not_shared:
            whole = DeniedGroup(entry, DenialReason.not_shared, routes)
        self.whole = (whole,) if whole else None
        self.not_provider = (DeniedGroup(entry, DenialReason.not_provider, routes),)
        restrict = approvals.get if isinstance(approvals, Mapping) else None
        refused: list[Route] = []
        granted: list[tuple[int, Route, frozenset[str] | None]] = []
        for at, route in enumerate(routes):
            items = None
            if conditional:
                if not (route.approved if approvals is None else route.subscription in approvals):
                    refused.append(route)
                    continue
                if restrict is not None:
                    items = restrict(route.subscription)
            granted.append((at, route, items))
        self.not_approved = DeniedGroup(entry, DenialReason.not_approved, tuple(refused)) if refused else None
        self.open = [(at, r, items) for at, r, items in granted if r.region is None]
        self.filtered = [(at, r, items) for at, r, items in granted if r.region is not None]
        index: dict[int, dict[str, list]] = {}
        for g in self.filtered:
            prefix = g[1].region_prefix
            index.setdefault(len(prefix), {}).setdefault(prefix, []).append(g)
        self.index = index
        # a record whose region is missing or malformed: every row-filtered route is out of jurisdiction
        self.unfit = self._fit(())
        self._by_region: dict[str, tuple] = {}

    def _fit(self, matched: tuple) -> tuple[tuple[Granted, ...], tuple[DeniedGroup, ...]]:
        """The routes a record goes to, given the row-filtered ones its region matched, and its denials."""
        hit = {id(g[1]) for g in matched}
        out = [g for g in self.filtered if id(g[1]) not in hit]
        targets = tuple((r, items) for _, r, items in sorted([*self.open, *matched], key=lambda g: g[0]))
        denied = [self.not_approved] if self.not_approved else []
        if out:
            denied.append(DeniedGroup(self.policy.entry_id, DenialReason.out_of_jurisdiction, tuple(r for _, r, _ in out)))
        return targets, tuple(denied)

    def for_region(self, region: object) -> tuple[tuple[Granted, ...], tuple[DeniedGroup, ...]]:
        """Where a record from ``region`` goes and what it is denied (cached per region value)."""
        if not self.filtered:
            return self.unfit
        if not isinstance(region, str) or len(region) not in (6, 9):
            return self.unfit
        found = self._by_region.get(region)
        if found is None:
            matched: list[tuple[int, Route, frozenset[str] | None]] = []
            for length, prefixes in self.index.items():
                matched.extend(prefixes.get(region[:length], ()))
            found = self._fit(tuple(matched))
            if len(self._by_region) < MAX_CACHED_REGIONS:
                self._by_region[region] = found
        return found


def decide_grouped(
    policy: EntryPolicy,
    source: str,
    record: Mapping[str, Any],
    approvals: Container[str] | Mapping[str, frozenset[str] | None] | None = None,
    grant: Grant | None = None,
) -> Grouped:
    """:func:`~exchange.policy.sharing.decide`, grouped: the deliveries and the denials by rule.

    ``grant`` is ``Grant(policy, approvals)``, made once for a batch; without it, it is
    made here (same answer, slower).
    """
    if grant is None:
        grant = Grant(policy, approvals)
    if grant.whole is not None:
        return Grouped([], grant.whole, grant.reason)
    if source != policy.provider:
        return Grouped([], grant.not_provider, grant.reason)
    targets, denied = grant.for_region(record.get(policy.region_key)) if policy.region_key else grant.unfit
    delivered = []
    for route, granted in targets:
        value = {k: record[k] for k in route.items if k in record and (granted is None or k in granted)}
        for key, rule in route.masks:
            if key in value:
                value[key] = apply_mask(rule, value[key])
        delivered.append((route, value))
    return Grouped(delivered, denied, grant.reason)
