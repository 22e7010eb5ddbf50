"""``exchange report``: one self-contained HTML page from a run's ``result.json``.

The page embeds plotly.js once, inline, so it opens offline (no CDN, no network). It reads
the raw JSON and takes every optional part with ``.get()``: per-interval latency lists,
``aggregated…Quantiles`` maps and ``slos`` are charted when present and skipped (with a
note) when not, so the same code reads older and newer results. ``scenario.json`` next to
``result.json``, when present, gives department and entry names and each entry's provider.

The package, by job: :mod:`.load` reads the files, :mod:`.series` what the page takes
from a result (formats, flows, curves, names), :mod:`.charts` the plotly figures,
:mod:`.markup` the HTML building blocks, :mod:`.sections` the tables and verdicts, and
:mod:`.compose` puts the page together. Every name stays importable from here.
"""

from __future__ import annotations

from exchange.results.report.charts import (
    COLORS,
    FONT,
    MAX_BARS,
    REASON_COLORS,
    base_layout,
    curve_trace,
    fig_exceptions,
    fig_flow_latency,
    fig_latency_time,
    fig_matrix,
    fig_outcomes,
    fig_percentiles,
    fig_rates,
    latency_series,
    mark_faults,
    mark_warmup,
    percentile_axes,
)
from exchange.results.report.compose import (
    build_report_html,
    title_of,
    write_report,
)
from exchange.results.report.load import (
    ESSENTIAL,
    SAMPLE_KEYS,
    SAMPLES_FILE,
    ReportError,
    load_json,
    load_result,
    load_samples_beside,
    load_scenario_beside,
)
from exchange.results.report.markup import (
    CONFIG,
    CSS,
    chart,
    esc,
    page,
    table,
)
from exchange.results.report.sections import (
    SAMPLE_FLOWS_OPEN,
    SAMPLE_FLOWS_SHOWN,
    SAMPLES_SHOWN,
    fault_section,
    flow_table,
    fmt_value,
    hops_section,
    input_warnings,
    kpis,
    onss_section,
    run_meta,
    sample_item_rows,
    samples_section,
    slo_section,
    slo_unit,
    slo_verdict,
    verdict,
    warmup_section,
    workflow_section,
)
from exchange.results.report.series import (
    MAX_LINES,
    MAX_X,
    PCT_KEYS,
    Names,
    aggregated_curve,
    delivered_flows,
    department_matrix,
    flow_label,
    fmt_int,
    fmt_ms,
    interval_x,
    mean,
    nonempty_list,
    pct_label,
    pct_to_x,
    quantiles_curve,
    worst_flows,
)

__all__ = [
    'COLORS', 'CONFIG', 'CSS', 'ESSENTIAL', 'FONT', 'MAX_BARS', 'MAX_LINES', 'MAX_X', 'Names', 'PCT_KEYS',
    'REASON_COLORS', 'ReportError', 'SAMPLES_FILE', 'SAMPLES_SHOWN', 'SAMPLE_FLOWS_OPEN',
    'SAMPLE_FLOWS_SHOWN', 'SAMPLE_KEYS', 'aggregated_curve', 'base_layout', 'build_report_html',
    'chart', 'curve_trace', 'delivered_flows', 'department_matrix', 'esc', 'fault_section', 'fig_exceptions',
    'fig_flow_latency', 'fig_latency_time', 'fig_matrix', 'fig_outcomes', 'fig_percentiles', 'fig_rates',
    'flow_label', 'flow_table', 'fmt_int', 'fmt_ms', 'fmt_value', 'hops_section', 'input_warnings',
    'interval_x', 'kpis', 'latency_series', 'load_json', 'load_result', 'load_samples_beside',
    'load_scenario_beside', 'mark_faults', 'mark_warmup', 'mean', 'nonempty_list', 'onss_section', 'page',
    'pct_label', 'pct_to_x', 'percentile_axes', 'quantiles_curve', 'run_meta', 'sample_item_rows',
    'samples_section', 'slo_section', 'slo_unit', 'slo_verdict', 'table', 'title_of', 'verdict',
    'warmup_section', 'workflow_section', 'worst_flows', 'write_report',
]
