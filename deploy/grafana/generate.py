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


def timeseries(ids: _Ids, title: str, targets: list[Target], unit: str = "short", span: int = 12, height: int = 8,
               description: str = "") -> ts_b.Panel:
    p = (
        ts_b.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(height)
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
    for q in _queries(targets):
        p = p.with_target(q)
    return p


def stat(ids: _Ids, title: str, targets: list[Target], unit: str = "short", span: int = 4, height: int = 4,
         description: str = "", thresholds: list[tuple[float | None, str]] | None = None,
         mappings: list[dash_m.ValueMap] | None = None) -> stat_b.Panel:
    p = (
        stat_b.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(height)
        .color_mode(common_m.BigValueColorMode.VALUE)
        .graph_mode(common_m.BigValueGraphMode.AREA)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    steps = thresholds or [(None, "green")]
    p = p.thresholds(
        dash.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in steps])
    )
    if mappings:
        p = p.mappings(mappings)
    for q in _queries(targets):
        p = p.with_target(q)
    return p


def table(ids: _Ids, title: str, targets: list[Target], span: int = 24, height: int = 9, description: str = "") -> table_b.Panel:
    p = table_b.Panel().id(ids.next()).title(title).description(description).datasource(DS).span(span).height(height)
    for q in _queries(targets):
        p = p.with_target(q)
    return p


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


def _dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
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


# The dashboards -------------------------------------------------------------------------
def overview() -> dash.Dashboard:
    ids = _Ids()
    s = _sel()
    d = _dashboard(
        "dx-overview",
        "Data exchange: overview",
        "Publish and consume rates, end-to-end latency per flow, denials, masking, dead letters, lag and SLOs.",
    )
    d = d.with_variable(platform_var()).with_variable(run_var())
    d = d.with_row(dash.Row("Run"))
    d = d.with_panel(stat(ids, "Published", [Target(f"sum(rate(dx_records_published_total{s}[{RATE}]))", "published")], RECORDS_PER_S))
    d = d.with_panel(stat(ids, "Delivered", [Target(f"sum(rate(dx_records_delivered_total{s}[{RATE}]))", "delivered")], RECORDS_PER_S))
    d = d.with_panel(
        stat(ids, "Denied", [Target(f"sum(rate(dx_router_decisions_total{DENIED}[{RATE}]))", "denied")], RECORDS_PER_S)
    )
    d = d.with_panel(
        stat(ids, "Dead-lettered", [Target(f"sum(rate(dx_dead_letters_total{s}[{RATE}]))", "dead letters")], RECORDS_PER_S,
             thresholds=[(None, "green"), (0.001, "orange")])
    )
    d = d.with_panel(
        stat(ids, "Unaccounted outcomes", [Target(f"sum(dx_run_unaccounted_outcomes{s})", "unaccounted")],
             thresholds=[(None, "green"), (1, "red")],
             description="Expected outcomes not yet delivered, denied or dead-lettered: 0 at the end of a good run.")
    )
    d = d.with_panel(
        stat(ids, "Run progress", [Target(f"max(dx_run_elapsed_seconds{s}) / max(dx_run_duration_seconds{s})", "progress")], "percentunit")
    )
    d = d.with_panel(
        stat(ids, "SLO status", [Target(f"min by (slo) (dx_slo_status{s})", "{{slo}}")], span=8, mappings=PASS_FAIL,
             thresholds=[(None, "red"), (1, "green")], description="1 = the objective holds (PASS), 0 = violated (FAIL).")
    )
    d = d.with_panel(
        stat(
            ids,
            "Outcomes",
            [
                Target(f"sum(dx_run_produced_records{s})", "produced records"),
                Target(f"sum(dx_run_expected_outcomes{s})", "expected"),
                Target(f"sum(dx_run_accounted_outcomes{s})", "accounted"),
            ],
            span=16,
        )
    )

    d = d.with_row(dash.Row("Throughput"))
    d = d.with_panel(
        timeseries(ids, "Publish rate by department (top 10)",
                   [Target(f"topk(10, sum by (department) (rate(dx_records_published_total{s}[{RATE}])))", "{{department}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Consume rate by department (top 10)",
                   [Target(f"topk(10, sum by (consumer) (rate(dx_records_delivered_total{s}[{RATE}])))", "{{consumer}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Bytes published", [Target(f"sum by (platform) (rate(dx_published_bytes_total{s}[{RATE}]))", "{{platform}}")], "Bps")
    )
    d = d.with_panel(
        timeseries(
            ids,
            "Publish errors and retries",
            [
                Target(f"sum(rate(dx_publish_errors_total{s}[{RATE}]))", "errors"),
                Target(f"sum(rate(dx_publish_retries_total{s}[{RATE}]))", "retries"),
            ],
            "reqps",
        )
    )

    d = d.with_row(dash.Row("Latency"))
    e2e = "dx_end_to_end_latency_seconds"
    d = d.with_panel(
        timeseries(
            ids,
            "End-to-end latency, all flows",
            [Target(_q(q, e2e, "le", s), f"p{label}") for q, label in ((0.5, "50"), (0.99, "99"), (0.999, "99.9"))],
            "s",
            description="Receive time minus send time (from the producer's send to the subscriber).",
        )
    )
    d = d.with_panel(
        timeseries(ids, "End-to-end p99 per flow (worst 10)", [Target(f"topk(10, {_q(0.99, e2e, 'subscription, le', s)})", "{{subscription}}")], "s")
    )
    d = d.with_panel(
        timeseries(ids, "End-to-end p50 per flow (worst 10)", [Target(f"topk(10, {_q(0.5, e2e, 'subscription, le', s)})", "{{subscription}}")], "s")
    )
    d = d.with_panel(
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
        )
    )

    d = d.with_row(dash.Row("Sharing rules"))
    d = d.with_panel(
        timeseries(ids, "Denied by reason",
                   [Target(f"sum by (reason) (rate(dx_router_decisions_total{DENIED}[{RATE}]))", "{{reason}}")],
                   RECORDS_PER_S, span=8)
    )
    d = d.with_panel(
        timeseries(ids, "Masked deliveries by flow (top 10)",
                   [Target(f"topk(10, sum by (subscription) (rate(dx_router_masked_records_total{s}[{RATE}])))", "{{subscription}}")],
                   RECORDS_PER_S, span=8)
    )
    d = d.with_panel(
        timeseries(ids, "Rows filtered out of jurisdiction (top 10 flows)",
                   [Target(f"topk(10, sum by (subscription) (rate(dx_router_decisions_total{OUT_OF_JURISDICTION}[{RATE}])))", "{{subscription}}")],
                   RECORDS_PER_S, span=8)
    )
    d = d.with_panel(
        timeseries(ids, "Dead letters by reason", [Target(f"sum by (reason) (rate(dx_dead_letters_total{s}[{RATE}]))", "{{reason}}")], RECORDS_PER_S, span=8)
    )
    d = d.with_panel(
        timeseries(
            ids,
            "Audit records by decision",
            [
                Target(f"sum by (decision) (rate(dx_audit_records_written_total{s}[{RATE}]))", "written {{decision}}"),
                Target(f"sum by (decision) (rate(dx_audit_records_read_total{s}[{RATE}]))", "read {{decision}}"),
            ],
            RECORDS_PER_S,
            span=8,
        )
    )
    d = d.with_panel(
        timeseries(ids, "Duplicates dropped", [Target(f"sum by (consumer) (rate(dx_duplicates_dropped_total{s}[{RATE}]))", "{{consumer}}")], RECORDS_PER_S, span=8)
    )

    d = d.with_row(dash.Row("Backlog and approvals"))
    d = d.with_panel(
        timeseries(ids, "Consumer lag by department", [Target(f"sum by (consumer) (dx_consumer_lag_records{s})", "{{consumer}}")], "short", span=8)
    )
    d = d.with_panel(
        timeseries(ids, "Router lag by worker", [Target(f"sum by (worker) (dx_router_lag_records{s})", "{{worker}}")], "short", span=8)
    )
    d = d.with_panel(
        timeseries(ids, "Applications by approval state", [Target(f"max by (state) (dx_approvals{s})", "{{state}}")], "short", span=8)
    )
    return d


def one_number_one_source() -> dash.Dashboard:
    ids = _Ids()
    s = _sel()
    conflict = _sel('result="conflict"')
    d = _dashboard(
        "dx-onos",
        "Data exchange: one number, one source (一数一源)",
        "Copied items verified against their authoritative source department: verification rate, conflicts by item and department.",
    )
    d = d.with_variable(platform_var()).with_variable(run_var())
    d = d.with_panel(stat(ids, "Verifications", [Target(f"sum(rate(dx_verifications_total{s}[{RATE}]))", "verifications")], "suffix: /s", span=6))
    d = d.with_panel(
        stat(ids, "Conflict ratio",
             [Target(f"sum(rate(dx_verifications_total{conflict}[{RATE}])) / sum(rate(dx_verifications_total{s}[{RATE}]))", "conflicts")],
             "percentunit", span=6, thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")])
    )
    d = d.with_panel(
        stat(ids, "Quality events", [Target(f"sum(rate(dx_quality_events_total{s}[{RATE}]))", "quality events")], "suffix: /s", span=6)
    )
    d = d.with_panel(
        stat(ids, "Unverified copies",
             [Target(f"sum(rate(dx_verifications_total{UNVERIFIED}[{RATE}]))", "unverified")],
             "suffix: /s", span=6)
    )
    d = d.with_panel(
        timeseries(ids, "Verification rate by result", [Target(f"sum by (result) (rate(dx_verifications_total{s}[{RATE}]))", "{{result}}")], "suffix: /s")
    )
    d = d.with_panel(
        timeseries(ids, "Quality events by reason", [Target(f"sum by (reason) (rate(dx_quality_events_total{s}[{RATE}]))", "{{reason}}")], "suffix: /s")
    )
    d = d.with_panel(
        timeseries(ids, "Conflicts by item (top 10)", [Target(f"topk(10, sum by (item) (rate(dx_verifications_total{conflict}[{RATE}])))", "{{item}}")], "suffix: /s")
    )
    d = d.with_panel(
        timeseries(ids, "Conflicts by department holding the copy (top 10)",
                   [Target(f"topk(10, sum by (department) (rate(dx_verifications_total{conflict}[{RATE}])))", "{{department}}")], "suffix: /s")
    )
    d = d.with_panel(
        table(ids, "Conflicts by item and department over the time range",
              [Target(f"sort_desc(sum by (item, department) (increase(dx_verifications_total{conflict}[$__range])))", "", instant=True, table=True)],
              description="Each row: a semantic item, the department whose copy disagreed with the source, and how many times.")
    )
    return d


def per_platform() -> dash.Dashboard:
    ids = _Ids()
    s = _sel()
    d = _dashboard(
        "dx-platform",
        "Data exchange: platform",
        "One platform (hub) at a time: what comes in, what the rules decide, who receives it. Cascades: every platform's intake side by side.",
    )
    d = d.with_variable(platform_var(multi=False)).with_variable(run_var())
    d = d.with_panel(stat(ids, "Records in", [Target(f"sum(rate(dx_router_records_in_total{s}[{RATE}]))", "in")], RECORDS_PER_S, span=6))
    d = d.with_panel(stat(ids, "Delivered", [Target(f"sum(rate(dx_records_delivered_total{s}[{RATE}]))", "delivered")], RECORDS_PER_S, span=6))
    d = d.with_panel(
        stat(ids, "Denied", [Target(f"sum(rate(dx_router_decisions_total{DENIED}[{RATE}]))", "denied")], RECORDS_PER_S, span=6)
    )
    d = d.with_panel(stat(ids, "Dead letters", [Target(f"sum(rate(dx_dead_letters_total{s}[{RATE}]))", "dead letters")], RECORDS_PER_S, span=6))
    d = d.with_panel(
        timeseries(ids, "Records in by entry (top 10)", [Target(f"topk(10, sum by (entry) (rate(dx_router_records_in_total{s}[{RATE}])))", "{{entry}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Outcomes by decision", [Target(f"sum by (decision) (rate(dx_router_decisions_total{s}[{RATE}]))", "{{decision}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Deliveries by department", [Target(f"sum by (consumer) (rate(dx_records_delivered_total{s}[{RATE}]))", "{{consumer}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "End-to-end p99 by department", [Target(_q(0.99, "dx_end_to_end_latency_seconds", "consumer, le", s), "{{consumer}}")], "s")
    )
    d = d.with_panel(
        timeseries(ids, "Consumer lag by department", [Target(f"sum by (consumer) (dx_consumer_lag_records{s})", "{{consumer}}")], span=12)
    )
    d = d.with_panel(
        timeseries(ids, "Applications by approval state", [Target(f"max by (state) (dx_approvals{s})", "{{state}}")], span=12)
    )
    d = d.with_row(dash.Row("Cascade (级联)"))
    every = '{run_id=~"$run_id"}'
    d = d.with_panel(
        timeseries(ids, "Records in, every platform of the cascade",
                   [Target(f"sum by (platform) (rate(dx_router_records_in_total{every}[{RATE}]))", "{{platform}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Deliveries, every platform of the cascade",
                   [Target(f"sum by (platform) (rate(dx_records_delivered_total{every}[{RATE}]))", "{{platform}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "p99 per hop (into a hub, inside it, between hubs, to the consumer)",
                   [Target(_q(0.99, "dx_hop_latency_seconds", "segment, le", every), "{{segment}}")], "s", span=24)
    )
    return d


def router_internals() -> dash.Dashboard:
    ids = _Ids()
    r = _sel(base=ROUTER_SEL)
    f = "{" + FAUST_SEL + "}"
    d = _dashboard(
        "dx-router",
        "Data exchange: router internals",
        "Router workers: batches, handling and commit time, readiness, lag; Faust's own rebalance and commit figures.",
    )
    d = d.with_variable(platform_var()).with_variable(run_var()).with_variable(worker_var())
    d = d.with_panel(
        timeseries(ids, "Records in per worker", [Target(f"sum by (worker) (rate(dx_router_batch_records_sum{r}[{RATE}]))", "{{worker}}")], RECORDS_PER_S)
    )
    d = d.with_panel(
        timeseries(ids, "Batches per worker", [Target(f"sum by (worker) (rate(dx_router_batch_records_count{r}[{RATE}]))", "{{worker}}")], "suffix: batches/s")
    )
    d = d.with_panel(
        timeseries(
            ids,
            "Batch size",
            [
                Target(_q(0.5, "dx_router_batch_records", "worker, le", r), "p50 {{worker}}"),
                Target(_q(0.99, "dx_router_batch_records", "worker, le", r), "p99 {{worker}}"),
            ],
            "short",
            span=8,
        )
    )
    d = d.with_panel(
        timeseries(
            ids,
            "Batch handling time",
            [
                Target(_q(0.5, "dx_router_batch_seconds", "worker, le", r), "p50 {{worker}}"),
                Target(_q(0.99, "dx_router_batch_seconds", "worker, le", r), "p99 {{worker}}"),
            ],
            "s",
            span=8,
        )
    )
    d = d.with_panel(
        timeseries(
            ids,
            "Commit time",
            [
                Target(_q(0.5, "dx_router_commit_seconds", "worker, le", r), "p50 {{worker}}"),
                Target(_q(0.99, "dx_router_commit_seconds", "worker, le", r), "p99 {{worker}}"),
            ],
            "s",
            span=8,
        )
    )
    d = d.with_panel(
        stat(ids, "Ready after", [Target(f"max by (worker) (dx_router_ready_seconds{r})", "{{worker}}")], "s", span=8, height=8,
             description="Seconds from process start to routing, per worker.")
    )
    d = d.with_panel(timeseries(ids, "Lag per worker", [Target(f"sum by (worker) (dx_router_lag_records{r})", "{{worker}}")], span=8))
    d = d.with_panel(
        timeseries(ids, "Records in by entry (top 10)",
                   [Target(f"topk(10, sum by (entry) (rate(dx_router_records_in_total{_sel(base=SEL)}[{RATE}])))", "{{entry}}")], RECORDS_PER_S, span=8)
    )
    d = d.with_row(dash.Row("Faust"))
    d = d.with_panel(timeseries(ids, "Rebalances in progress", [Target(f"max by (worker) (faust_total_rebalances{f})", "{{worker}}")], span=6))
    d = d.with_panel(
        timeseries(ids, "Batch to committed offsets p99", [Target(_q(0.99, "dx_router_commit_seconds", "worker, le", r), "{{worker}}")], "s", span=6,
                   description="From a routed batch handed to the producer to its offsets committed: acknowledgement plus up to 1 s of commit interval.")
    )
    d = d.with_panel(
        timeseries(ids, "Faust consumer commit latency p99", [Target(_q(0.99, "faust_consumer_commit_latency_seconds", "worker, le", f), "{{worker}}")], "s", span=6)
    )
    d = d.with_panel(
        timeseries(ids, "Faust assignment latency p99", [Target(_q(0.99, "faust_assign_latency_seconds", "worker, le", f), "{{worker}}")], "s", span=6)
    )
    return d


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
