"""Judging a run against the scenario's service-level objectives (pure: result in, verdicts out)."""

from __future__ import annotations

from exchange.results.latency import merge, new_histogram
from schemas.results import Result, SloVerdict
from schemas.scenario import SLO, Scenario


def judge(scenario: Scenario, result: Result, flow_histograms: dict[str, str]) -> list[SloVerdict]:
    """One verdict per SLO. ``flow_histograms`` holds each flow's encoded end-to-end histogram,
    so percentiles over a subset of flows are computed over their records, not averaged."""
    return [_verdict(slo, _measure(slo, result, flow_histograms)) for slo in scenario.slos]


def _verdict(slo: SLO, measured: float | None) -> SloVerdict:
    if slo.max is not None:
        target, ok = f"≤ {slo.max:g}", measured is not None and measured <= slo.max
    else:
        target, ok = f"≥ {slo.min:g}", measured is not None and measured >= slo.min
    return SloVerdict(
        name=slo.name, metric=slo.metric, target=target, measured=None if measured is None else round(measured, 4), passed=ok, entries=slo.entries
    )


def _measure(slo: SLO, result: Result, flow_histograms: dict[str, str]) -> float | None:
    flows = {k: f for k, f in result.flows.items() if slo.entries is None or f.entry in slo.entries}
    c = result.counts
    if slo.metric.startswith("e2e_"):
        hist = new_histogram()
        for name in flows:
            if name in flow_histograms:
                hist.add(merge([flow_histograms[name]]))
        if hist.get_total_count() == 0:
            return None
        if slo.metric == "e2e_max_ms":
            return hist.get_max_value() / 1000
        percentile = {"e2e_p50_ms": 50.0, "e2e_p99_ms": 99.0, "e2e_p999_ms": 99.9}[slo.metric]
        return hist.get_value_at_percentile(percentile) / 1000
    if slo.metric == "publish_delay_p99_ms":
        return result.aggregatedPublishDelayLatency99pct / 1000
    if slo.metric == "denied_rate":
        return c.denied / c.expected if c.expected else None
    if slo.metric == "dead_letter_rate":
        return c.dead_lettered / c.expected if c.expected else None
    if slo.metric == "unaccounted":
        return float(c.unaccounted)
    if slo.metric == "delivered_per_s":
        return sum(f.records_per_s for f in flows.values())
    if slo.metric == "verification_rate":
        items = result.one_number_one_source.values()
        checked = sum(i.verified + i.conflicts for i in items)
        return sum(i.verified for i in items) / checked if checked else None
    if slo.metric == "batch_within_cycle":
        batch = [f for f in flows.values() if f.within_cycle_share is not None and f.delivered]
        total = sum(f.delivered for f in batch)
        return sum((f.within_cycle_share or 0.0) * f.delivered for f in batch) / total if total else None
    if slo.metric == "workflow_p99_ms":
        times = [w.time_ms.p99 for w in result.workflows.values() if w.completed]
        return max(times) if times else None
    raise ValueError(f"unknown SLO metric {slo.metric}")
