"""Prometheus metrics of every simulator process, defined in one place.

Conventions
-----------
* Every family starts with ``dx_``, carries its base unit in the name (``_seconds``,
  ``_bytes``; plain counts say what they count: ``_records``, ``_outcomes``) and
  counters are exposed with ``_total`` (prometheus-client appends it).
* Labels are bounded by the scenario, never by the data: ``platform``, ``entry``,
  ``department`` (the publishing department), ``consumer`` (the subscribing department),
  ``subscription`` (``<consumer>.<entry>``), ``decision``, ``reason``, ``worker``,
  ``item`` (a semantic item key), ``state`` (approval state), ``result``, ``slo``.
  Nothing is labelled per record, per trace id or per master key.
* ``_created`` series are switched off (:func:`prometheus_client.disable_created_metrics`):
  they would double the number of counter series for no dashboard use.
* Latency histograms (:data:`LATENCY_BUCKETS`) go from 0.5 ms to 10 s in 1-2-5 steps,
  so a p99 of a few milliseconds on a loopback broker is resolved as well as a stall.
* The end-to-end histogram is labelled per flow (``subscription``): the issue asks for
  p50/p99 per flow, and flows are bounded by the scenario's subscriptions (a few hundred
  for the ``dongguan`` preset: 17 series each). Publish latency and delay are labelled
  per publishing *department*, not per entry: 1,322 entries × 17 series would be the
  largest family of all for little gain, while 84 departments × 17 is small.

One registry per process
------------------------
The metrics are module-level objects in prometheus-client's default registry
(:data:`prometheus_client.REGISTRY`). Every simulator role (producers, each router
worker, consumers, the run controller) is its own OS process, so a process-wide registry
*is* the per-process registry, and it comes with the ``process_*``/``python_*``
collectors for free. Code that needs an isolated registry (a test) calls
:func:`serve_metrics` with its own :class:`~prometheus_client.CollectorRegistry`.

Several processes: one port each, found by file-based service discovery
------------------------------------------------------------------------
Each process calls :func:`serve_metrics` (port 0 picks a free port; the default host is
``DX_METRICS_HOST`` or ``127.0.0.1``), prints the port, and calls :func:`write_sd_target`,
which writes ``sd-<role>-<ident>.json`` in Prometheus's ``file_sd`` format into the run
directory (or ``DX_METRICS_SD_DIR`` when set). Each file is written by one process
only, atomically (temporary file + rename), so nothing needs a lock, and Prometheus
picks up new and removed files by itself. prometheus-client's multiprocess mode was not
chosen: it is meant for forked workers of one server (gunicorn) sharing a directory of
mmap files, needs the directory wiped between runs, cannot carry gauges' live values
without per-gauge modes, and loses the per-process ``process_*`` metrics; our processes
are independent programs, possibly on different machines (compose, Kubernetes), which
file or DNS based discovery handles directly.

The target labels written (``role``, ``worker``, ``run_id``, ``platform``) are attached to
every series Prometheus scrapes from that process; the scrape job uses
``honor_labels: true`` so a metric's own ``platform``/``worker`` labels win.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from schemas.envelope import hop_segments

prometheus_client.disable_created_metrics()

#: The port every containerised process serves metrics on (compose, Kubernetes). Local
#: runs use port 0 (a free port each) and file-based service discovery.
DEFAULT_METRICS_PORT = 9464
METRICS_HOST_ENV = "DX_METRICS_HOST"  # bind address (default 127.0.0.1; 0.0.0.0 in containers)
ADVERTISE_HOST_ENV = "DX_METRICS_ADVERTISE_HOST"  # address written into the SD file, if not the bound one
SD_DIR_ENV = "DX_METRICS_SD_DIR"  # directory for sd-*.json instead of the run directory
SD_FILE_GLOB = "sd-*.json"

#: 0.5 ms … 10 s in 1-2-5 steps (14 buckets + ``+Inf``).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Records per router batch (Faust fetches up to ``broker_max_poll_records`` = 5,000).
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# Bounded label values -----------------------------------------------------------------
#: reasons of a delivery, as in audit records (exchange/policy/sharing.py)
DELIVERED_REASONS = ("unconditional", "approved")
#: reasons of a denial, as in audit records (exchange/policy/sharing.py)
DENIED_REASONS = ("not_shared", "not_approved", "not_provider", "out_of_jurisdiction", "no_subscriber", "negative_list")
#: reasons of a dead letter (docs/concepts.md, "Sharing rules": dead-letter reasons)
DEAD_LETTER_REASONS = (
    "bad_json",
    "not_an_object",
    "wrong_type",
    "unknown_item",
    "value_too_large",
    "empty_value",
    "missing_header",
    "duplicate_header",
    "bad_header",
    "unsupported_schema",
    "entry_mismatch",
    "unknown_entry",
)
#: one-number-one-source verification of a copied item against its source department
VERIFICATION_RESULTS = ("verified", "conflict", "unverified", "invalid_key")
#: data-quality event kinds (consistency, completeness, timeliness)
QUALITY_REASONS = ("inconsistent", "incomplete", "late")
#: SLOs a run reports when the scenario names none
DEFAULT_SLOS = ("conservation",)


def _approval_states() -> tuple[str, ...]:
    try:
        from schemas.applications import State
    except ImportError:  # pragma: no cover - before the approval workflow exists
        return ("submitted", "under_review", "approved", "rejected", "revoked", "expired")
    return tuple(s.value for s in State)


APPROVAL_STATES = _approval_states()

_P = "platform"

# Producers ----------------------------------------------------------------------------
RECORDS_PUBLISHED = Counter(
    "dx_records_published", "Records acknowledged by the broker, per catalogue entry", [_P, "entry", "department"]
)
PUBLISHED_BYTES = Counter(
    "dx_published_bytes", "Bytes of record values acknowledged by the broker", [_P, "entry", "department"]
)
PUBLISH_ERRORS = Counter("dx_publish_errors", "Produce requests that failed for good", [_P, "department"])
PUBLISH_RETRIES = Counter("dx_publish_retries", "Produce requests sent again after a retriable error", [_P, "department"])
PUBLISH_LATENCY = Histogram(
    "dx_publish_latency_seconds", "Broker acknowledgement minus send time", [_P, "department"], buckets=LATENCY_BUCKETS
)
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
ROUTER_BATCH_RECORDS = Histogram(
    "dx_router_batch_records", "Ingress records per routed batch", [_P, "worker"], buckets=BATCH_BUCKETS
)
ROUTER_BATCH_SECONDS = Histogram(
    "dx_router_batch_seconds",
    "Time to route one batch: decode, decide, mask, encode, hand to the producer",
    [_P, "worker"],
    buckets=LATENCY_BUCKETS,
)
ROUTER_COMMIT_SECONDS = Histogram(
    "dx_router_commit_seconds",
    "Time from a batch handed to the producer to its offsets committed (acknowledgement included)",
    [_P, "worker"],
    buckets=LATENCY_BUCKETS,
)
ROUTER_READY_SECONDS = Gauge("dx_router_ready_seconds", "Seconds from process start to the worker routing", [_P, "worker"])
ROUTER_LAG = Gauge(
    "dx_router_lag_records", "Ingress records not yet taken in by this worker (end offsets minus positions)", [_P, "worker"]
)

# Consumers ----------------------------------------------------------------------------
RECORDS_DELIVERED = Counter(
    "dx_records_delivered", "Deliveries received by subscribers, duplicates dropped", [_P, "subscription", "consumer"]
)
DUPLICATES_DROPPED = Counter(
    "dx_duplicates_dropped",
    "Redelivered records dropped by trace id (consumer=accountant for the audit and dead-letter topics)",
    [_P, "consumer"],
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
CONSUMER_LAG = Gauge(
    "dx_consumer_lag_records", "Records on a department's delivery topic not yet consumed", [_P, "consumer"]
)
AUDIT_RECORDS_READ = Counter("dx_audit_records_read", "Audit rows read by the accountant", [_P, "decision"])

# One number, one source (一数一源) -------------------------------------------------------
VERIFICATIONS = Counter(
    "dx_verifications",
    "Copied items checked against their authoritative source department (department: the one holding the copy)",
    [_P, "item", "department", "result"],
)
QUALITY_EVENTS = Counter(
    "dx_quality_events", "Data-quality events published on the quality topic", [_P, "department", "reason"]
)

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


# Serving and discovery ----------------------------------------------------------------
_servers: list[Any] = []
_bound_host: str | None = None


def serve_metrics(registry: CollectorRegistry | None = None, host: str | None = None, port: int = 0) -> int:
    """Serve ``registry`` (default: the process's) over HTTP on ``host:port``; return the port.

    ``port=0`` binds a free port. ``host`` defaults to ``$DX_METRICS_HOST`` or
    ``127.0.0.1``; containers set ``0.0.0.0``. The server runs on a daemon thread and
    answers any path (``/metrics`` included).
    """
    global _bound_host
    host = host or os.environ.get(METRICS_HOST_ENV) or "127.0.0.1"
    server, _thread = prometheus_client.start_http_server(port, addr=host, registry=registry or REGISTRY)
    _servers.append(server)
    _bound_host = host
    return int(server.server_address[1])


def stop_metrics_servers() -> None:
    """Stop every server :func:`serve_metrics` started in this process (tests)."""
    while _servers:
        server = _servers.pop()
        server.shutdown()
        server.server_close()


def advertised_host(bind_host: str | None = None) -> str:
    """The address Prometheus should scrape: ``$DX_METRICS_ADVERTISE_HOST``, else the bound
    address, else (bound to every interface) this host's own address."""
    explicit = os.environ.get(ADVERTISE_HOST_ENV)
    if explicit:
        return explicit
    host = bind_host or _bound_host or os.environ.get(METRICS_HOST_ENV) or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host


def sd_target_path(run_dir: Path | str, role: str, ident: str) -> Path:
    directory = Path(os.environ.get(SD_DIR_ENV) or run_dir)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{role}-{ident}")
    return directory / f"sd-{safe}.json"


def write_sd_target(
    run_dir: Path | str, role: str, ident: str, port: int, labels: Mapping[str, str], host: str | None = None
) -> Path:
    """Write this process's Prometheus ``file_sd`` target, atomically; return the file.

    The file is ``sd-<role>-<ident>.json`` in ``$DX_METRICS_SD_DIR`` or ``run_dir``:
    ``[{"targets": ["HOST:PORT"], "labels": {"role": ROLE, ...labels}}]``. Label values
    are turned into strings; ``role`` is always set.
    """
    path = sd_target_path(run_dir, role, ident)
    path.parent.mkdir(parents=True, exist_ok=True)
    address = host or advertised_host()
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # IPv6
    group = [{"targets": [f"{address}:{port}"], "labels": {**{k: str(v) for k, v in labels.items()}, "role": role}}]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # not matched by sd-*.json
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(group, f, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # Prometheus may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_sd_target(path: Path | str | None) -> None:
    """Remove a target file at exit, so Prometheus stops scraping a process that is gone."""
    if path is not None:
        Path(path).unlink(missing_ok=True)


# Faust's own sensor -------------------------------------------------------------------
_faust_metrics: dict[tuple[int, str, bool], Any] = {}


class _Discard:
    """Stands in for a Faust family we do not expose: takes every update, keeps nothing."""

    def labels(self, *args: Any, **kwargs: Any) -> _Discard:
        return self

    def inc(self, *args: Any, **kwargs: Any) -> None: ...

    def dec(self, *args: Any, **kwargs: Any) -> None: ...

    def set(self, *args: Any, **kwargs: Any) -> None: ...

    def observe(self, *args: Any, **kwargs: Any) -> None: ...

    def clear(self) -> None: ...

    def remove(self, *args: Any) -> None: ...

    def collect(self) -> list:
        """Faust reads the samples of its per-partition families on every rebalance."""
        return [_NoSamples()]


class _NoSamples:
    samples: tuple = ()


#: Faust families labelled per topic or per topic partition (see faust_sensor).
FAUST_PER_TOPIC_FIELDS = (
    "messages_received_per_topics",
    "messages_received_per_topics_partition",
    "topic_partition_end_offset",
    "topic_partition_offset_commited",
    "topic_messages_sent",
)


class _MillisecondsToSeconds:
    """Faust observes its latencies in milliseconds; we expose them in seconds."""

    __slots__ = ("histogram",)

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def observe(self, amount: float, *args: Any, **kwargs: Any) -> None:
        self.histogram.observe(amount / 1000.0, *args, **kwargs)


def _faust_family_names(prefix: str) -> dict[str, tuple[str, str, str]]:
    """Faust's FaustMetrics field → (our name, type, documentation)."""
    from faust.sensors.prometheus import FaustMetrics

    scratch = CollectorRegistry(auto_describe=True)
    out = {}
    for field, metric in FaustMetrics.create(scratch, prefix)._asdict().items():
        if isinstance(metric, Histogram):
            base = metric._name.removesuffix("_ms")
            doc = metric._documentation.replace(" in ms", "").replace(" ms", "")
            out[field] = (f"{base}_seconds", "histogram", f"{doc} (seconds)")
        else:
            out[field] = (metric._name, metric._type, metric._documentation)
    return out


def faust_sensor(app: Any, registry: CollectorRegistry | None = None, prefix: str = "faust", per_topic: bool = False) -> Any:
    """Attach Faust's own Prometheus monitor to ``app``, exposed through our registry.

    This is faust-streaming's :class:`faust.sensors.prometheus.PrometheusMonitor` (what
    ``setup_prometheus_sensors`` installs), without Faust's web server: the router runs
    with ``web_enabled=False`` and the families go out on the process's
    :func:`serve_metrics` port like ours. Faust observes latencies in milliseconds in
    histograms named without a unit (``faust_events_runtime_ms``); here they are
    histograms in seconds named ``faust_<name>_seconds`` with :data:`LATENCY_BUCKETS`,
    so the exposition passes ``promtool check metrics``. Counters and gauges are Faust's
    own (``faust_total_rebalances``, ``faust_assignment_operations_total``…).

    ``per_topic=False`` (the default) leaves out Faust's families labelled per topic or
    per topic partition (:data:`FAUST_PER_TOPIC_FIELDS`: messages received per topic and
    partition, end and committed offsets per partition): with one ingress topic per
    catalogue entry they would be the largest families of all (about 9,000 series for a
    Dongguan-sized catalogue of 1,322 entries), and ``dx_router_lag_records`` and
    ``dx_router_records_in_total`` say what a dashboard needs. Call it before the app
    starts; calling it again in the same process reuses the families. Returns the monitor.
    """
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    registry = registry or REGISTRY
    key = (id(registry), prefix, per_topic)
    metrics = _faust_metrics.get(key)
    if metrics is None:
        scratch = CollectorRegistry(auto_describe=True)
        fields: dict[str, Any] = {}
        names = _faust_family_names(prefix)
        for field, metric in FaustMetrics.create(scratch, prefix)._asdict().items():
            if field in FAUST_PER_TOPIC_FIELDS and not per_topic:
                fields[field] = _Discard()
            elif isinstance(metric, Histogram):
                name, _, doc = names[field]
                fields[field] = _MillisecondsToSeconds(Histogram(name, doc, registry=registry, buckets=LATENCY_BUCKETS))
            else:
                registry.register(metric)
                fields[field] = metric
        metrics = _faust_metrics[key] = FaustMetrics(**fields)
    app.monitor = PrometheusMonitor(metrics=metrics)
    return app.monitor


def faust_exposed_names(prefix: str = "faust", per_topic: bool = False) -> frozenset[str]:
    """Sample names :func:`faust_sensor` exposes (dashboards may use them)."""
    out = set()
    for field, (name, kind, _) in _faust_family_names(prefix).items():
        if field in FAUST_PER_TOPIC_FIELDS and not per_topic:
            continue
        if kind == "counter":
            out.add(f"{name}_total")
        elif kind == "histogram":
            out.update((f"{name}_bucket", f"{name}_sum", f"{name}_count"))
        else:
            out.add(name)
    return frozenset(out)


# Series: what a scenario produces -----------------------------------------------------
def _platform_of(scenario: Any) -> dict[str, str]:
    """Department id → the platform it attaches to (the main one unless a cascade says so)."""
    main = scenario.platform.id
    return {d.id: (getattr(d, "platform", None) or main) for d in scenario.departments}


def _authority(scenario: Any) -> dict[str, str]:
    """Semantic item key → its authoritative source department (数源部门)."""
    explicit = getattr(scenario, "authority", None)
    if isinstance(explicit, Mapping) and explicit:
        return dict(explicit)
    out: dict[str, str] = {}
    for entry in scenario.catalogue:
        for item in entry.items:
            if getattr(item, "authoritative", False):
                out.setdefault(item.key, entry.provider)
    return out


def _is_town(scenario: Any, dept: Any) -> bool:
    region = getattr(dept, "region", None)
    return bool(region) and region != scenario.platform.region and len(region) > len(scenario.platform.region)


def _enum_value(v: Any) -> str:
    return getattr(v, "value", v)


def label_sets(scenario: Any, worker: str = "0") -> dict[MetricWrapperBase, list[tuple[str, ...]]]:
    """Every label set each ``dx_`` family can take in one process of its role.

    This is the bound the label design guarantees: it is derived from the scenario alone
    (entries, subscriptions, departments, authoritative items), never from the data.
    Router families marked :data:`PER_WORKER` take ``worker``; the others are the same in
    every worker (each worker exposes the entries it was assigned, up to all of them).
    """
    platform_of = _platform_of(scenario)
    main = scenario.platform.id
    entries = {e.id: e for e in scenario.catalogue}
    depts = {d.id: d for d in scenario.departments}
    entry_platform = {e.id: platform_of.get(e.provider, main) for e in scenario.catalogue}
    try:
        published = [entries[e] for e in scenario.entry_rates()]
    except Exception:  # noqa: BLE001 - a scenario shape without rates: every entry
        published = list(scenario.catalogue)
    negative = set(getattr(getattr(scenario, "negative_list", None), "entries", ()) or ())
    subs_by_entry: dict[str, list[Any]] = {}
    for sub in scenario.subscriptions:
        subs_by_entry.setdefault(sub.entry, []).append(sub)
    platforms = sorted({main, *platform_of.values(), *(p.id for p in getattr(scenario, "platforms", ()) or ())})

    sets: dict[MetricWrapperBase, list[tuple[str, ...]]] = {m: [] for m in METRICS.values()}
    publishers = sorted({(entry_platform[e.id], e.provider) for e in published})
    for e in published:
        sets[RECORDS_PUBLISHED].append((entry_platform[e.id], e.id, e.provider))
        sets[PUBLISHED_BYTES].append((entry_platform[e.id], e.id, e.provider))
    for m in (PUBLISH_ERRORS, PUBLISH_RETRIES, PUBLISH_LATENCY, PUBLISH_DELAY):
        sets[m] = list(publishers)

    deliverable: list[tuple[str, Any]] = []
    live = getattr(scenario, "live_entries", None)  # a dormant entry (no load, no subscriber) has no series
    for e in scenario.catalogue:
        if live is not None and e.id not in live:
            continue
        p = entry_platform[e.id]
        sets[ROUTER_RECORDS_IN].append((p, e.id))
        subs = subs_by_entry.get(e.id, [])
        if not subs:
            sets[ROUTER_DECISIONS].append((p, e.id, "", "denied", "no_subscriber"))
            continue
        sharing = _enum_value(e.sharing)
        masked_keys = {i.key for i in e.items if _enum_value(getattr(i, "effective_mask", "none")) != "none"}
        for sub in subs:
            if e.id in negative:
                reasons = [("denied", "negative_list")]
            elif sharing == "not_shared":
                reasons = [("denied", "not_shared")]
            else:
                reasons = [("denied", "not_provider")]
                if sharing == "conditional":  # approvals change during a run: both can happen
                    reasons += [("delivered", "approved"), ("denied", "not_approved")]
                else:
                    reasons.append(("delivered", "unconditional"))
                consumer = depts.get(sub.consumer)
                if consumer is not None and _is_town(scenario, consumer):
                    reasons.append(("denied", "out_of_jurisdiction"))
                deliverable.append((p, sub))
                asked = set(sub.items) if sub.items is not None else {i.key for i in e.items}
                if masked_keys & asked - set(getattr(sub, "unmasked", ()) or ()):
                    sets[ROUTER_MASKED_RECORDS].append((p, e.id, sub.id))
            for decision, reason in reasons:
                sets[ROUTER_DECISIONS].append((p, e.id, sub.id, decision, reason))
    for p in platforms:
        for reason in DEAD_LETTER_REASONS:
            sets[ROUTER_DECISIONS].append((p, "", "", "dead_lettered", reason))
            sets[DEAD_LETTERS].append((p, reason))
        for decision in ("delivered", "denied"):
            sets[AUDIT_RECORDS_WRITTEN].append((p, decision))
            sets[AUDIT_RECORDS_READ].append((p, decision))
        for m in PER_WORKER:
            sets[m].append((p, worker))
        for state in APPROVAL_STATES:
            sets[APPROVALS].append((p, state))
        for m in (
            RUN_ELAPSED_SECONDS,
            RUN_DURATION_SECONDS,
            RUN_PRODUCED_RECORDS,
            RUN_EXPECTED_OUTCOMES,
            RUN_ACCOUNTED_OUTCOMES,
            RUN_UNACCOUNTED_OUTCOMES,
        ):
            sets[m].append((p,))
        slos = getattr(scenario, "slos", None) or ()
        for slo in [getattr(s, "name", s) for s in slos] or DEFAULT_SLOS:
            sets[SLO_STATUS].append((p, str(slo)))

    consumers = sorted({(p, sub.consumer) for p, sub in deliverable})
    for p, sub in deliverable:
        sets[RECORDS_DELIVERED].append((p, sub.id, sub.consumer))
        sets[END_TO_END_LATENCY].append((p, sub.id, sub.consumer))
    sets[CONSUMER_LAG] = list(consumers)
    sets[HOP_LATENCY] = _hop_segments(scenario, deliverable)
    sets[DUPLICATES_DROPPED] = consumers + [(p, "accountant") for p in platforms]

    authority = _authority(scenario)
    copies = sorted(
        {
            (entry_platform[e.id], i.key, e.provider)
            for e in scenario.catalogue
            for i in e.items
            if i.key in authority and authority[i.key] != e.provider
        }
    )
    sets[VERIFICATIONS] = [(p, item, dept, result) for p, item, dept in copies for result in VERIFICATION_RESULTS]
    holders = sorted({(p, dept) for p, _, dept in copies})
    sets[QUALITY_EVENTS] = [(p, dept, reason) for p, dept in holders for reason in QUALITY_REASONS]
    return sets


def _hop_segments(scenario: Any, deliverable: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(consumer's platform, segment) of every deliverable subscription's hub path, in a cascade only."""
    hubs = getattr(scenario, "hubs_in_use", ())
    if len(hubs) < 2:
        return []
    platform_of = _platform_of(scenario)
    out: set[tuple[str, str]] = set()
    for _, sub in deliverable:
        path = scenario.subscription_path(sub)
        p = platform_of.get(sub.consumer, scenario.platform.id)
        out.update((p, name) for name in hop_segments(path))
    return sorted(out)


#: process_* and python_* series of prometheus-client's default collectors on Linux
PROCESS_SERIES = 16


def _faust_series(scenario: Any, workers: int, per_topic: bool) -> int:
    """Series of Faust's sensor over all router workers."""
    fixed = 0
    labelled = {"total_events_per_stream": 1, "assignment_operations": 2, "table_operations": 0,  # one stream, completed/error
                "metrics_by_name": 0, "http_status_codes": 0}
    for field, (_, kind, _) in _faust_family_names("faust").items():
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


def estimated_series(scenario: Any, workers: int = 1, faust: bool = True, faust_per_topic: bool = False) -> dict[str, int]:
    """Upper bound of the time series a run of ``scenario`` exposes, per family.

    Keys are family names (``dx_…``), ``faust_*`` (Faust's sensor over all router
    workers), ``process_*`` (prometheus-client's process and Python collectors, one set
    per process) and ``total``. A histogram counts its buckets, ``+Inf``, ``_sum`` and
    ``_count``; ``_created`` series are disabled. Router families labelled by entry or
    flow are counted once per worker (after rebalances a worker may have routed any
    entry); :data:`PER_WORKER` families once per worker by construction.
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


def init_series(role: str, scenario: Any, worker: str = "0") -> int:
    """Create every label set ``role`` can produce at zero; return the number created.

    With the series present from the start, ``rate()`` says 0 instead of "no data"
    (a dashboard's dead-letter panel in a run with no bad input), and ``increase()`` sees
    the first event. Call it once, after :func:`serve_metrics`, in each process.
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


def families(names: Iterable[str] | None = None) -> list[MetricWrapperBase]:
    """The dx_ families (all, or those named)."""
    if names is None:
        return list(METRICS.values())
    return [METRICS[n] for n in names]


def expose(role: str, ident: str, scenario: Any, run_dir: Path | str | None, port: int = 0, run_id: str = "", worker: str = "0",
           platform: str | None = None, say: Callable[[str], None] | None = None) -> Path | None:
    """Everything a process does to be scraped: serve, advertise, pre-create its series.

    The ``ROLE IDENT: metrics on port N`` line goes to ``say`` (default: stderr). Returns
    the service-discovery file written (remove it at exit with :func:`remove_sd_target`),
    or None when there is no run directory to write to.
    """
    bound = serve_metrics(port=port)
    init_series(role, scenario, worker=worker)
    line = f"{role} {ident}: metrics on port {bound}"
    if say is None:
        print(line, file=sys.stderr, flush=True)
    else:
        say(line)
    if run_dir is None and not os.environ.get(SD_DIR_ENV):
        return None
    labels = {"worker": worker, "run_id": run_id, "platform": platform or scenario.platform.id}
    return write_sd_target(Path(run_dir or "."), role, ident, bound, labels)
