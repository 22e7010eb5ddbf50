"""The ``dx_`` metric families: names, help, label names, buckets; which role exposes which.

Conventions are in :mod:`exchange.metrics`; the label *values* each family can take are
derived from a scenario in :mod:`exchange.metrics.labels`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

prometheus_client.disable_created_metrics()

#: 0.5 ms … 10 s in 1-2-5 steps (14 buckets + ``+Inf``).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Records per router batch (Faust fetches up to ``broker_max_poll_records`` = 5,000).
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

_P = "platform"


def observe_many_ns(child: Any, values_ns: Iterable[int]) -> None:
    """``child.observe(v / 1e9)`` for every duration ``v`` in ``values_ns`` (nanoseconds; a
    negative one counts as 0), a bucket at a time: the same buckets, count and sum (up to float
    rounding) as observing each, at a fraction of the cost.

    ``child`` is a labelled :class:`prometheus_client.Histogram`. A consumer process observed
    each delivery's end-to-end latency one at a time, and in a cascade three hop segments too,
    each call taking a lock (7,500 deliveries a second on Dongguan). This reads the child's
    bucket bounds and adds to its bucket and sum values (prometheus_client 0.2x); a child
    without them is observed one value at a time.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for v in values_ns:
            child.observe(max(0, v) / 1e9)
        return
    bounds_ns = [b * 1e9 for b in bounds]  # the last is +Inf: every value finds a bucket
    values = [v if v > 0 else 0 for v in values_ns]
    for i, n in Tally(bisect_left(bounds_ns, v) for v in values).items():
        buckets[i].inc(n)
    total.inc(sum(values) / 1e9)


# Producers ----------------------------------------------------------------------------
RECORDS_PUBLISHED = Counter("dx_records_published", "Records acknowledged by the broker, per catalogue entry", [_P, "entry", "department"])
PUBLISHED_BYTES = Counter("dx_published_bytes", "Bytes of record values acknowledged by the broker", [_P, "entry", "department"])
PUBLISH_ERRORS = Counter("dx_publish_errors", "Produce requests that failed for good", [_P, "department"])
PUBLISH_RETRIES = Counter("dx_publish_retries", "Produce requests sent again after a retriable error", [_P, "department"])
PUBLISH_LATENCY = Histogram("dx_publish_latency_seconds", "Broker acknowledgement minus send time", [_P, "department"], buckets=LATENCY_BUCKETS)
PUBLISH_DELAY = Histogram(
    "dx_publish_delay_seconds",
    "Send time minus intended send time: the producer behind its schedule (no coordinated omission)",
    [_P, "department"],
    buckets=LATENCY_BUCKETS,
)

# Router -------------------------------------------------------------------------------
ROUTER_RECORDS_IN = Counter("dx_router_records_in", "Ingress records taken in by the router", [_P, "entry"])
ROUTER_DECISIONS = Counter(
    "dx_router_decisions",
    "Outcomes decided by the router, one per record and subscription (delivered or denied with the audit reason); "
    "dead_lettered outcomes carry the dead-letter reason and empty entry and subscription",
    [_P, "entry", "subscription", "decision", "reason"],
)
ROUTER_MASKED_RECORDS = Counter(
    "dx_router_masked_records", "Deliveries in which at least one personal item was masked", [_P, "entry", "subscription"]
)
DEAD_LETTERS = Counter("dx_dead_letters", "Records sent to the dead-letter topic", [_P, "reason"])
AUDIT_RECORDS_WRITTEN = Counter("dx_audit_records_written", "Audit rows written by the router", [_P, "decision"])
ROUTER_BATCH_RECORDS = Histogram("dx_router_batch_records", "Ingress records per routed batch", [_P, "worker"], buckets=BATCH_BUCKETS)
ROUTER_BATCH_SECONDS = Histogram(
    "dx_router_batch_seconds", "Time to route one batch: decode, decide, mask, encode, hand to the producer", [_P, "worker"], buckets=LATENCY_BUCKETS
)
ROUTER_COMMIT_SECONDS = Histogram(
    "dx_router_commit_seconds",
    "Time from a batch handed to the producer to its offsets committed (acknowledgement included)",
    [_P, "worker"],
    buckets=LATENCY_BUCKETS,
)
ROUTER_READY_SECONDS = Gauge("dx_router_ready_seconds", "Seconds from process start to the worker routing", [_P, "worker"])
ROUTER_LAG = Gauge("dx_router_lag_records", "Ingress records not yet taken in by this worker (end offsets minus positions)", [_P, "worker"])

# Consumers ----------------------------------------------------------------------------
RECORDS_DELIVERED = Counter("dx_records_delivered", "Deliveries received by subscribers, duplicates dropped", [_P, "subscription", "consumer"])
DUPLICATES_DROPPED = Counter(
    "dx_duplicates_dropped", "Redelivered records dropped by trace id (consumer=accountant for the audit and dead-letter topics)", [_P, "consumer"]
)
END_TO_END_LATENCY = Histogram(
    "dx_end_to_end_latency_seconds",
    "Receive time minus send time, per flow (subscription)",
    [_P, "subscription", "consumer"],
    buckets=LATENCY_BUCKETS,
)
HOP_LATENCY = Histogram(
    "dx_hop_latency_seconds",
    "Cascades: time per segment of the hub path, from the hubs' in/out stamps ('producer → gy' into a hub, "
    "'gy' inside it, 'gy → gz' between hubs, 'gz → consumer' the last link); platform: the receiving department's",
    [_P, "segment"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge("dx_consumer_lag_records", "Records on a department's delivery topic not yet consumed", [_P, "consumer"])
AUDIT_RECORDS_READ = Counter("dx_audit_records_read", "Audit rows read by the accountant", [_P, "decision"])

# One number, one source (一数一源) -------------------------------------------------------
VERIFICATIONS = Counter(
    "dx_verifications",
    "Copied items checked against their authoritative source department (department: the one holding the copy)",
    [_P, "item", "department", "result"],
)
QUALITY_EVENTS = Counter("dx_quality_events", "Data-quality events published on the quality topic", [_P, "department", "reason"])

# Approvals (审批) -----------------------------------------------------------------------
APPROVALS = Gauge("dx_approvals", "Applications (申请) for conditional entries by approval state", [_P, "state"])

# Run controller -----------------------------------------------------------------------
RUN_ELAPSED_SECONDS = Gauge("dx_run_elapsed_seconds", "Seconds since the run started publishing", [_P])
RUN_DURATION_SECONDS = Gauge("dx_run_duration_seconds", "Planned seconds of publishing", [_P])
RUN_PRODUCED_RECORDS = Gauge("dx_run_produced_records", "Records acknowledged by the broker so far", [_P])
RUN_EXPECTED_OUTCOMES = Gauge("dx_run_expected_outcomes", "Outcomes the produced records must account for", [_P])
RUN_ACCOUNTED_OUTCOMES = Gauge("dx_run_accounted_outcomes", "Outcomes accounted for: delivered, denied or dead-lettered", [_P])
RUN_UNACCOUNTED_OUTCOMES = Gauge("dx_run_unaccounted_outcomes", "Expected outcomes not accounted for (0 at the end)", [_P])
SLO_STATUS = Gauge("dx_slo_status", "1 while the service-level objective holds, 0 when it is violated", [_P, "slo"])

#: Every dx_ family, by its name in the exposition (without ``_total``).
METRICS: dict[str, MetricWrapperBase] = {
    m._name: m for m in list(globals().values()) if isinstance(m, MetricWrapperBase) and m._name.startswith("dx_")
}

#: Which process role exposes which family.
ROLE_METRICS: dict[str, tuple[MetricWrapperBase, ...]] = {
    "producers": (RECORDS_PUBLISHED, PUBLISHED_BYTES, PUBLISH_ERRORS, PUBLISH_RETRIES, PUBLISH_LATENCY, PUBLISH_DELAY),
    "router": (
        ROUTER_RECORDS_IN,
        ROUTER_DECISIONS,
        ROUTER_MASKED_RECORDS,
        DEAD_LETTERS,
        AUDIT_RECORDS_WRITTEN,
        ROUTER_BATCH_RECORDS,
        ROUTER_BATCH_SECONDS,
        ROUTER_COMMIT_SECONDS,
        ROUTER_READY_SECONDS,
        ROUTER_LAG,
        VERIFICATIONS,
        QUALITY_EVENTS,
        APPROVALS,
    ),
    "consumers": (RECORDS_DELIVERED, DUPLICATES_DROPPED, END_TO_END_LATENCY, HOP_LATENCY, CONSUMER_LAG, AUDIT_RECORDS_READ),
    "controller": (
        RUN_ELAPSED_SECONDS,
        RUN_DURATION_SECONDS,
        RUN_PRODUCED_RECORDS,
        RUN_EXPECTED_OUTCOMES,
        RUN_ACCOUNTED_OUTCOMES,
        RUN_UNACCOUNTED_OUTCOMES,
        SLO_STATUS,
    ),
}
#: Families a router worker exposes per worker (the others per platform, entry, flow…).
PER_WORKER = frozenset({ROUTER_BATCH_RECORDS, ROUTER_BATCH_SECONDS, ROUTER_COMMIT_SECONDS, ROUTER_READY_SECONDS, ROUTER_LAG})


def sample_names(metric: MetricWrapperBase) -> tuple[str, ...]:
    """The sample names a family shows in the exposition (what PromQL refers to)."""
    name = metric._name
    kind = metric._type
    if kind == "counter":
        return (f"{name}_total",)
    if kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    if kind == "summary":
        return (name, f"{name}_sum", f"{name}_count")
    return (name,)


def exposed_names() -> frozenset[str]:
    """Every ``dx_`` sample name a process can expose."""
    return frozenset(n for m in METRICS.values() for n in sample_names(m))


def series_per_child(metric: MetricWrapperBase) -> int:
    """Series one label set produces: a histogram has its buckets, ``+Inf``, sum and count."""
    if metric._type == "histogram":
        return len(metric._upper_bounds) + 2  # type: ignore[attr-defined]  # _upper_bounds includes +Inf
    if metric._type == "summary":
        return 2
    return 1
