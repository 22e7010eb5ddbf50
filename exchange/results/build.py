"""Turn the processes' final reports into a :class:`~schemas.results.Result`.

Histograms are merged from every process before any percentile is read, and every count
is checked against what the producers say they published (the conservation check).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas.results import (
    ClockSkewResult,
    Conservation,
    Counts,
    EntryCounts,
    FlowResult,
    HopResult,
    ItemVerification,
    PathResult,
    Quantiles,
    Result,
    RunInfo,
    WarmupResult,
    WorkflowResult,
)
from schemas.outcomes import DeadLetterReason
from schemas.scenario import Scenario

from exchange.results.latency import merge, new_histogram, quantile_map, quantiles_ms


@dataclass
class Reports:
    """What the controller collected from its children."""

    producers: dict[str, Any]  # final status line of the producer process
    consumers: dict[str, Any]  # final status line of the consumer process
    publish_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative produced)
    consume_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative received)
    routers: list[dict[str, Any]] = field(default_factory=list)  # final status line of each router worker
    error_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative retried)
    publish_intervals: list[dict[str, Any]] = field(default_factory=list)  # producer stats lines
    consume_intervals: list[dict[str, Any]] = field(default_factory=list)  # consumer stats lines
    backlog: list[int] = field(default_factory=list)  # ingress records behind, summed over router workers


def rates(samples: list[tuple[float, int]]) -> list[float]:
    """Per-interval rates from cumulative (time, count) samples."""
    out = []
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        dt = t1 - t0
        out.append(round((c1 - c0) / dt, 1) if dt > 0 else 0.0)
    return out


def expected_outcomes(scenario: Scenario, produced: dict[str, int]) -> dict[str, int]:
    fanout = scenario.fanout()
    return {e: n * fanout.get(e, 1) for e, n in produced.items()}


def build_result(scenario: Scenario, reports: Reports, info: RunInfo, driver: str) -> Result:
    """The run's :class:`~schemas.results.Result` from what its children reported.

    ``reports`` holds the final status lines of the producer, consumer and router processes
    and the samples taken while the run went on (times in s since publishing started);
    ``info`` the run's identity, broker and duration (s); ``driver`` says what routed and on
    which broker (``faust-bulk-router+aiokafka on <broker>``). Counts are records,
    latencies ms, rates records/s. Conservation (every record produced is delivered, denied
    or dead-lettered once per subscription, :func:`expected_outcomes`) is checked here and
    reported in ``Result.conservation``, never raised.
    """
    produced: dict[str, int] = dict(Counter(reports.producers.get("produced", {})) + Counter(reports.consumers.get("reactions_produced", {})))
    consumers = reports.consumers
    flows_raw: dict[str, dict] = consumers.get("flows", {})
    decisions = Counter({(s, d, r): n for s, d, r, n in consumers.get("decisions", [])})
    dead = Counter({(e, r): n for e, r, n in consumers.get("dead_letters", [])})
    subs_by_entry = scenario.subscriptions_by_entry

    flows: dict[str, FlowResult] = {}
    e2e_all, e2e_intended_all = new_histogram(), new_histogram()
    warm_e2e, warm_e2e_intended = new_histogram(), new_histogram()
    for sub in scenario.subscriptions:
        raw = flows_raw.get(sub.id, {})
        e2e = merge([raw["e2e"]]) if raw else new_histogram()
        e2e_i = merge([raw["e2e_intended"]]) if raw else new_histogram()
        e2e_all.add(e2e)
        e2e_intended_all.add(e2e_i)
        if raw.get("warmup_e2e"):
            warm_e2e.add(merge([raw["warmup_e2e"]]))
            warm_e2e_intended.add(merge([raw["warmup_e2e_intended"]]))
        denied_by_reason = {r: n for (s, d, r), n in decisions.items() if s == sub.id and d == "denied"}
        delivered = raw.get("delivered", 0)
        flows[sub.id] = FlowResult(
            entry=sub.entry,
            consumer=sub.consumer,
            delivered=delivered,
            denied=sum(denied_by_reason.values()),
            denied_by_reason=denied_by_reason,
            duplicates=raw.get("duplicates", 0),
            records_per_s=round(delivered / info.duration_s, 1) if info.duration_s else 0.0,
            end_to_end_ms=Quantiles(**quantiles_ms(e2e)),
            end_to_end_from_intended_ms=Quantiles(**quantiles_ms(e2e_i)),
            warmup_delivered=raw.get("warmup_delivered", 0),
        )

    by_entry: dict[str, EntryCounts] = {}
    fanout = scenario.fanout()
    for entry in scenario.catalogue:
        subs = subs_by_entry.get(entry.id, ())
        n = produced.get(entry.id, 0)
        if n == 0 and not any(e == entry.id for e, _ in dead):
            continue
        scopes = {s.id for s in subs} | {entry.id}
        expected = n * fanout[entry.id]
        delivered = sum(flows[s.id].delivered for s in subs)
        denied = sum(c for (s, d, _), c in decisions.items() if s in scopes and d == "denied")
        # a record refused in transit by a hub of a cascade carried one subscription
        dead_lettered = sum(c * (1 if r == DeadLetterReason.bad_transit else fanout[entry.id]) for (e, r), c in dead.items() if e == entry.id)
        by_entry[entry.id] = EntryCounts(
            produced=n,
            subscriptions=len(subs),
            expected=expected,
            delivered=delivered,
            denied=denied,
            dead_lettered=dead_lettered,
            unaccounted=expected - delivered - denied - dead_lettered,
        )

    total_dead = sum(e.dead_lettered for e in by_entry.values())
    counts = Counts(
        produced=sum(produced.values()),
        expected=sum(e.expected for e in by_entry.values()),
        delivered=sum(e.delivered for e in by_entry.values()),
        denied=sum(e.denied for e in by_entry.values()),
        dead_lettered=total_dead,
        unaccounted=sum(e.unaccounted for e in by_entry.values()),
        duplicates=consumers.get("duplicates", 0),
        undecodable=sum(n for _, _, n in consumers.get("undecodable", [])),
        foreign_dead_lettered=sum(n for _, _, n in consumers.get("foreign_dead_letters", [])),
        foreign_dead_letters_by_reason=_by_reason(consumers.get("foreign_dead_letters", [])),
    )
    conservation = _conservation(counts, by_entry)
    onss = _one_number_one_source(reports.routers, consumers)

    pub = merge([reports.producers["publish_latency"]]) if "publish_latency" in reports.producers else new_histogram()
    delay = merge([reports.producers["publish_delay"]]) if "publish_delay" in reports.producers else new_histogram()
    ingress_partitions = sum(e.partitions for e in scenario.catalogue if e.id in produced)
    omb = {
        **_aggregated("aggregatedPublishLatency", pub, 1000.0),
        **_aggregated("aggregatedPublishDelayLatency", delay, 1.0),  # µs, as OMB
        **_aggregated("aggregatedEndToEndLatency", e2e_all, 1000.0),
        **_series("publishLatency", [i.get("publish_latency", {}) for i in reports.publish_intervals]),
        **_series("publishDelayLatency", [i.get("publish_delay_us", {}) for i in reports.publish_intervals]),
        **_series("endToEndLatency", [i.get("e2e", {}) for i in reports.consume_intervals]),
    }
    batch_entries = {e for e, p in scenario.entry_profiles().items() if p.kind == "batch"}
    for name, flow in flows.items():
        if flow.entry in batch_entries and flow.delivered:
            flow.within_cycle_share = round(flows_raw.get(name, {}).get("within_cycle", 0) / flow.delivered, 4)
        per = [i.get("flow_latency", {}).get(name) for i in reports.consume_intervals]
        flow.interval_p50_ms = [p["50pct"] if p else None for p in per]
        flow.interval_p99_ms = [p["99pct"] if p else None for p in per]
    return Result(
        workload=scenario.name,
        driver=driver,
        messageSize=scenario.load.record_size,
        topics=len(produced),
        partitions=ingress_partitions,
        producersPerTopic=1,
        consumersPerTopic=max((len(subs_by_entry.get(e, ())) for e in produced), default=0),
        publishRate=rates(reports.publish_samples),
        publishErrorRate=rates(reports.error_samples),
        consumeRate=rates(reports.consume_samples),
        backlog=reports.backlog,
        consumer_lag={
            dept: [i.get("lag", {}).get(dept, 0) for i in reports.consume_intervals]
            for dept in sorted({d for i in reports.consume_intervals for d in i.get("lag", {})})
        },
        **omb,
        counts=counts,
        counts_by_entry=by_entry,
        flows=flows,
        hops={name: _hop(consumers.get("hops", {}).get(name), consumers.get("warmup_hops", {}).get(name, 0))
              for name in sorted({*consumers.get("hops", {}), *consumers.get("warmup_hops", {})})},
        paths={
            name: PathResult(hubs=list(p["hubs"]), delivered=(h := merge([p["e2e"]])).get_total_count() + p.get("warmup", 0),
                             warmup_delivered=p.get("warmup", 0), end_to_end_ms=Quantiles(**quantiles_ms(h)))
            for name, p in sorted(consumers.get("paths", {}).items())
        },
        conservation=conservation,
        one_number_one_source=onss,
        workflows={
            name: WorkflowResult(completed=w["completed"], incomplete=w["incomplete"], time_ms=Quantiles(**quantiles_ms(merge([w["times"]]))))
            for name, w in consumers.get("workflows", {}).items()
        },
        control_actions=_control_actions(reports.routers),
        warmup=_warmup(info.warmup_s, reports.producers, flows, warm_e2e, warm_e2e_intended),
        clock_skew={source: ClockSkewResult(**v) for source, v in sorted(consumers.get("clock_skew", {}).items())},
        run=info,
    )


_OMB = {"Avg": "avg", "50pct": "50pct", "75pct": "75pct", "95pct": "95pct", "99pct": "99pct", "999pct": "999pct",
        "9999pct": "9999pct", "99999pct": "99999pct", "Max": "max"}


def _warmup(seconds: float, producers: dict[str, Any], flows: dict[str, FlowResult], e2e, e2e_intended) -> WarmupResult | None:
    """The warm-up's own block (exchange/runner/warmup.py); None when the run had none."""
    if not seconds:
        return None
    pub = merge([producers["warmup_publish_latency"]]) if "warmup_publish_latency" in producers else new_histogram()
    delay = merge([producers["warmup_publish_delay"]]) if "warmup_publish_delay" in producers else new_histogram()
    return WarmupResult(
        seconds=seconds,
        published=producers.get("warmup_published", 0),
        delivered=sum(f.warmup_delivered for f in flows.values()),
        publish_latency_ms=Quantiles(**quantiles_ms(pub)),
        publish_delay_ms=Quantiles(**quantiles_ms(delay)),
        end_to_end_ms=Quantiles(**quantiles_ms(e2e)),
        end_to_end_from_intended_ms=Quantiles(**quantiles_ms(e2e_intended)),
    )


def _hop(encoded: str | None, warmup: int) -> HopResult:
    h = merge([encoded] if encoded else [])
    return HopResult(count=h.get_total_count() + warmup, warmup_count=warmup, latency_ms=Quantiles(**quantiles_ms(h)))


def _aggregated(prefix: str, hist, scale: float) -> dict[str, Any]:
    """OMB's aggregated fields for one histogram (µs inside; ``scale`` 1000 gives ms)."""
    q = quantiles_ms(hist)  # ms
    out: dict[str, Any] = {prefix + suffix: round(q[key] * 1000.0 / scale, 3) for suffix, key in _OMB.items()}
    out[prefix + "Quantiles"] = quantile_map(hist, scale)
    return out


def _series(prefix: str, intervals: list[dict[str, float]]) -> dict[str, list[float]]:
    """OMB's per-interval lists from each interval's figures (0 where an interval had none)."""
    return {prefix + suffix: [round(i.get(key, 0.0), 3) for i in intervals] for suffix, key in _OMB.items()}


def _one_number_one_source(routers: list[dict[str, Any]], consumers: dict[str, Any]) -> dict[str, ItemVerification]:
    totals: dict[str, Counter] = {}
    by_dept: dict[str, Counter] = {}
    for final in routers:
        for item, dept, outcome, n in final.get("verifications", []):
            totals.setdefault(item, Counter())[outcome] += n
            by_dept.setdefault(item, Counter())[f"{dept}:{outcome}"] += n
    events: Counter = Counter()
    for item, _dept, n in consumers.get("quality_events", []):
        events[item] += n
    out = {}
    for item in sorted(set(totals) | set(events)):
        c = totals.get(item, Counter())
        checked = c["verified"] + c["conflict"]
        out[item] = ItemVerification(
            verified=c["verified"], conflicts=c["conflict"], unverified=c["unverified"], invalid_key=c["invalid_key"],
            verification_rate=round(c["verified"] / checked, 4) if checked else 0.0,
            quality_events=events[item],
            by_department=dict(sorted(by_dept.get(item, Counter()).items())),
        )
    return out


def _control_actions(routers: list[dict[str, Any]]) -> dict[str, int]:
    out: Counter = Counter()
    for final in routers:
        for action, outcome, n in final.get("control_actions", []):
            out[f"{action}:{outcome}"] += n
    return dict(out)


def _conservation(counts: Counts, by_entry: dict[str, EntryCounts]) -> Conservation:
    if counts.unaccounted == 0 and all(e.unaccounted == 0 for e in by_entry.values()):
        undecodable = (f"; {counts.undecodable:,} records in ingress batches that could not be decoded were "
                       "dead-lettered and are not this run's" if counts.undecodable else "")
        return Conservation(
            ok=True,
            message=(
                f"all {counts.expected:,} outcomes of {counts.produced:,} records accounted for: "
                f"{counts.delivered:,} delivered, {counts.denied:,} denied, {counts.dead_lettered:,} dead-lettered"
                + undecodable
            ),
        )
    off = {k: e.unaccounted for k, e in by_entry.items() if e.unaccounted}
    undecodable = ""
    if counts.undecodable and any(e.unaccounted > 0 for e in by_entry.values()):
        undecodable = (f"; {counts.undecodable:,} records sit in ingress batches the router could not decode "
                       "(dead letters unsupported_codec / corrupt_batch), whose run cannot be read")
    if any(e.unaccounted < 0 for e in by_entry.values()):  # more outcomes than the run's producers produced
        undecodable += "; negative: records carrying this run's id were written by another client"
    return Conservation(
        ok=False,
        message=f"{counts.unaccounted:,} of {counts.expected:,} outcomes unaccounted for (by entry: {off}){undecodable}",
    )


def _by_reason(rows: list[list[Any]]) -> dict[str, int]:
    """``[[entry, reason, n], …]`` → reason → n."""
    out: dict[str, int] = {}
    for *_, reason, n in rows:
        out[reason] = out.get(reason, 0) + n
    return dict(sorted(out.items()))
