"""Turn the processes' final reports into a :class:`~schemas.results.Result`.

Histograms are merged from every process before any percentile is read, and every count
is checked against what the producers say they published (the conservation check).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exchange.results.latency import HdrHistogram, merge, new_histogram, quantile_map, quantiles_ms
from schemas.envelope import IngressLayout
from schemas.outcomes import DeadLetterReason
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
from schemas.scenario import Scenario
from schemas.status import (
    ConsumersFinal,
    ConsumersStats,
    ControlActionCount,
    DeadLetterCount,
    ProducersFinal,
    ProducersStats,
    QualityEventCount,
    RouterFinal,
    RouterStats,
    VerificationCount,
)


@dataclass
class Reports:
    """What the controller collected from its children (schemas/status.py messages' bodies)."""

    producers: ProducersFinal
    consumers: ConsumersFinal
    publish_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative produced)
    consume_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative received)
    # each router worker incarnation's final report, or its last stats if it was killed first
    routers: list[RouterFinal | RouterStats] = field(default_factory=list)
    error_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative retried)
    publish_intervals: list[ProducersStats] = field(default_factory=list)
    consume_intervals: list[ConsumersStats] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)  # ingress records behind, summed over router workers


def rates(samples: list[tuple[float, int]]) -> list[float]:
    """Per-interval rates from cumulative (time, count) samples."""
    out = []
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        dt = t1 - t0
        out.append(round((c1 - c0) / dt, 1) if dt > 0 else 0.0)
    return out


def expected_outcomes(scenario: Scenario, produced: dict[str, int]) -> dict[str, int]:
    """Entry → outcomes its ``produced`` records must account for: one per subscription, at least one."""
    fanout = scenario.fanout()
    return {e: n * fanout.get(e, 1) for e, n in produced.items()}


def produced_records(producers: ProducersFinal, reactions_produced: dict[str, int]) -> dict[str, int]:
    """Entry → records the run produced: the producers' and the reactions' (entries with none left out)."""
    return dict(Counter(producers.produced) + Counter(reactions_produced))


def build_result(scenario: Scenario, reports: Reports, info: RunInfo, driver: str) -> Result:
    """The run's :class:`~schemas.results.Result` from what its children reported.

    ``reports`` holds the final reports of the producer, consumer and router processes
    (:mod:`schemas.status` bodies) and the samples taken while the run went on (times in s
    since publishing started); ``info`` the run's identity, broker and duration (s);
    ``driver`` says what routed and on which broker (``faust-bulk-router+aiokafka on
    <broker>``). Counts are records, latencies ms, rates records/s. Conservation (every
    record produced is delivered, denied or dead-lettered once per subscription,
    :func:`expected_outcomes`) is checked here and reported in ``Result.conservation``,
    never raised.
    """
    consumers = reports.consumers
    produced = produced_records(reports.producers, consumers.reactions_produced)
    flows, e2e = _flows(scenario, consumers, info.duration_s)
    by_entry = _counts_by_entry(scenario, produced, flows, consumers)
    counts = _counts(produced, by_entry, consumers)
    _interval_latencies(scenario, flows, consumers, reports.consume_intervals)
    subs_by_entry = scenario.subscriptions_by_entry
    layout = IngressLayout(scenario)  # OMB's topics and partitions: the ingress topics records were produced to
    on_topic: dict[str, list[str]] = {}
    for e in produced:
        if e in layout.topic_of:
            on_topic.setdefault(layout.topic_of[e], []).append(e)
    return Result(
        workload=scenario.name,
        driver=driver,
        messageSize=scenario.load.record_size,
        topics=len(on_topic),
        partitions=sum(layout.partitions.get(t, 0) for t in on_topic),
        # one producer per department and producer worker
        producersPerTopic=max((len({scenario.entries[e].provider for e in es}) for es in on_topic.values()), default=1) * info.producer_workers,
        consumersPerTopic=max((sum(len(subs_by_entry.get(e, ())) for e in es) for es in on_topic.values()), default=0),
        publishRate=rates(reports.publish_samples),
        publishErrorRate=rates(reports.error_samples),
        consumeRate=rates(reports.consume_samples),
        backlog=reports.backlog,
        consumer_lag=_consumer_lag(reports.consume_intervals),
        **_omb_latencies(reports, e2e.measured),
        counts=counts,
        counts_by_entry=by_entry,
        flows=flows,
        hops=_hops(consumers),
        paths=_paths(consumers),
        conservation=_conservation(counts, by_entry),
        one_number_one_source=_one_number_one_source([v for r in reports.routers for v in r.verifications], consumers.quality_events),
        workflows={
            name: WorkflowResult(completed=w.completed, incomplete=w.incomplete, time_ms=Quantiles(**quantiles_ms(merge([w.times]))))
            for name, w in consumers.workflows.items()
        },
        control_actions=_control_actions([a for r in reports.routers for a in r.control_actions]),
        warmup=_warmup(info.warmup_s, reports.producers, flows, e2e),
        clock_skew={source: ClockSkewResult(**v.model_dump()) for source, v in sorted(consumers.clock_skew.items())},
        run=info,
    )


@dataclass
class _EndToEnd:
    """End-to-end histograms merged over every flow: past the warm-up, and in it."""

    measured: HdrHistogram = field(default_factory=new_histogram)
    measured_intended: HdrHistogram = field(default_factory=new_histogram)
    warmup: HdrHistogram = field(default_factory=new_histogram)
    warmup_intended: HdrHistogram = field(default_factory=new_histogram)


def _flows(scenario: Scenario, consumers: ConsumersFinal, duration_s: float) -> tuple[dict[str, FlowResult], _EndToEnd]:
    """Every subscription's result (a flow without deliveries too), and the merged histograms."""
    denials = Counter({(d.scope, d.reason): d.n for d in consumers.decisions if d.decision == "denied"})
    flows: dict[str, FlowResult] = {}
    total = _EndToEnd()
    for sub in scenario.subscriptions:
        raw = consumers.flows.get(sub.id)
        e2e = merge([raw.e2e]) if raw else new_histogram()
        e2e_i = merge([raw.e2e_intended]) if raw else new_histogram()
        total.measured.add(e2e)
        total.measured_intended.add(e2e_i)
        if raw is not None and raw.warmup_e2e:
            total.warmup.add(merge([raw.warmup_e2e]))
            total.warmup_intended.add(merge([raw.warmup_e2e_intended]))
        denied_by_reason = {r: n for (s, r), n in denials.items() if s == sub.id}
        delivered = raw.delivered if raw else 0
        flows[sub.id] = FlowResult(
            entry=sub.entry,
            consumer=sub.consumer,
            delivered=delivered,
            denied=sum(denied_by_reason.values()),
            denied_by_reason=denied_by_reason,
            duplicates=raw.duplicates if raw else 0,
            records_per_s=round(delivered / duration_s, 1) if duration_s else 0.0,
            end_to_end_ms=Quantiles(**quantiles_ms(e2e)),
            end_to_end_from_intended_ms=Quantiles(**quantiles_ms(e2e_i)),
            warmup_delivered=raw.warmup_delivered if raw else 0,
        )
    return flows, total


def _counts_by_entry(scenario: Scenario, produced: dict[str, int], flows: dict[str, FlowResult], consumers: ConsumersFinal) -> dict[str, EntryCounts]:
    """The conservation check's figures per entry that produced records or has dead letters."""
    denials: Counter = Counter()  # scope → records denied
    for d in consumers.decisions:
        if d.decision == "denied":
            denials[d.scope] += d.n
    dead = Counter({(d.entry, d.reason): d.n for d in consumers.dead_letters})
    subs_by_entry = scenario.subscriptions_by_entry
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
        denied = sum(c for scope, c in denials.items() if scope in scopes)
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
    return by_entry


def _counts(produced: dict[str, int], by_entry: dict[str, EntryCounts], consumers: ConsumersFinal) -> Counts:
    """The run's totals: the entries' sums, and what the consumers counted apart."""
    return Counts(
        produced=sum(produced.values()),
        expected=sum(e.expected for e in by_entry.values()),
        delivered=sum(e.delivered for e in by_entry.values()),
        denied=sum(e.denied for e in by_entry.values()),
        dead_lettered=sum(e.dead_lettered for e in by_entry.values()),
        unaccounted=sum(e.unaccounted for e in by_entry.values()),
        duplicates=consumers.duplicates,
        undecodable=sum(r.n for r in consumers.undecodable),
        foreign_dead_lettered=sum(r.n for r in consumers.foreign_dead_letters),
        foreign_dead_letters_by_reason=_by_reason(consumers.foreign_dead_letters),
    )


def _omb_latencies(reports: Reports, e2e: HdrHistogram) -> dict[str, Any]:
    """OMB's aggregated latency fields and per-interval lists: publish, publish delay, end to end."""
    pub = merge([reports.producers.publish_latency])
    delay = merge([reports.producers.publish_delay])
    return {
        **_aggregated("aggregatedPublishLatency", pub, 1000.0),
        **_aggregated("aggregatedPublishDelayLatency", delay, 1.0),  # µs, as OMB
        **_aggregated("aggregatedEndToEndLatency", e2e, 1000.0),
        **_series("publishLatency", [i.publish_latency for i in reports.publish_intervals]),
        **_series("publishDelayLatency", [i.publish_delay_us for i in reports.publish_intervals]),
        **_series("endToEndLatency", [i.e2e for i in reports.consume_intervals]),
    }


def _interval_latencies(scenario: Scenario, flows: dict[str, FlowResult], consumers: ConsumersFinal, intervals: list[ConsumersStats]) -> None:
    """Each flow's per-interval p50/p99, and a batch entry's share delivered within its cycle."""
    batch_entries = {e for e, p in scenario.entry_profiles().items() if p.kind == "batch"}
    for name, flow in flows.items():
        if flow.entry in batch_entries and flow.delivered:
            raw = consumers.flows.get(name)
            flow.within_cycle_share = round((raw.within_cycle if raw else 0) / flow.delivered, 4)
        per = [i.flow_latency.get(name) for i in intervals]
        flow.interval_p50_ms = [p.p50_ms if p else None for p in per]
        flow.interval_p99_ms = [p.p99_ms if p else None for p in per]


def _consumer_lag(intervals: list[ConsumersStats]) -> dict[str, list[int]]:
    """Department → its consumer lag at each interval."""
    return {dept: [i.lag.get(dept, 0) for i in intervals] for dept in sorted({d for i in intervals for d in i.lag})}


def _hops(consumers: ConsumersFinal) -> dict[str, HopResult]:
    names = sorted({*consumers.hops, *consumers.warmup_hops})
    return {name: _hop(consumers.hops.get(name), consumers.warmup_hops.get(name, 0)) for name in names}


def _paths(consumers: ConsumersFinal) -> dict[str, PathResult]:
    out = {}
    for name, p in sorted(consumers.paths.items()):
        h = merge([p.e2e])
        out[name] = PathResult(
            hubs=list(p.hubs), delivered=h.get_total_count() + p.warmup, warmup_delivered=p.warmup, end_to_end_ms=Quantiles(**quantiles_ms(h))
        )
    return out


_OMB = {
    "Avg": "avg",
    "50pct": "50pct",
    "75pct": "75pct",
    "95pct": "95pct",
    "99pct": "99pct",
    "999pct": "999pct",
    "9999pct": "9999pct",
    "99999pct": "99999pct",
    "Max": "max",
}


def _warmup(seconds: float, producers: ProducersFinal, flows: dict[str, FlowResult], e2e: _EndToEnd) -> WarmupResult | None:
    """The warm-up's own block (exchange/runner/warmup.py); None when the run had none."""
    if not seconds:
        return None
    pub = merge([producers.warmup_publish_latency])
    delay = merge([producers.warmup_publish_delay])
    return WarmupResult(
        seconds=seconds,
        published=producers.warmup_published,
        delivered=sum(f.warmup_delivered for f in flows.values()),
        publish_latency_ms=Quantiles(**quantiles_ms(pub)),
        publish_delay_ms=Quantiles(**quantiles_ms(delay)),
        end_to_end_ms=Quantiles(**quantiles_ms(e2e.warmup)),
        end_to_end_from_intended_ms=Quantiles(**quantiles_ms(e2e.warmup_intended)),
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


def _one_number_one_source(verifications: list[VerificationCount], quality_events: list[QualityEventCount]) -> dict[str, ItemVerification]:
    """一数一源 per item: the routers' checks of copies against the authority, and the quality events."""
    totals: dict[str, Counter] = {}
    by_dept: dict[str, Counter] = {}
    for v in verifications:
        totals.setdefault(v.item, Counter())[v.outcome] += v.n
        by_dept.setdefault(v.item, Counter())[f"{v.department}:{v.outcome}"] += v.n
    events: Counter = Counter()
    for e in quality_events:
        events[e.item] += e.n
    out = {}
    for item in sorted(set(totals) | set(events)):
        c = totals.get(item, Counter())
        checked = c["verified"] + c["conflict"]
        out[item] = ItemVerification(
            verified=c["verified"],
            conflicts=c["conflict"],
            unverified=c["unverified"],
            invalid_key=c["invalid_key"],
            verification_rate=round(c["verified"] / checked, 4) if checked else 0.0,
            quality_events=events[item],
            by_department=dict(sorted(by_dept.get(item, Counter()).items())),
        )
    return out


def _control_actions(actions: list[ControlActionCount]) -> dict[str, int]:
    """``action:outcome`` → count, over every router worker."""
    out: Counter = Counter()
    for a in actions:
        out[f"{a.action}:{a.outcome}"] += a.n
    return dict(out)


def _conservation(counts: Counts, by_entry: dict[str, EntryCounts]) -> Conservation:
    if counts.unaccounted == 0 and all(e.unaccounted == 0 for e in by_entry.values()):
        undecodable = (
            f"; {counts.undecodable:,} records in ingress batches that could not be decoded were dead-lettered and are not this run's"
            if counts.undecodable
            else ""
        )
        return Conservation(
            ok=True,
            message=(
                f"all {counts.expected:,} outcomes of {counts.produced:,} records accounted for: "
                f"{counts.delivered:,} delivered, {counts.denied:,} denied, {counts.dead_lettered:,} dead-lettered" + undecodable
            ),
        )
    by = ", ".join(f"{k} {e.unaccounted:,}" for k, e in by_entry.items() if e.unaccounted)
    undecodable = ""
    if counts.undecodable and any(e.unaccounted > 0 for e in by_entry.values()):
        undecodable = (
            f"; {counts.undecodable:,} records sit in ingress batches the router could not decode "
            "(dead letters unsupported_codec / corrupt_batch), whose run cannot be read"
        )
    if any(e.unaccounted < 0 for e in by_entry.values()):  # more outcomes than the run's producers produced
        undecodable += "; negative: records carrying this run's id were written by another client"
    return Conservation(ok=False, message=f"{counts.unaccounted:,} of {counts.expected:,} outcomes unaccounted for (by entry: {by}){undecodable}")


def _by_reason(rows: list[DeadLetterCount]) -> dict[str, int]:
    """Dead letters by entry and reason → reason → n, reasons in order."""
    out: dict[str, int] = {}
    for row in rows:
        out[row.reason] = out.get(row.reason, 0) + row.n
    return dict(sorted(out.items()))


#: the share of the machine's cores busy from which a run is CPU-bound (:func:`cpu_warning`)
CPU_BOUND = 0.9


def cpu_warning(run: RunInfo) -> str | None:
    """One line when the controller's machine was CPU-bound over the run's CPU window
    (``run.machine_busy`` ≥ :data:`CPU_BOUND`), with the cores each role kept busy; else None.
    Such a run's latencies include the time records waited for a core: they measure the machine
    as much as the design."""
    if run.machine_busy is None or run.machine_busy < CPU_BOUND or not run.cpu_window_s:
        return None
    window = run.cpu_window_s
    roles = ", ".join(f"{role} {seconds / window:.2f}" for role, seconds in sorted(run.cpu_s.items(), key=lambda kv: -kv[1]) if seconds > 0)
    return (
        f"CPU-bound: this machine's {run.machine_cores} cores were {run.machine_busy:.0%} busy from the start of publishing to "
        f"the final reports ({roles} cores); latencies include waiting for a core, so they measure this machine as much as the design: "
        "spread the run over machines (docs/distributed.md) or lower --rate-multiplier"
    )
