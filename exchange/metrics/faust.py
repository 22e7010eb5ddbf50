"""Faust's own Prometheus sensor, exposed through our registry in our conventions."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from exchange.metrics.families import LATENCY_BUCKETS

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


def faust_family_names(prefix: str) -> dict[str, tuple[str, str, str]]:
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
        names = faust_family_names(prefix)
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
    for field, (name, kind, _) in faust_family_names(prefix).items():
        if field in FAUST_PER_TOPIC_FIELDS and not per_topic:
            continue
        if kind == "counter":
            out.add(f"{name}_total")
        elif kind == "histogram":
            out.update((f"{name}_bucket", f"{name}_sum", f"{name}_count"))
        else:
            out.add(name)
    return frozenset(out)
