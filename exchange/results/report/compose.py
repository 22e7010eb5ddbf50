"""The whole report page (:func:`build_report_html`) and ``exchange report`` (:func:`write_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.results.report.charts import fig_exceptions, fig_flow_latency, fig_latency_time, fig_matrix, fig_outcomes, fig_percentiles, fig_rates
from exchange.results.report.load import load_result, load_samples_beside, load_scenario_beside
from exchange.results.report.markup import chart, esc, page
from exchange.results.report.sections import (
    fault_section,
    flow_table,
    hops_section,
    input_warnings,
    kpis,
    onss_section,
    run_meta,
    samples_section,
    slo_section,
    slo_verdict,
    verdict,
    warmup_section,
    workflow_section,
)
from exchange.results.report.series import Names


def title_of(r: dict[str, Any], names: Names) -> str:
    return str(r.get("workload", "result")) + (f" — {names.platform}" if names.platform else "")


def build_report_html(result: dict[str, Any], scenario: dict[str, Any] | None = None, samples: list[dict[str, Any]] | None = None) -> str:
    """The whole page, from the raw result dict (and scenario.json's dict and the lines of
    samples.jsonl, if there are any)."""
    names = Names(scenario)
    r = result
    no_intervals = "No per-interval latency lists in this result (older format): see the distribution and per-flow latency."
    body = [
        '<header class="top"><div>',
        f"<h1>{esc(r.get('workload', 'result'))}<small>{esc(names.platform)}</small></h1>",
        run_meta(r),
        "</div></header>",
        '<div class="verdicts">',
        verdict(r),
        slo_verdict(r),
        "</div>",
        input_warnings(r),
        kpis(r),
        "<h2>Throughput and latency</h2>",
        '<div class="grid">',
        chart(fig_rates([("", r)]), "chart-rates"),
        chart(fig_latency_time(r), "chart-latency-time", empty=no_intervals),
        chart(fig_percentiles(r), "chart-percentiles", empty="no latency figures in this result"),
        chart(fig_flow_latency(r, names), "chart-flow-latency", empty="no flow delivered anything"),
        "</div>",
        "<h2>Sharing between departments</h2>",
        '<div class="grid">',
        chart(fig_matrix(r, names), "chart-matrix", wide=True),
        chart(fig_outcomes(r, names), "chart-outcomes", wide=True),
        chart(fig_exceptions(r), "chart-exceptions", wide=True, empty="No dead letters and no one-number-one-source conflicts in this run."),
        "</div>",
        warmup_section(r),
        fault_section(r),
        "<h2>Service-level objectives</h2>",
        slo_section(r),
        workflow_section(r),
        onss_section(r),
        samples_section(samples, names),
        hops_section(r),
        "<h2>Flows</h2>",
        flow_table(r, names),
        (
            "<footer>exchange report · latencies in ms (publish delay converted from µs) · "
            "rates per sampleRateMillis interval · generated offline, plotly.js embedded</footer>"
        ),
    ]
    return page(f"{title_of(r, names)} · exchange report", "\n".join(body))


def write_report(result_path: Path, out_path: Path | None = None) -> Path:
    """Read ``result_path`` (and ``scenario.json`` beside it), write the page, return its path."""
    result_path = Path(result_path)
    out = Path(out_path) if out_path else result_path.with_name("report.html")
    html_text = build_report_html(load_result(result_path), load_scenario_beside(result_path), load_samples_beside(result_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_text, encoding="utf-8")
    return out
