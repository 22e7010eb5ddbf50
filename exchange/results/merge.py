"""Several producer or consumer workers' reports as one (``exchange run --producer-workers
P --consumer-workers C``).

Final reports merge exactly: counters are summed (counts per key, named rows per key),
HdrHistograms are added before any percentile is read, first/last times take the
earliest/latest. The per-interval ``stats`` of one round (one message from every worker)
merge their counters exactly too; their interval quantiles, which are samples' figures
and cannot be added, become the highest of the workers' for each percentile (an upper
bound; the aggregated figures of ``result.json`` come from the merged histograms).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TypeVar

from exchange.results.latency import encode, merge
from schemas.status import (
    ClockSkewCount,
    ConsumersFinal,
    ConsumersStats,
    DeadLetterCount,
    DecisionCount,
    FlowInterval,
    FlowReport,
    PathReport,
    ProducersFinal,
    ProducersStats,
    QualityEventCount,
    SamplesReport,
    WorkflowReport,
)

R = TypeVar("R", DecisionCount, DeadLetterCount, QualityEventCount)


def producers_final(reports: list[ProducersFinal]) -> ProducersFinal:
    """One report for every producer worker: records summed per entry, histograms merged, the longest elapsed time."""
    if len(reports) == 1:
        return reports[0]
    return ProducersFinal(
        elapsed_s=max(r.elapsed_s for r in reports),
        produced=_sum_dicts(r.produced for r in reports),
        sent=sum(r.sent for r in reports),
        retried=sum(r.retried for r in reports),
        publish_delay=_hist(r.publish_delay for r in reports),
        publish_latency=_hist(r.publish_latency for r in reports),
        warmup_published=sum(r.warmup_published for r in reports),
        warmup_publish_delay=_hist(r.warmup_publish_delay for r in reports),
        warmup_publish_latency=_hist(r.warmup_publish_latency for r in reports),
    )


def producers_stats(reports: list[ProducersStats]) -> ProducersStats:
    """One round of producer workers' stats: counters summed, each interval quantile the highest."""
    if len(reports) == 1:
        return reports[0]
    return ProducersStats(
        t=max(r.t for r in reports),
        produced=sum(r.produced for r in reports),
        sent=sum(r.sent for r in reports),
        retried=sum(r.retried for r in reports),
        publish_latency=_highest(r.publish_latency for r in reports),
        publish_delay_us=_highest(r.publish_delay_us for r in reports),
    )


def _totals(reports: list[ConsumersFinal] | list[ConsumersStats]) -> dict:
    """The :class:`~schemas.status.ConsumersTotals` fields of several workers' reports, combined."""
    return {
        **{
            name: sum(getattr(r, name) for r in reports)
            for name in (
                "received",
                "delivered",
                "duplicates",
                "unlabelled",
                "foreign",
                "denied",
                "dead_lettered",
                "dead_letter_records",
                "audited_deliveries",
                "conflicts",
                "reactions_pending",
            )
        },
        "first_ns": min((r.first_ns for r in reports if r.first_ns), default=0),
        "last_ns": max(r.last_ns for r in reports),
        "lag": _sum_dicts(r.lag for r in reports),  # departments are disjoint: a union
        "clock_skew": _clock_skew(reports),
        "reactions_produced": _sum_dicts(r.reactions_produced for r in reports),
    }


def consumers_stats(reports: list[ConsumersStats]) -> ConsumersStats:
    """One round of consumer workers' stats (each worker's latest): counts summed, flows and
    lags joined (each department is on one worker), end-to-end quantiles the highest."""
    if len(reports) == 1:
        return reports[0]
    flows: dict[str, FlowInterval] = {}
    for r in reports:
        flows.update(r.flow_latency)
    return ConsumersStats(**_totals(reports), e2e=_highest(r.e2e for r in reports), flow_latency=flows, lag_known=all(r.lag_known for r in reports))


def consumers_final(reports: list[ConsumersFinal]) -> ConsumersFinal:
    """One report for every consumer worker: counts summed, per-key rows summed, histograms merged."""
    if len(reports) == 1:
        return reports[0]
    flows: dict[str, list[FlowReport]] = {}
    paths: dict[str, list[PathReport]] = {}
    hops: dict[str, list[str]] = {}
    workflows: dict[str, list[WorkflowReport]] = {}
    for r in reports:
        for name, f in r.flows.items():
            flows.setdefault(name, []).append(f)
        for name, p in r.paths.items():
            paths.setdefault(name, []).append(p)
        for name, h in r.hops.items():
            hops.setdefault(name, []).append(h)
        for name, w in r.workflows.items():
            workflows.setdefault(name, []).append(w)
    return ConsumersFinal(
        **_totals(reports),
        flows={name: _flow(fs) for name, fs in flows.items()},
        hops={name: _hist(hs) for name, hs in hops.items()},
        warmup_hops=_sum_dicts(r.warmup_hops for r in reports),
        paths={name: PathReport(hubs=ps[0].hubs, e2e=_hist(p.e2e for p in ps), warmup=sum(p.warmup for p in ps)) for name, ps in paths.items()},
        decisions=_rows([r.decisions for r in reports]),
        dead_letters=_rows([r.dead_letters for r in reports]),
        undecodable=_rows([r.undecodable for r in reports]),
        foreign_dead_letters=_rows([r.foreign_dead_letters for r in reports]),
        quality_events=_rows([r.quality_events for r in reports]),
        samples=_samples([r.samples for r in reports if r.samples is not None]),
        workflows={
            name: WorkflowReport(completed=sum(w.completed for w in ws), incomplete=sum(w.incomplete for w in ws), times=_hist(w.times for w in ws))
            for name, ws in workflows.items()
        },
    )


def _flow(reports: list[FlowReport]) -> FlowReport:
    if len(reports) == 1:
        return reports[0]
    return FlowReport(
        within_cycle=sum(f.within_cycle for f in reports),
        delivered=sum(f.delivered for f in reports),
        duplicates=sum(f.duplicates for f in reports),
        e2e=_hist(f.e2e for f in reports),
        e2e_intended=_hist(f.e2e_intended for f in reports),
        warmup_delivered=sum(f.warmup_delivered for f in reports),
        warmup_e2e=_hist(f.warmup_e2e for f in reports),
        warmup_e2e_intended=_hist(f.warmup_e2e_intended for f in reports),
    )


def _samples(reports: list[SamplesReport]) -> SamplesReport | None:
    if len(reports) <= 1:
        return reports[0] if reports else None
    return SamplesReport(
        written=sum(s.written for s in reports),
        without_source=sum(s.without_source for s in reports),
        lookup_s=max(s.lookup_s for s in reports),  # the workers look up at once
        records_read=sum(s.records_read for s in reports),
        seek_by_time=all(s.seek_by_time for s in reports),
        ended="; ".join(sorted({s.ended for s in reports})),
    )


def _rows(tables: list[list[R]]) -> list[R]:
    """Named count rows of several workers, summed per key (the first table's row type)."""
    total: Counter = Counter()
    kind: type[R] | None = None
    for rows in tables:
        for row in rows:
            kind = type(row)
            total[tuple(v for k, v in row.model_dump().items() if k != "n")] += row.n
    return kind.rows(total) if kind is not None else []


def _clock_skew(reports: list[ConsumersFinal] | list[ConsumersStats]) -> dict[str, ClockSkewCount]:
    out: dict[str, ClockSkewCount] = {}
    for r in reports:
        for source, c in r.clock_skew.items():
            seen = out.get(source)
            out[source] = (
                c
                if seen is None
                else ClockSkewCount(records=seen.records + c.records, min_ms=min(seen.min_ms, c.min_ms), max_ms=max(seen.max_ms, c.max_ms))
            )
    return out


def _sum_dicts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _hist(encoded: Iterable[str]) -> str:
    return encode(merge(list(encoded)))


def _highest(quantiles: Iterable[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for q in quantiles:
        for k, v in q.items():
            out[k] = max(out.get(k, v), v)
    return out
