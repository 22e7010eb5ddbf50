"""Prometheus metrics of every simulator process, defined in one package.

By job: :mod:`~exchange.metrics.families` defines the ``dx_`` families and which role
exposes which; :mod:`~exchange.metrics.labels` derives the label values each can take
from a scenario (and the policy its routers compile); :mod:`~exchange.metrics.server`
serves them and writes the service-discovery files; :mod:`~exchange.metrics.faust`
exposes Faust's own sensor the same way. Everything callers use is re-exported here:
``from exchange import metrics; metrics.ROUTER_DECISIONS.labels(...)``.

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
* Latency histograms (:data:`~exchange.metrics.families.LATENCY_BUCKETS`) go from 0.5 ms to 10 s in 1-2-5 steps,
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

from exchange.metrics.families import (
    APPROVALS,
    AUDIT_RECORDS_READ,
    AUDIT_RECORDS_WRITTEN,
    BATCH_BUCKETS,
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
    ROUTER_BATCH_RECORDS,
    ROUTER_BATCH_SECONDS,
    ROUTER_COMMIT_SECONDS,
    ROUTER_DECISIONS,
    ROUTER_LAG,
    ROUTER_MASKED_RECORDS,
    ROUTER_READY_SECONDS,
    ROUTER_RECORDS_IN,
    RUN_ACCOUNTED_OUTCOMES,
    RUN_DURATION_SECONDS,
    RUN_ELAPSED_SECONDS,
    RUN_EXPECTED_OUTCOMES,
    RUN_PRODUCED_RECORDS,
    RUN_UNACCOUNTED_OUTCOMES,
    SLO_STATUS,
    VERIFICATIONS,
    exposed_names,
    observe_many_ns,
    sample_names,
    series_per_child,
)
from exchange.metrics.faust import FAUST_PER_TOPIC_FIELDS, faust_exposed_names, faust_sensor
from exchange.metrics.labels import (
    APPROVAL_STATES,
    DEAD_LETTER_REASONS,
    DEFAULT_SLOS,
    DELIVERED_REASONS,
    DENIED_REASONS,
    PROCESS_SERIES,
    QUALITY_REASONS,
    TRANSIT_ENTRY,
    VERIFICATION_RESULTS,
    estimated_series,
    init_series,
    label_sets,
    router_outcomes,
)
from exchange.metrics.server import (
    ADVERTISE_HOST_ENV,
    DEFAULT_METRICS_PORT,
    METRICS_HOST_ENV,
    SD_DIR_ENV,
    SD_FILE_GLOB,
    advertised_host,
    expose,
    remove_sd_target,
    sd_target_path,
    serve_metrics,
    stop_metrics_servers,
    write_sd_target,
)

__all__ = [
    "ADVERTISE_HOST_ENV",
    "APPROVALS",
    "APPROVAL_STATES",
    "AUDIT_RECORDS_READ",
    "AUDIT_RECORDS_WRITTEN",
    "BATCH_BUCKETS",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DEAD_LETTER_REASONS",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_SLOS",
    "DELIVERED_REASONS",
    "DENIED_REASONS",
    "DUPLICATES_DROPPED",
    "END_TO_END_LATENCY",
    "FAUST_PER_TOPIC_FIELDS",
    "HOP_LATENCY",
    "LATENCY_BUCKETS",
    "METRICS",
    "METRICS_HOST_ENV",
    "PER_WORKER",
    "PROCESS_SERIES",
    "PUBLISHED_BYTES",
    "PUBLISH_DELAY",
    "PUBLISH_ERRORS",
    "PUBLISH_LATENCY",
    "PUBLISH_RETRIES",
    "QUALITY_EVENTS",
    "QUALITY_REASONS",
    "RECORDS_DELIVERED",
    "RECORDS_PUBLISHED",
    "ROLE_METRICS",
    "ROUTER_BATCH_RECORDS",
    "ROUTER_BATCH_SECONDS",
    "ROUTER_COMMIT_SECONDS",
    "ROUTER_DECISIONS",
    "ROUTER_LAG",
    "ROUTER_MASKED_RECORDS",
    "ROUTER_READY_SECONDS",
    "ROUTER_RECORDS_IN",
    "RUN_ACCOUNTED_OUTCOMES",
    "RUN_DURATION_SECONDS",
    "RUN_ELAPSED_SECONDS",
    "RUN_EXPECTED_OUTCOMES",
    "RUN_PRODUCED_RECORDS",
    "RUN_UNACCOUNTED_OUTCOMES",
    "SD_DIR_ENV",
    "SD_FILE_GLOB",
    "SLO_STATUS",
    "TRANSIT_ENTRY",
    "VERIFICATIONS",
    "VERIFICATION_RESULTS",
    "advertised_host",
    "estimated_series",
    "expose",
    "exposed_names",
    "faust_exposed_names",
    "faust_sensor",
    "init_series",
    "label_sets",
    "observe_many_ns",
    "remove_sd_target",
    "router_outcomes",
    "sample_names",
    "sd_target_path",
    "series_per_child",
    "serve_metrics",
    "stop_metrics_servers",
    "write_sd_target",
]
