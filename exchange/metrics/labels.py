"""The label values each ``dx_`` family can take, derived from a scenario: the series bound.

Labels are bounded by the scenario, never by the data (see :mod:`exchange.metrics`). The
router's families are not restated from the sharing rules here: they come from the policy
each hub's router compiles (:func:`~exchange.policy.sharing.compile_policy`,
:func:`~exchange.policy.sharing.compile_transit`) and the outcomes it can give
(:func:`~exchange.policy.sharing.possible_outcomes`), so a rule added there (a forwarded
delivery, a relayed record, a hub's negative list) shows here by itself. The value
vocabularies are the enums of :mod:`schemas.outcomes`.

:func:`init_series` creates every label set at zero when a process starts (``rate()``
then says 0 instead of "no data"); :func:`estimated_series` counts them for capacity
planning (``docs/cluster.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from prometheus_client.metrics import MetricWrapperBase

from exchange.metrics.families import (
    APPROVALS,
    AUDIT_RECORDS_READ,
    AUDIT_RECORDS_WRITTEN,
    CONSUMER_LAG,
    DEAD_LETTERS,
    DUPLICATES_DROPPED,
    END_TO_END_LATENCY,
    HOP_LATENCY,
    LATENCY_BUCKETS,
    METRICS,
    PER_WORKER,
    PUBLISH_DELAY,
    PUBLISH_ERRORS,
    PUBLISH_LATENCY,
    PUBLISH_RETRIES,
    PUBLISHED_BYTES,
    QUALITY_EVENTS,
    RECORDS_DELIVERED,
    RECORDS_PUBLISHED,
    ROLE_METRICS,
    ROUTER_DECISIONS,
    ROUTER_MASKED_RECORDS,
    ROUTER_RECORDS_IN,
    RUN_ACCOUNTED_OUTCOMES,
    RUN_DURATION_SECONDS,
    RUN_ELAPSED_SECONDS,
    RUN_EXPECTED_OUTCOMES,
    RUN_PRODUCED_RECORDS,
    RUN_UNACCOUNTED_OUTCOMES,
    SLO_STATUS,
    VERIFICATIONS,
    series_per_child,
)
from exchange.metrics.faust import FAUST_PER_TOPIC_FIELDS, faust_family_names
from exchange.policy.sharing import EntryPolicy, compile_policy, compile_transit, possible_outcomes
from schemas.applications import State
from schemas.envelope import Topics, hop_segments
from schemas.outcomes import OUTCOME_DECISIONS, DeadLetterReason, Decision, DeliveryReason, DenialReason, QualityReason, VerificationResult
from schemas.scenario import Scenario

# Bounded label values (schemas/outcomes.py) ---------------------------------------------
#: ``reason`` of a delivered (or forwarded) outcome
DELIVERED_REASONS = tuple(DeliveryReason)
#: ``reason`` of a denied outcome
DENIED_REASONS = tuple(DenialReason)
#: ``reason`` of a dead letter (and of a ``dead_lettered`` outcome)
DEAD_LETTER_REASONS = tuple(DeadLetterReason)
#: one-number-one-source verification of a copied item against its source department
VERIFICATION_RESULTS = tuple(VerificationResult)
#: data-quality events the router publishes (a copy that disagrees with its source)
QUALITY_REASONS = tuple(QualityReason)
#: the SLO every run reports, named or not
DEFAULT_SLOS = ("conservation",)
#: approval states of an application (申请), schemas/applications.py
APPROVAL_STATES = tuple(s.value for s in State)
#: ``entry`` label of records taken in from a hub's transit topic (they belong to no ingress topic)
TRANSIT_ENTRY = "?"

LabelSets = dict[MetricWrapperBase, list[tuple[str, ...]]]
_PLATFORM_ONLY = (
    RUN_ELAPSED_SECONDS,
    RUN_DURATION_SECONDS,
    RUN_PRODUCED_RECORDS,
    RUN_EXPECTED_OUTCOMES,
    RUN_ACCOUNTED_OUTCOMES,
    RUN_UNACCOUNTED_OUTCOMES,
)


class Possible(NamedTuple):
    """One outcome a hub's router can count: the labels of ``dx_router_decisions_total``."""

    platform: str
    entry: str
    subscription: str  # "" when nobody subscribes to the entry
    decision: Decision
    reason: str
    masked: bool = False  # a delivery with items masked (counted in dx_router_masked_records)
    transit: bool = False  # decided on a record crossing the hub from another one (read from its transit topic)


def compiled(scenario: Scenario) -> dict[str, dict[str, EntryPolicy]]:
    """The policy each hub's router compiles, for the live entries (a dormant one has no topic): hub → entry → policy."""
    return {p: compile_policy(scenario, Topics(p), p, scenario.live_entries) for p in scenario.all_platforms}


def router_outcomes(scenario: Scenario, policies: dict[str, dict[str, EntryPolicy]] | None = None) -> list[Possible]:
    """Every outcome each hub's router can decide: from the policy it compiles
    (``policies``, default :func:`compiled`), then on records crossing it in transit that can
    reach it (the provider's hub lets them through and no hub before it refuses them)."""
    out: list[Possible] = []
    for p, hub_policies in (policies or compiled(scenario)).items():
        for policy in hub_policies.values():
            for route, decision, reason in possible_outcomes(policy):
                sub = route.subscription if route is not None else ""
                masked = route is not None and bool(route.masks) and decision is Decision.delivered
                out.append(Possible(p, policy.entry_id, sub, decision, reason, masked))
    let_through = {o.subscription for o in out if o.decision is not Decision.denied}
    transit = {p: compile_transit(scenario, p) for p in scenario.all_platforms}
    refused_at = {(p, t.subscription) for p, routes in transit.items() for t in routes.values() if t.denied}
    subs = {s.id: s for s in scenario.subscriptions}
    for p, routes in transit.items():
        for t in routes.values():
            path = scenario.subscription_path(subs[t.subscription])
            before = path[1 : path.index(p)]
            if t.subscription in let_through and not any((h, t.subscription) in refused_at for h in before):
                out.append(Possible(p, t.entry, t.subscription, t.audit.decision, t.audit.reason, transit=True))
    return out


def transit_hubs(scenario: Scenario) -> set[str]:
    """Hubs whose router reads a transit topic (some subscription crosses them from another hub)."""
    return {p for p in scenario.all_platforms if compile_transit(scenario, p)}


def label_sets(scenario: Scenario, worker: str = "0") -> LabelSets:
    """Every label set each ``dx_`` family can take in one process of its role.

    This is the bound the label design guarantees: it is derived from the scenario alone
    (entries, subscriptions, departments, authoritative items, and the policy each hub
    compiles from them), never from the data. Router families marked
    :data:`~exchange.metrics.families.PER_WORKER` take ``worker``; the others are the same
    in every worker (each worker exposes the entries it was assigned, up to all of them).
    """
    sets: LabelSets = {m: [] for m in METRICS.values()}
    policies = compiled(scenario)
    outcomes = router_outcomes(scenario, policies)
    _publishing(scenario, sets)
    _routing(scenario, outcomes, sets)
    _delivering(scenario, outcomes, sets)
    _one_source(policies, sets)
    _per_platform(scenario, worker, sets)
    return sets


def _publishing(scenario: Scenario, sets: LabelSets) -> None:
    """Producers: per published entry, and per publishing department."""
    publishers = set()
    for entry_id in scenario.entry_rates():
        entry = scenario.entries[entry_id]
        p = scenario.platform_of(entry.provider)
        sets[RECORDS_PUBLISHED].append((p, entry.id, entry.provider))
        sets[PUBLISHED_BYTES].append((p, entry.id, entry.provider))
        publishers.add((p, entry.provider))
    for m in (PUBLISH_ERRORS, PUBLISH_RETRIES, PUBLISH_LATENCY, PUBLISH_DELAY):
        sets[m] = sorted(publishers)


def _routing(scenario: Scenario, outcomes: list[Possible], sets: LabelSets) -> None:
    """Router: records in, decisions, masked deliveries, dead letters, audit rows written."""
    live = scenario.live_entries
    transit = transit_hubs(scenario)
    for entry in scenario.catalogue:
        if entry.id in live:
            sets[ROUTER_RECORDS_IN].append((scenario.platform_of(entry.provider), entry.id))
    sets[ROUTER_RECORDS_IN] += [(p, TRANSIT_ENTRY) for p in sorted(transit)]
    for o in outcomes:
        sets[ROUTER_DECISIONS].append((o.platform, o.entry, o.subscription, o.decision, o.reason))
        if o.masked:
            sets[ROUTER_MASKED_RECORDS].append((o.platform, o.entry, o.subscription))
    for p in scenario.all_platforms:
        for reason in _dead_letter_reasons(p in transit):
            sets[ROUTER_DECISIONS].append((p, "", "", Decision.dead_lettered, reason))
            sets[DEAD_LETTERS].append((p, reason))
    written = sorted({(o.platform, o.decision) for o in outcomes})
    sets[AUDIT_RECORDS_WRITTEN] = list(written)
    # the accountant reads every hub's audit trail and counts outcomes under the main platform
    read = sorted({o.decision for o in outcomes if o.decision in OUTCOME_DECISIONS})
    sets[AUDIT_RECORDS_READ] = [(scenario.platform.id, d) for d in read]


def _dead_letter_reasons(reads_transit: bool) -> Iterable[DeadLetterReason]:
    """What a hub's router can dead-letter: any record or batch; ``bad_transit`` only where it reads a transit topic."""
    return (r for r in DeadLetterReason if reads_transit or r is not DeadLetterReason.bad_transit)


def _delivering(scenario: Scenario, outcomes: list[Possible], sets: LabelSets) -> None:
    """Consumers: the flows that can reach their consumer, on the consumer's own hub."""
    flows = sorted({(o.platform, o.subscription) for o in outcomes if o.decision is Decision.delivered and o.subscription})
    subs = {s.id: s for s in scenario.subscriptions}
    consumers = sorted({(p, subs[sub].consumer) for p, sub in flows})
    for p, sub in flows:
        sets[RECORDS_DELIVERED].append((p, sub, subs[sub].consumer))
        sets[END_TO_END_LATENCY].append((p, sub, subs[sub].consumer))
    sets[CONSUMER_LAG] = list(consumers)
    sets[DUPLICATES_DROPPED] = consumers + [(p, "accountant") for p in sorted(scenario.all_platforms)]
    sets[HOP_LATENCY] = _hop_segments(scenario, [subs[sub] for _, sub in flows])


def _hop_segments(scenario: Scenario, delivered: list) -> list[tuple[str, str]]:
    """(consumer's platform, segment) of every deliverable subscription's hub path, in a cascade only."""
    if len(scenario.hubs_in_use) < 2:
        return []
    out: set[tuple[str, str]] = set()
    for sub in delivered:
        p = scenario.platform_of(sub.consumer)
        out.update((p, name) for name in hop_segments(scenario.subscription_path(sub)))
    return sorted(out)


def _one_source(policies: dict[str, dict[str, EntryPolicy]], sets: LabelSets) -> None:
    """一数一源: what the router can find checking each entry's governed items (its compiled
    :class:`~exchange.policy.sharing.Authority`): every result for a copy, ``invalid_key``
    also for the provider's own items (a master key that fits no standard)."""
    checks: set[tuple[str, str, str, str]] = set()
    holders: set[tuple[str, str]] = set()
    for p, hub_policies in policies.items():
        for policy in hub_policies.values():
            authority = policy.authority
            if authority is None:
                continue
            for item, _source in authority.copies:
                checks.update((p, item, policy.provider, result) for result in VerificationResult)
                holders.add((p, policy.provider))
            checks.update((p, item, policy.provider, VerificationResult.invalid_key) for item in authority.own)
    sets[VERIFICATIONS] = sorted(checks)
    sets[QUALITY_EVENTS] = [(p, dept, reason) for p, dept in sorted(holders) for reason in QUALITY_REASONS]


def _per_platform(scenario: Scenario, worker: str, sets: LabelSets) -> None:
    """Families labelled by platform alone (and worker, approval state, SLO)."""
    slos = [*(s.name for s in scenario.slos), *DEFAULT_SLOS]
    for p in sorted(scenario.all_platforms):
        for m in PER_WORKER:
            sets[m].append((p, worker))
        sets[APPROVALS] += [(p, state) for state in APPROVAL_STATES]
        for m in _PLATFORM_ONLY:
            sets[m].append((p,))
        sets[SLO_STATUS] += [(p, slo) for slo in dict.fromkeys(slos)]


#: process_* and python_* series of prometheus-client's default collectors on Linux
PROCESS_SERIES = 16


def _faust_series(scenario: Scenario, workers: int, per_topic: bool) -> int:
    """Series of Faust's sensor over all router workers."""
    fixed = 0
    labelled = {
        "total_events_per_stream": 1,
        "assignment_operations": 2,
        "table_operations": 0,  # one stream, completed/error
        "metrics_by_name": 0,
        "http_status_codes": 0,
    }
    for field, (_, kind, _) in faust_family_names("faust").items():
        if field in FAUST_PER_TOPIC_FIELDS:
            continue
        if field in labelled:
            fixed += labelled[field]
        else:
            fixed += len(LATENCY_BUCKETS) + 3 if kind == "histogram" else 1
    total = workers * fixed
    if per_topic:
        partitions = sum(e.partitions for e in scenario.catalogue)
        # per topic: in every worker that ever had one of its partitions; per partition: in its current owner
        total += workers * len(scenario.catalogue) + 3 * partitions
    return total


def estimated_series(scenario: Scenario, workers: int = 1, faust: bool = True, faust_per_topic: bool = False) -> dict[str, int]:
    """Upper bound of the time series a run of ``scenario`` exposes, per family.

    Keys are family names (``dx_…``), ``faust_*`` (Faust's sensor over all router
    workers), ``process_*`` (prometheus-client's process and Python collectors, one set
    per process) and ``total``. A histogram counts its buckets, ``+Inf``, ``_sum`` and
    ``_count``; ``_created`` series are disabled. Router families labelled by entry or
    flow are counted once per worker (after rebalances a worker may have routed any
    entry); :data:`~exchange.metrics.families.PER_WORKER` families once per worker by construction.
    """
    workers = max(1, int(workers))
    sets = label_sets(scenario)
    router = set(ROLE_METRICS["router"])
    out: dict[str, int] = {}
    for metric, children in sets.items():
        n = len(children) * series_per_child(metric)
        if metric in router:
            n *= workers
        out[metric._name] = n
    if faust:
        out["faust_*"] = _faust_series(scenario, workers, faust_per_topic)
    processes = 1 + workers + 1 + 1  # producers, router workers, consumers, controller
    out["process_*"] = processes * PROCESS_SERIES
    out["total"] = sum(out.values())
    return out


def init_series(role: str, scenario: Scenario, worker: str = "0") -> int:
    """Create every label set ``role`` can produce at zero; return the number created.

    With the series present from the start, ``rate()`` says 0 instead of "no data"
    (a dashboard's dead-letter panel in a run with no bad input), and ``increase()`` sees
    the first event. Call it once, after :func:`~exchange.metrics.server.serve_metrics`,
    in each process. ValueError for an unknown role.
    """
    if role not in ROLE_METRICS:
        raise ValueError(f"unknown role {role!r}; one of {sorted(ROLE_METRICS)}")
    sets = label_sets(scenario, worker=str(worker))
    n = 0
    for metric in ROLE_METRICS[role]:
        for labels in sets[metric]:
            metric.labels(*labels)
            n += 1
    return n
