"""Generate the Grafana dashboards of the simulator from code (grafana-foundation-sdk).

    python deploy/grafana/generate.py            # writes deploy/grafana/dashboards/*.json
    python deploy/grafana/generate.py --check    # exit 1 if the committed JSON is stale

The JSON files are committed (Grafana provisions them from deploy/grafana/dashboards/);
edit this file, not the JSON. Every query uses only metric names defined in
exchange/metrics/families.py (and Faust's, exposed by exchange.metrics.faust_sensor):
tests/test_deploy.py checks that, and tests/test_prometheus_integration.py evaluates every
query against a real Prometheus.

Template variables: ``platform`` and ``run_id`` (regex matchers, "All" = ``.*``), and on
the router dashboard ``worker``. ``run_id``, ``role`` and ``worker`` on series that do not
carry them come from the file_sd target labels (see deploy/prometheus/prometheus.yml).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import text as text_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE_UID = "dx-prometheus"  # provisioning/datasources/prometheus.yaml
DS = dash_m.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "$__rate_interval"
TAGS = ["data-exchange-sim"]

# Selectors ------------------------------------------------------------------------------
SEL = 'platform=~"$platform", run_id=~"$run_id"'
ROUTER_SEL = 'platform=~"$platform", run_id=~"$run_id", worker=~"$worker"'
FAUST_SEL = 'role="router", run_id=~"$run_id", worker=~"$worker"'
RECORDS_PER_S = "suffix: rec/s"


def _sel(extra: str = "", base: str = SEL) -> str:
    return "{" + base + (", " + extra if extra else "") + "}"


DENIED = _sel('decision="denied"')
OUT_OF_JURISDICTION = _sel('reason="out_of_jurisdiction"')
UNVERIFIED = _sel('result="unverified"')


@dataclass
class Target:
    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False


P = TypeVar("P", ts_b.Panel, stat_b.Panel, table_b.Panel)


@dataclass
class _Ids:
    n: int = 0
    ids: list[int] = field(default_factory=list)

    def next(self) -> int:
        self.n += 1
        return self.n


def _queries(targets: list[Target]) -> list[prom.Dataquery]:
    out = []
    for i, t in enumerate(targets):
        q = prom.Dataquery().expr(t.expr).legend_format(t.legend).ref_id(chr(ord("A") + i)).datasource(DS)
        q = q.instant() if t.instant else q.range()
        if t.table:
            q = q.format(prom_m.PromQueryFormat.TABLE)
        out.append(q)
    return out


def _panel(p: P, ids: _Ids, title: str, targets: list[Target], description: str, span: int, height: int) -> P:
    """``p`` (a panel builder) with what every panel has: the next id, title, description,
    data source, grid size and its queries (ref ids A, B, …)."""
    p = p.id(ids.next()).title(title).description(description).datasource(DS).span(span).height(height)
    for q in _queries(targets):
        p = p.with_target(q)
    return p


def timeseries(
    ids: _Ids, title: str, targets: list[Target], unit: str = "short", span: int = 12, height: int = 8, description: str = ""
) -> ts_b.Panel:
    p = (
        ts_b.Panel()
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_m.VisibilityMode.NEVER)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common_m.LegendDisplayMode.TABLE)
            .placement(common_m.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    return _panel(p, ids, title, targets, description, span, height)


def stat(
    ids: _Ids,
    title: str,
    targets: list[Target],
    unit: str = "short",
    span: int = 4,
    height: int = 4,
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[dash_m.ValueMap] | None = None,
) -> stat_b.Panel:
    p = (
        stat_b.Panel()
        .unit(unit)
        .color_mode(common_m.BigValueColorMode.VALUE)
        .graph_mode(common_m.BigValueGraphMode.AREA)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            dash.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps([dash_m.Threshold(value=v, color=c) for v, c in thresholds or [(None, "green")]])
        )
    )
    if mappings:
        p = p.mappings(mappings)
    return _panel(p, ids, title, targets, description, span, height)


def table(ids: _Ids, title: str, targets: list[Target], span: int = 24, height: int = 9, description: str = "") -> table_b.Panel:
    return _panel(table_b.Panel(), ids, title, targets, description, span, height)


def text(ids: _Ids, title: str, content: str, span: int = 24, height: int = 3) -> text_b.Panel:
    return text_b.Panel().id(ids.next()).title(title).content(content).mode(text_b.text.TextMode.MARKDOWN).span(span).height(height)


def _variable(name: str, label: str, query: str, *, multi: bool = True) -> dash.QueryVariable:
    v = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        v = v.all_value(".*").current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    return v


def platform_var(multi: bool = True) -> dash.QueryVariable:
    return _variable("platform", "Platform", 'label_values({__name__=~"dx_.+"}, platform)', multi=multi)


def run_var() -> dash.QueryVariable:
    return _variable("run_id", "Run", 'label_values({__name__=~"dx_.+"}, run_id)')


def worker_var() -> dash.QueryVariable:
    return _variable("worker", "Worker", "label_values(dx_router_batch_records_count, worker)")


def _dashboard(uid: str, title: str, description: str, *variables: dash.QueryVariable) -> dash.Dashboard:
    """A dashboard with the settings all of ours share and the given template variables."""
    d = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("5s")
        .time("now-15m", "now")
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
    )
    for v in variables:
        d = d.with_variable(v)
    return d


def _q(quantile: float, metric: str, by: str, selector: str) -> str:
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({metric}_bucket{selector}[{RATE}])))"


PASS_FAIL = [
    dash_m.ValueMap(
        options={
            "0": dash_m.ValueMappingResult(text="FAIL", color="red", index=0),
            "1": dash_m.ValueMappingResult(text="PASS", color="green", index=1),
        }
    )
]


def _with_panels(d: dash.Dashboard, panels: list) -> dash.Dashboard:
    """``d`` with ``panels`` added in order (the grid places them left to right, row by row)."""
    for p in panels:
        d = d.with_panel(p)
    return d


def _with_rows(d: dash.Dashboard, rows: list[tuple[str, list]]) -> dash.Dashboard:
    """``d`` with each (title, panels) of ``rows`` added: a row header, then its panels."""
    for title, panels in rows:
        d = _with_panels(d.with_row(dash.Row(title)), panels)
    return d


def _sum_rate(metric: str, selector: str, by: str = "") -> str:
    """``sum(rate(metric{…}[$__rate_interval]))``, or ``sum by (by) (…)``."""
    rate = f"rate({metric}{selector}[{RATE}])"
    return f"sum by ({by}) ({rate})" if by else f"sum({rate})"


def _top10(expr: str) -> str:
    return f"topk(10, {expr})"


def _p50_p99(ids: _Ids, title: str, metric: str, unit: str, selector: str, span: int = 8) -> ts_b.Panel:
    """A per-worker p50 and p99 panel of a router histogram."""
    return timeseries(
        ids,
        title,
        [Target(_q(q, metric, "worker, le", selector), f"p{label} {{{{worker}}}}") for q, label in ((0.5, "50"), (0.99, "99"))],
        unit,
        span=span,
    )


# The dashboards -------------------------------------------------------------------------
def _overview_run(ids: _Ids, s: str) -> list:
    return [
        stat(ids, "Published", [Target(_sum_rate("dx_records_published_total", s), "published")], RECORDS_PER_S),
        stat(ids, "Delivered", [Target(_sum_rate("dx_records_delivered_total", s), "delivered")], RECORDS_PER_S),
        stat(ids, "Denied", [Target(_sum_rate("dx_router_decisions_total", DENIED), "denied")], RECORDS_PER_S),
        stat(
            ids,
            "Dead-lettered",
            [Target(_sum_rate("dx_dead_letters_total", s), "dead letters")],
            RECORDS_PER_S,
            thresholds=[(None, "green"), (0.001, "orange")],
        ),
        stat(
            ids,
            "Unaccounted outcomes",
            [Target(f"sum(dx_run_unaccounted_outcomes{s})", "unaccounted")],
            thresholds=[(None, "green"), (1, "red")],
            description="Expected outcomes not yet delivered, denied or dead-lettered: 0 at the end of a good run.",
        ),
        stat(ids, "Run progress", [Target(f"max(dx_run_elapsed_seconds{s}) / max(dx_run_duration_seconds{s})", "progress")], "percentunit"),
        stat(
            ids,
            "SLO status",
            [Target(f"min by (slo) (dx_slo_status{s})", "{{slo}}")],
            span=8,
            mappings=PASS_FAIL,
            thresholds=[(None, "red"), (1, "green")],
            description="1 = the objective holds (PASS), 0 = violated (FAIL).",
        ),
        stat(
            ids,
            "Outcomes",
            [
                Target(f"sum(dx_run_produced_records{s})", "produced records"),
                Target(f"sum(dx_run_expected_outcomes{s})", "expected"),
                Target(f"sum(dx_run_accounted_outcomes{s})", "accounted"),
            ],
            span=16,
        ),
    ]


def _overview_throughput(ids: _Ids, s: str) -> list:
    return [
        timeseries(
            ids,
            "Publish rate by department (top 10)",
            [Target(_top10(_sum_rate("dx_records_published_total", s, "department")), "{{department}}")],
            RECORDS_PER_S,
        ),
        timeseries(
            ids,
            "Consume rate by department (top 10)",
            [Target(_top10(_sum_rate("dx_records_delivered_total", s, "consumer")), "{{consumer}}")],
            RECORDS_PER_S,
        ),
        timeseries(ids, "Bytes published", [Target(_sum_rate("dx_published_bytes_total", s, "platform"), "{{platform}}")], "Bps"),
        timeseries(
            ids,
            "Publish errors and retries",
            [Target(_sum_rate("dx_publish_errors_total", s), "errors"), Target(_sum_rate("dx_publish_retries_total", s), "retries")],
            "reqps",
        ),
    ]


def _overview_latency(ids: _Ids, s: str) -> list:
    e2e = "dx_end_to_end_latency_seconds"
    return [
        timeseries(
            ids,
            "End-to-end latency, all flows",
            [Target(_q(q, e2e, "le", s), f"p{label}") for q, label in ((0.5, "50"), (0.99, "99"), (0.999, "99.9"))],
            "s",
            description="Receive time minus send time (from the producer's send to the subscriber).",
        ),
        timeseries(ids, "End-to-end p99 per flow (worst 10)", [Target(_top10(_q(0.99, e2e, "subscription, le", s)), "{{subscription}}")], "s"),
        timeseries(ids, "End-to-end p50 per flow (worst 10)", [Target(_top10(_q(0.5, e2e, "subscription, le", s)), "{{subscription}}")], "s"),
        timeseries(
            ids,
            "Publish latency and delay",
            [
                Target(_q(0.5, "dx_publish_latency_seconds", "le", s), "publish latency p50"),
                Target(_q(0.99, "dx_publish_latency_seconds", "le", s), "publish latency p99"),
                Target(_q(0.99, "dx_publish_delay_seconds", "le", s), "publish delay p99"),
            ],
            "s",
            description="Latency: broker acknowledgement minus send time. Delay: send time minus intended send time "
            "(a producer behind its schedule).",
        ),
    ]


def _overview_sharing(ids: _Ids, s: str) -> list:
    return [
        timeseries(ids, "Denied by reason", [Target(_sum_rate("dx_router_decisions_total", DENIED, "reason"), "{{reason}}")], RECORDS_PER_S, span=8),
        timeseries(
            ids,
            "Masked deliveries by flow (top 10)",
            [Target(_top10(_sum_rate("dx_router_masked_records_total", s, "subscription")), "{{subscription}}")],
            RECORDS_PER_S,
            span=8,
        ),
        timeseries(
            ids,
            "Rows filtered out of jurisdiction (top 10 flows)",
            [Target(_top10(_sum_rate("dx_router_decisions_total", OUT_OF_JURISDICTION, "subscription")), "{{subscription}}")],
            RECORDS_PER_S,
            span=8,
        ),
        timeseries(ids, "Dead letters by reason", [Target(_sum_rate("dx_dead_letters_total", s, "reason"), "{{reason}}")], RECORDS_PER_S, span=8),
        timeseries(
            ids,
            "Audit records by decision",
            [
                Target(_sum_rate("dx_audit_records_written_total", s, "decision"), "written {{decision}}"),
                Target(_sum_rate("dx_audit_records_read_total", s, "decision"), "read {{decision}}"),
            ],
            RECORDS_PER_S,
            span=8,
        ),
        timeseries(
            ids, "Duplicates dropped", [Target(_sum_rate("dx_duplicates_dropped_total", s, "consumer"), "{{consumer}}")], RECORDS_PER_S, span=8
        ),
    ]


def _overview_backlog(ids: _Ids, s: str) -> list:
    return [
        timeseries(ids, "Consumer lag by department", [Target(f"sum by (consumer) (dx_consumer_lag_records{s})", "{{consumer}}")], "short", span=8),
        timeseries(ids, "Router lag by worker", [Target(f"sum by (worker) (dx_router_lag_records{s})", "{{worker}}")], "short", span=8),
        timeseries(ids, "Applications by approval state", [Target(f"max by (state) (dx_approvals{s})", "{{state}}")], "short", span=8),
    ]


def overview() -> dash.Dashboard:
    """Publish and consume rates, latency, sharing decisions, backlog and SLOs of a run, one row each."""
    ids = _Ids()
    s = _sel()
    d = _dashboard(
        "dx-overview",
        "Data exchange: overview",
        "Publish and consume rates, end-to-end latency per flow, denials, masking, dead letters, lag and SLOs.",
        platform_var(),
        run_var(),
    )
    return _with_rows(
        d,
        [
            ("Run", _overview_run(ids, s)),
            ("Throughput", _overview_throughput(ids, s)),
            ("Latency", _overview_latency(ids, s)),
            ("Sharing rules", _overview_sharing(ids, s)),
            ("Backlog and approvals", _overview_backlog(ids, s)),
        ],
    )


def one_number_one_source() -> dash.Dashboard:
    """一数一源: copies verified against their authoritative source, conflicts by item and department."""
    ids = _Ids()
    s = _sel()
    conflict = _sel('result="conflict"')
    d = _dashboard(
        "dx-onos",
        "Data exchange: one number, one source (一数一源)",
        "Copied items verified against their authoritative source department: verification rate, conflicts by item and department.",
        platform_var(),
        run_var(),
    )
    return _with_panels(
        d,
        [
            stat(ids, "Verifications", [Target(_sum_rate("dx_verifications_total", s), "verifications")], "suffix: /s", span=6),
            stat(
                ids,
                "Conflict ratio",
                [Target(f"{_sum_rate('dx_verifications_total', conflict)} / {_sum_rate('dx_verifications_total', s)}", "conflicts")],
                "percentunit",
                span=6,
                thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            ),
            stat(ids, "Quality events", [Target(_sum_rate("dx_quality_events_total", s), "quality events")], "suffix: /s", span=6),
            stat(ids, "Unverified copies", [Target(_sum_rate("dx_verifications_total", UNVERIFIED), "unverified")], "suffix: /s", span=6),
            timeseries(ids, "Verification rate by result", [Target(_sum_rate("dx_verifications_total", s, "result"), "{{result}}")], "suffix: /s"),
            timeseries(ids, "Quality events by reason", [Target(_sum_rate("dx_quality_events_total", s, "reason"), "{{reason}}")], "suffix: /s"),
            timeseries(
                ids, "Conflicts by item (top 10)", [Target(_top10(_sum_rate("dx_verifications_total", conflict, "item")), "{{item}}")], "suffix: /s"
            ),
            timeseries(
                ids,
                "Conflicts by department holding the copy (top 10)",
                [Target(_top10(_sum_rate("dx_verifications_total", conflict, "department")), "{{department}}")],
                "suffix: /s",
            ),
            table(
                ids,
                "Conflicts by item and department over the time range",
                [
                    Target(
                        f"sort_desc(sum by (item, department) (increase(dx_verifications_total{conflict}[$__range])))", "", instant=True, table=True
                    )
                ],
                description="Each row: a semantic item, the department whose copy disagreed with the source, and how many times.",
            ),
        ],
    )


def _platform_panels(ids: _Ids, s: str) -> list:
    return [
        stat(ids, "Records in", [Target(_sum_rate("dx_router_records_in_total", s), "in")], RECORDS_PER_S, span=6),
        stat(ids, "Delivered", [Target(_sum_rate("dx_records_delivered_total", s), "delivered")], RECORDS_PER_S, span=6),
        stat(ids, "Denied", [Target(_sum_rate("dx_router_decisions_total", DENIED), "denied")], RECORDS_PER_S, span=6),
        stat(ids, "Dead letters", [Target(_sum_rate("dx_dead_letters_total", s), "dead letters")], RECORDS_PER_S, span=6),
        timeseries(
            ids, "Records in by entry (top 10)", [Target(_top10(_sum_rate("dx_router_records_in_total", s, "entry")), "{{entry}}")], RECORDS_PER_S
        ),
        timeseries(ids, "Outcomes by decision", [Target(_sum_rate("dx_router_decisions_total", s, "decision"), "{{decision}}")], RECORDS_PER_S),
        timeseries(ids, "Deliveries by department", [Target(_sum_rate("dx_records_delivered_total", s, "consumer"), "{{consumer}}")], RECORDS_PER_S),
        timeseries(ids, "End-to-end p99 by department", [Target(_q(0.99, "dx_end_to_end_latency_seconds", "consumer, le", s), "{{consumer}}")], "s"),
        timeseries(ids, "Consumer lag by department", [Target(f"sum by (consumer) (dx_consumer_lag_records{s})", "{{consumer}}")], span=12),
        timeseries(ids, "Applications by approval state", [Target(f"max by (state) (dx_approvals{s})", "{{state}}")], span=12),
    ]


def _cascade_panels(ids: _Ids) -> list:
    every = '{run_id=~"$run_id"}'
    return [
        timeseries(
            ids,
            "Records in, every platform of the cascade",
            [Target(_sum_rate("dx_router_records_in_total", every, "platform"), "{{platform}}")],
            RECORDS_PER_S,
        ),
        timeseries(
            ids,
            "Deliveries, every platform of the cascade",
            [Target(_sum_rate("dx_records_delivered_total", every, "platform"), "{{platform}}")],
            RECORDS_PER_S,
        ),
        timeseries(
            ids,
            "p99 per hop (into a hub, inside it, between hubs, to the consumer)",
            [Target(_q(0.99, "dx_hop_latency_seconds", "segment, le", every), "{{segment}}")],
            "s",
            span=24,
        ),
    ]


def per_platform() -> dash.Dashboard:
    """One platform (hub) at a time, then every platform of the cascade side by side."""
    ids = _Ids()
    d = _dashboard(
        "dx-platform",
        "Data exchange: platform",
        "One platform (hub) at a time: what comes in, what the rules decide, who receives it. Cascades: every platform's intake side by side.",
        platform_var(multi=False),
        run_var(),
    )
    d = _with_panels(d, _platform_panels(ids, _sel()))
    return _with_rows(d, [("Cascade (级联)", _cascade_panels(ids))])


def _router_panels(ids: _Ids, r: str) -> list:
    return [
        timeseries(ids, "Records in per worker", [Target(_sum_rate("dx_router_batch_records_sum", r, "worker"), "{{worker}}")], RECORDS_PER_S),
        timeseries(ids, "Batches per worker", [Target(_sum_rate("dx_router_batch_records_count", r, "worker"), "{{worker}}")], "suffix: batches/s"),
        _p50_p99(ids, "Batch size", "dx_router_batch_records", "short", r),
        _p50_p99(ids, "Batch handling time", "dx_router_batch_seconds", "s", r),
        _p50_p99(ids, "Commit time", "dx_router_commit_seconds", "s", r),
        stat(
            ids,
            "Ready after",
            [Target(f"max by (worker) (dx_router_ready_seconds{r})", "{{worker}}")],
            "s",
            span=8,
            height=8,
            description="Seconds from process start to routing, per worker.",
        ),
        timeseries(ids, "Lag per worker", [Target(f"sum by (worker) (dx_router_lag_records{r})", "{{worker}}")], span=8),
        timeseries(
            ids,
            "Records in by entry (top 10)",
            [Target(_top10(_sum_rate("dx_router_records_in_total", _sel(base=SEL), "entry")), "{{entry}}")],
            RECORDS_PER_S,
            span=8,
        ),
    ]


def _faust_panels(ids: _Ids, r: str) -> list:
    f = "{" + FAUST_SEL + "}"
    return [
        timeseries(ids, "Rebalances in progress", [Target(f"max by (worker) (faust_total_rebalances{f})", "{{worker}}")], span=6),
        timeseries(
            ids,
            "Batch to committed offsets p99",
            [Target(_q(0.99, "dx_router_commit_seconds", "worker, le", r), "{{worker}}")],
            "s",
            span=6,
            description="From a routed batch handed to the producer to its offsets committed: acknowledgement plus up to 1 s of commit interval.",
        ),
        timeseries(
            ids,
            "Faust consumer commit latency p99",
            [Target(_q(0.99, "faust_consumer_commit_latency_seconds", "worker, le", f), "{{worker}}")],
            "s",
            span=6,
        ),
        timeseries(
            ids, "Faust assignment latency p99", [Target(_q(0.99, "faust_assign_latency_seconds", "worker, le", f), "{{worker}}")], "s", span=6
        ),
    ]


def router_internals() -> dash.Dashboard:
    """Router workers (batches, handling and commit time, readiness, lag), then Faust's own figures."""
    ids = _Ids()
    r = _sel(base=ROUTER_SEL)
    d = _dashboard(
        "dx-router",
        "Data exchange: router internals",
        "Router workers: batches, handling and commit time, readiness, lag; Faust's own rebalance and commit figures.",
        platform_var(),
        run_var(),
        worker_var(),
    )
    d = _with_panels(d, _router_panels(ids, r))
    return _with_rows(d, [("Faust", _faust_panels(ids, r))])


DASHBOARDS = {
    "exchange-overview": overview,
    "one-number-one-source": one_number_one_source,
    "platform": per_platform,
    "router-internals": router_internals,
}


def render(name: str) -> str:
    built = DASHBOARDS[name]().build()
    return json.dumps(json.loads(JSONEncoder(sort_keys=True).encode(built)), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard differs from the generated one")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        path = args.out / f"{name}.json"
        text_ = render(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text_:
                stale.append(path)
        else:
            path.write_text(text_, encoding="utf-8")
            print(path)
    if stale:
        print("stale (run python deploy/grafana/generate.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
