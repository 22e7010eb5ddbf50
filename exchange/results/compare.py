"""``exchange compare``: two runs (two designs) side by side, in the terminal and as one HTML page.

Both views are rendered from the same rows (:func:`comparison`), so the table in the
terminal and the table in the page always say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from rich.console import Group
from rich.table import Table
from rich.text import Text

from exchange.results.report import (
    Names,
    aggregated_curve,
    base_layout,
    chart,
    curve_trace,
    delivered_flows,
    esc,
    fig_rates,
    flow_label,
    fmt_int,
    fmt_ms,
    fmt_value,
    interval_x,
    load_result,
    load_scenario_beside,
    mean,
    nonempty_list,
    page,
    percentile_axes,
    run_meta,
    slo_verdict,
    verdict,
)

# What counts as a change of B against A, per kind of figure: (relative, absolute) noise.
# Two runs of the same design never give the same figures: latency quantiles move by a few
# per cent from run to run on the same machine (the repository's own back-to-back runs:
# docs/performance.md), rates by a percent or two, volume counts by the timing of the
# last interval. A difference within the noise is shown as "≈" and not judged; a loss
# count (dead letters, unaccounted, duplicates) changes at any difference.
NOISE: dict[str, tuple[float, float]] = {
    "ms": (0.05, 1.0),  # 5 %, and at least 1 ms
    "rate": (0.02, 1.0),  # 2 %, and at least 1 record/s
    "int": (0.01, 0.0),  # volume counts: 1 %
    "loss": (0.0, 0.0),  # counts where lower is better: any difference
    "value": (0.01, 0.0),  # ratios, seconds, hubs per delivery: 1 %
}


def within_noise(a: float, b: float, kind: str) -> bool:
    """True when ``a`` and ``b`` differ by no more than the noise of ``kind`` (see :data:`NOISE`)."""
    relative, absolute = NOISE.get(kind, NOISE["value"])
    return abs(b - a) <= max(relative * max(abs(a), abs(b)), absolute)


def slo_kind(metric: str | None) -> str:
    """The noise kind of an SLO metric's measured value."""
    if not metric:
        return "value"
    if metric.endswith("_ms"):
        return "ms"
    if metric.endswith("_per_s"):
        return "rate"
    if metric == "unaccounted":
        return "loss"
    return "value"


LATENCY = [
    ("Avg", "mean"),
    ("50pct", "p50"),
    ("75pct", "p75"),
    ("95pct", "p95"),
    ("99pct", "p99"),
    ("999pct", "p99.9"),
    ("9999pct", "p99.99"),
    ("Max", "max"),
]
RUN_COLORS = ("#2563eb", "#ea580c")  # A, B


@dataclass
class Row:
    label: str
    a: Any
    b: Any
    better: str | None = None  # "lower", "higher" or None (no judgement)
    kind: str = "int"  # int, ms, rate, value, text, verdict
    measured: tuple[Any, Any] = (None, None)  # verdict rows: the figures behind the verdicts
    measured_kind: str = "value"  # their noise kind (see NOISE)

    def text(self, v: Any) -> str:
        if v is None:
            return "—"
        if self.kind == "ms":
            return fmt_ms(v)
        if self.kind == "rate":
            return fmt_int(round(v))
        if self.kind == "int":
            return fmt_int(v)
        if self.kind == "value":
            return fmt_value(v)
        return str(v)

    def noise_kind(self) -> str:
        return "loss" if self.kind == "int" and self.better == "lower" else self.kind

    def delta(self) -> tuple[str, str]:
        """(text, judgement) of B against A; judgement is "better", "worse" or "".

        Equal: "="; within the noise of the row's kind (:data:`NOISE`): "≈", not judged;
        beyond it: the relative change, judged when the row says which way is better. A
        verdict row says "changed" when the verdicts differ or the figures behind them
        differ beyond their noise, "only in A" / "only in B" for an objective one side has not.
        """
        a, b = self.a, self.b
        if self.kind == "verdict":
            if (a is None) != (b is None):  # an objective one scenario has and the other has not
                return ("only in A" if b is None else "only in B"), ""
            ma, mb = self.measured
            moved = isinstance(ma, (int, float)) and isinstance(mb, (int, float)) and not within_noise(ma, mb, self.measured_kind)
            same_verdict = a == b or (isinstance(a, str) and isinstance(b, str) and a[:1] == b[:1])
            return ("" if same_verdict and not moved else "changed"), ""  # the cells say how
        if self.kind == "text" or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return "", ""
        if a == b:
            return "=", ""
        if within_noise(a, b, self.noise_kind()):
            return "≈", ""
        text = f"{(b - a) / a * 100:+.1f} %" if a else f"{b - a:+,.4g}"
        if self.better is None:
            return text, ""
        lower = b < a
        return text, "better" if lower == (self.better == "lower") else "worse"


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


def _flows_by_label(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {flow_label(f, n): f for n, f in (r.get("flows") or {}).items()}


def _flow_q(f: dict[str, Any] | None, key: str) -> float | None:
    if not f or not f.get("delivered"):
        return None
    return (f.get("end_to_end_ms") or {}).get(key)


def _slo_text(s: dict[str, Any] | None) -> str | None:
    if s is None:
        return None
    return f"{'✓ pass' if s.get('passed') else '✕ FAIL'} ({fmt_value(s.get('measured'))} vs {fmt_value(s.get('target'))})"


def comparison(a: dict[str, Any], b: dict[str, Any]) -> list[Section]:
    """Every compared figure, grouped; missing figures are None."""
    return [
        _run_section(a, b),
        _topics_section(a, b),
        _rates_section(a, b),
        _counts_section(a, b),
        _latency_section(a, b),
        _flows_section(a, b),
        *_cascade_sections(a, b),
        _slos_section(a, b),
    ]


def _run_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    ra, rb = a.get("run") or {}, b.get("run") or {}
    run = Section(
        "run",
        [
            Row("workload", a.get("workload"), b.get("workload"), kind="text"),
            Row("run id", ra.get("run_id"), rb.get("run_id"), kind="text"),
            # results from before the setting existed were at-least-once
            Row(
                "delivery guarantee",
                ra.get("guarantee", "at-least-once") if ra else None,
                rb.get("guarantee", "at-least-once") if rb else None,
                kind="text",
            ),
            Row("router workers", ra.get("router_workers"), rb.get("router_workers")),
            Row("producer workers", ra.get("producer_workers", 1) if ra else None, rb.get("producer_workers", 1) if rb else None),
            Row("consumer workers", ra.get("consumer_workers", 1) if ra else None, rb.get("consumer_workers", 1) if rb else None),
            Row("duration, s", ra.get("duration_s"), rb.get("duration_s"), kind="value"),
            Row("warm-up, s (out of the latency)", ra.get("warmup_s", 0), rb.get("warmup_s", 0), kind="value"),
            Row("record size, B", a.get("messageSize"), b.get("messageSize")),
            Row(
                "conservation",
                "✓ ok" if (a.get("conservation") or {}).get("ok") else "✕ FAILED",
                "✓ ok" if (b.get("conservation") or {}).get("ok") else "✕ FAILED",
                kind="verdict",
            ),
        ],
    )
    return run


def _topics_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    """The ingress topic layout and what it costs: topics and partitions the routers fetch, and
    the CPU the routers and the broker spent from publishing's start to the end (result.json ``run``)."""
    ra, rb = a.get("run") or {}, b.get("run") or {}
    return Section(
        "ingress topics and CPU",
        [
            # results from before the setting existed were per-entry
            Row(
                "topic layout", ra.get("topic_layout", "per-entry") if ra else None, rb.get("topic_layout", "per-entry") if rb else None, kind="text"
            ),
            Row("broker", ra.get("broker"), rb.get("broker"), kind="text"),
            Row(
                "subscriber clients",
                ra.get("subscriber_clients", "per-department") if ra else None,
                rb.get("subscriber_clients", "per-department") if rb else None,
                kind="text",
            ),
            # null: a result from before it was recorded
            Row("quiet lanes' fetch wait, ms", ra.get("quiet_fetch_wait_ms"), rb.get("quiet_fetch_wait_ms"), kind="text"),
            Row("ingress topics", ra.get("ingress_topics"), rb.get("ingress_topics")),
            Row("ingress partitions", ra.get("ingress_partitions"), rb.get("ingress_partitions")),
            Row("router CPU, s", ra.get("router_cpu_s"), rb.get("router_cpu_s"), better="lower", kind="value"),
            Row("router CPU, % of a core", _share(ra, "router_cpu_s"), _share(rb, "router_cpu_s"), better="lower", kind="value"),
            Row("broker CPU, s", ra.get("broker_cpu_s"), rb.get("broker_cpu_s"), better="lower", kind="value"),
            Row("broker CPU, % of a core", _share(ra, "broker_cpu_s"), _share(rb, "broker_cpu_s"), better="lower", kind="value"),
            # from 90 % the run is CPU-bound: its latencies include waiting for a core (result.json warnings)
            Row("machine busy, % of its cores", _busy(ra), _busy(rb), better="lower", kind="value"),
            Row("end to end p50, ms", a.get("aggregatedEndToEndLatency50pct"), b.get("aggregatedEndToEndLatency50pct"), better="lower", kind="ms"),
            Row("end to end p99, ms", a.get("aggregatedEndToEndLatency99pct"), b.get("aggregatedEndToEndLatency99pct"), better="lower", kind="ms"),
        ],
    )


def _busy(run: dict[str, Any]) -> float | None:
    """The controller's machine's busy share over the CPU window, in % (result.json ``run.machine_busy``)."""
    busy = run.get("machine_busy")
    return round(100 * busy, 1) if busy is not None else None


def _share(run: dict[str, Any], key: str) -> float | None:
    """CPU seconds ``run[key]`` as a percentage of one core over the window they were measured in."""
    cpu, window = run.get(key), run.get("cpu_window_s")
    return round(100 * cpu / window, 1) if cpu is not None and window else None


def _active_mean(series: list[float]) -> float | None:
    """The mean of the intervals from the first to the last that saw a record: the seconds
    before the first delivery and after the last (start-up, the drain) are not the rate."""
    active = [n for n, v in enumerate(series) if v]
    return mean(series[active[0] : active[-1] + 1]) if active else None


def _rates_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    return Section(
        "rates, records/s (mean over the intervals from the first record to the last)",
        [
            Row("publish rate", _active_mean(a.get("publishRate") or []), _active_mean(b.get("publishRate") or []), kind="rate"),
            Row("consume rate", _active_mean(a.get("consumeRate") or []), _active_mean(b.get("consumeRate") or []), kind="rate"),
        ],
    )


def _counts_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    ca, cb = a.get("counts") or {}, b.get("counts") or {}
    return Section(
        "outcomes",
        [
            Row(label, ca.get(key), cb.get(key), better=better)
            for key, label, better in (
                ("produced", "produced", None),
                ("expected", "expected", None),
                ("delivered", "delivered", None),
                ("masked", "masked", None),
                ("denied", "denied", None),
                ("dead_lettered", "dead-lettered", "lower"),
                ("unaccounted", "unaccounted", "lower"),
                ("duplicates", "duplicates", "lower"),
            )
            if key in ca or key in cb
        ],
    )


def _latency_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    return Section(
        "latency, ms (all flows)",
        [
            Row(f"end to end {label}", a.get("aggregatedEndToEndLatency" + k), b.get("aggregatedEndToEndLatency" + k), better="lower", kind="ms")
            for k, label in LATENCY
        ]
        + [
            Row("publish p99", a.get("aggregatedPublishLatency99pct"), b.get("aggregatedPublishLatency99pct"), better="lower", kind="ms"),
            Row(
                "publish delay p99",
                _us_to_ms(a.get("aggregatedPublishDelayLatency99pct")),
                _us_to_ms(b.get("aggregatedPublishDelayLatency99pct")),
                better="lower",
                kind="ms",
            ),
        ],
    )


def _flows_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    fa, fb = _flows_by_label(a), _flows_by_label(b)
    flows = Section("per flow, end to end, ms")
    for label in sorted(set(fa) | set(fb)):
        for key, name in (("50pct", "p50"), ("99pct", "p99")):
            if _flow_q(fa.get(label), key) is None and _flow_q(fb.get(label), key) is None:
                continue  # delivered nothing in either run
            flows.rows.append(Row(f"{label} {name}", _flow_q(fa.get(label), key), _flow_q(fb.get(label), key), better="lower", kind="ms"))
    return flows


def _slos_section(a: dict[str, Any], b: dict[str, Any]) -> Section:
    sa = {s.get("name"): s for s in a.get("slos") or []}
    sb = {s.get("name"): s for s in b.get("slos") or []}
    slos = Section(
        "SLOs",
        [
            Row(
                name,
                _slo_text(sa.get(name)),
                _slo_text(sb.get(name)),
                kind="verdict",
                measured=((sa.get(name) or {}).get("measured"), (sb.get(name) or {}).get("measured")),
                measured_kind=slo_kind((sa.get(name) or sb.get(name) or {}).get("metric")),
            )
            for name in list(sa) + [n for n in sb if n not in sa]
        ],
    )
    if not slos.rows:
        slos.rows.append(Row("SLOs", "no SLOs declared", "no SLOs declared", kind="text"))
    return slos


def _hubs_per_delivery(r: dict[str, Any]) -> float | None:
    paths = (r.get("paths") or {}).values()
    delivered = sum(p.get("delivered", 0) for p in paths)
    return sum(len(p.get("hubs", ())) * p.get("delivered", 0) for p in paths) / delivered if delivered else None


def _cascade_sections(a: dict[str, Any], b: dict[str, Any]) -> list[Section]:
    """What the hub topology costs: hubs crossed, and the latency of every hop and path."""
    if not a.get("hops") and not b.get("hops"):
        return []  # results written before hop stamps existed
    topology = Section(
        "hubs",
        [
            Row("hubs crossed per delivery (mean)", _hubs_per_delivery(a), _hubs_per_delivery(b), kind="value"),
            Row("distinct paths", len(a.get("paths") or {}), len(b.get("paths") or {})),
        ],
    )
    hops = Section("per hop (into a hub, inside it, out to the consumer), ms")
    ha, hb = a.get("hops") or {}, b.get("hops") or {}
    for name in sorted(set(ha) | set(hb)):
        for key, label in (("50pct", "p50"), ("99pct", "p99")):
            hops.rows.append(
                Row(
                    f"{name} {label}",
                    ((ha.get(name) or {}).get("latency_ms") or {}).get(key),
                    ((hb.get(name) or {}).get("latency_ms") or {}).get(key),
                    better="lower",
                    kind="ms",
                )
            )
    paths = Section("per hub path, end to end, ms")
    pa, pb = a.get("paths") or {}, b.get("paths") or {}
    for name in sorted(set(pa) | set(pb), key=lambda n: (n.count(">"), n)):
        for key, label in (("50pct", "p50"), ("99pct", "p99")):
            paths.rows.append(
                Row(
                    f"{name} {label}",
                    ((pa.get(name) or {}).get("end_to_end_ms") or {}).get(key),
                    ((pb.get(name) or {}).get("end_to_end_ms") or {}).get(key),
                    better="lower",
                    kind="ms",
                )
            )
    return [topology, hops, paths]


def _us_to_ms(v: Any) -> float | None:
    return v / 1000.0 if isinstance(v, (int, float)) else None


def labels_of(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, str]:
    """``A · demo``, ``B · hubei``; when both ran one workload under two topic layouts, the layouts
    (``A · dongguan, per-entry``)."""
    la, lb = ((r.get("run") or {}).get("topic_layout", "per-entry") for r in (a, b))
    if a.get("workload") == b.get("workload") and la != lb:
        return f"A · {a.get('workload', '?')}, {la}", f"B · {b.get('workload', '?')}, {lb}"
    return f"A · {a.get('workload', '?')}", f"B · {b.get('workload', '?')}"


def durations_differ(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """A note when the two runs lasted differently: rates and percentiles compare, totals do not."""
    da, db = (r.get("run", {}).get("duration_s") for r in (a, b))
    if not da or not db or abs(da - db) < 0.5:
        return None
    return f"A ran {da:g} s and B {db:g} s: rates and latencies compare, totals (records, outcomes) do not"


# ---------------------------------------------------------------- terminal


def compare_table(a: dict[str, Any], b: dict[str, Any], paths: tuple[str, str] | None = None) -> Group:
    """The comparison as rich tables (one, with a section per group of figures)."""
    la, lb = labels_of(a, b)
    caption = [f"A: {paths[0]}", f"B: {paths[1]}"] if paths else []
    if (lengths := durations_differ(a, b)) is not None:
        caption.append(lengths)
    t = Table(title=f"{la}  vs  {lb}", title_justify="left", caption="\n".join(caption) or None, caption_justify="left")
    t.add_column("figure", overflow="fold")
    t.add_column(la, justify="right")
    t.add_column(lb, justify="right")
    t.add_column("B vs A", justify="right", no_wrap=True)
    for i, section in enumerate(comparison(a, b)):
        if not section.rows:
            continue
        if i:
            t.add_section()
        t.add_row(Text(section.title, style="bold cyan"), "", "", "")
        for row in section.rows:
            delta, judgement = row.delta()
            style = {"better": "green", "worse": "red"}.get(judgement, "")
            t.add_row("  " + row.label, _styled(row, row.a), _styled(row, row.b), Text(delta, style=style))
    return Group(t)


def _styled(row: Row, v: Any) -> Text:
    text = row.text(v)
    if row.kind == "verdict":
        return Text(text, style="green" if text.startswith("✓") else "red" if text.startswith("✕") else "")
    return Text(text)


# ---------------------------------------------------------------- HTML


def html_table(sections: list[Section], la: str, lb: str, div_id: str = "comparison") -> str:
    rows = []
    for section in sections:
        if not section.rows:
            continue
        rows.append(f'<tr class="sec"><td colspan="4">{esc(section.title)}</td></tr>')
        for row in section.rows:
            delta, judgement = row.delta()
            cells = [esc(row.label), esc(row.text(row.a)), esc(row.text(row.b)), f'<span class="{judgement}">{esc(delta)}</span>']
            rows.append("<tr>" + f'<td class="l">{cells[0]}</td>' + "".join(f"<td>{c}</td>" for c in cells[1:]) + "</tr>")
    head = f'<tr><th class="l">figure</th><th>{esc(la)}</th><th>{esc(lb)}</th><th>B vs A</th></tr>'
    return f'<div class="card" id="{div_id}"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def fig_percentiles_ab(a: dict[str, Any], b: dict[str, Any], la: str, lb: str) -> go.Figure | None:
    fig = go.Figure()
    for r, label, color in ((a, la, RUN_COLORS[0]), (b, lb, RUN_COLORS[1])):
        e2e = aggregated_curve(r)
        if e2e:
            fig.add_trace(curve_trace(e2e, f"{label}: end to end", color=color, width=3))
        pub = aggregated_curve(r, "aggregatedPublishLatency")
        if pub:
            fig.add_trace(curve_trace(pub, f"{label}: publish", color=color, width=1.5, dash="dash"))
    if not fig.data:
        return None
    return percentile_axes(fig, "Latency distribution, A against B", height=420)


def fig_latency_time_ab(a: dict[str, Any], b: dict[str, Any], la: str, lb: str) -> go.Figure | None:
    fig = go.Figure()
    for r, label, color in ((a, la, RUN_COLORS[0]), (b, lb, RUN_COLORS[1])):
        for key, name, dash in (("endToEndLatency99pct", "p99", "solid"), ("endToEndLatency50pct", "p50", "dot")):
            if nonempty_list(r.get(key)):
                ys = r[key]
                fig.add_trace(
                    go.Scatter(
                        x=interval_x(r, len(ys)),
                        y=ys,
                        name=f"{label}: end to end {name}",
                        mode="lines",
                        line={"color": color, "width": 2.5 if name == "p99" else 1.8, "dash": dash},
                    )
                )
    if not fig.data:
        return None
    base_layout(fig, "End-to-end latency over time, A against B")
    fig.update_xaxes(ticksuffix=" s")
    fig.update_yaxes(title_text="ms", rangemode="tozero")
    return fig


def fig_flow_p99_ab(a: dict[str, Any], b: dict[str, Any], la: str, lb: str) -> go.Figure | None:
    fa = {flow_label(f, n): f for n, f in delivered_flows(a)}
    fb = {flow_label(f, n): f for n, f in delivered_flows(b)}
    labels = sorted(set(fa) | set(fb))
    if not labels:
        return None
    if len(labels) > 40:  # the flows that differ most
        labels = sorted(labels, key=lambda k: -abs((_flow_q(fa.get(k), "99pct") or 0) - (_flow_q(fb.get(k), "99pct") or 0)))[:40]
    fig = go.Figure()
    for flows, label, color in ((fa, la, RUN_COLORS[0]), (fb, lb, RUN_COLORS[1])):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[_flow_q(flows.get(k), "99pct") for k in labels],
                name=f"{label}: p99",
                orientation="h",
                marker_color=color,
                hovertemplate="%{y}: %{x:.1f} ms<extra>" + esc(label) + "</extra>",
            )
        )
    base_layout(fig, "End-to-end p99 per flow, A against B", height=max(320, 120 + 34 * len(labels)), barmode="group", bargap=0.3)
    fig.update_xaxes(ticksuffix=" ms")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(margin={"l": 10})
    return fig


def _run_card(r: dict[str, Any], label: str, scenario: dict[str, Any] | None, path: str) -> str:
    names = Names(scenario)
    return (
        f'<div class="card" style="padding:14px 16px"><h2 style="margin:0 0 4px">{esc(label)}'
        f'<small style="font-weight:400;color:#64748b;margin-left:8px">{esc(names.platform)}</small></h2>'
        f'{run_meta(r)}<div class="meta">file <b>{esc(path)}</b></div>'
        f'<div style="display:grid;gap:8px;margin-top:10px">{verdict(r)}{slo_verdict(r)}</div></div>'
    )


def build_compare_html(
    a: dict[str, Any],
    b: dict[str, Any],
    scenario_a: dict[str, Any] | None = None,
    scenario_b: dict[str, Any] | None = None,
    paths: tuple[str, str] = ("A", "B"),
) -> str:
    """The comparison page: both runs' headers, the table, and overlaid charts."""
    la, lb = labels_of(a, b)
    sections = comparison(a, b)
    rates = fig_rates([(la, a), (lb, b)])
    rates.update_layout(title={"text": "Throughput over time, A (solid) against B (dashed)"})
    body = [
        (f'<header class="top"><div><h1>{esc(a.get("workload", "?"))} <small>against</small> {esc(b.get("workload", "?"))}</h1></div></header>'),
        '<div class="grid">',
        _run_card(a, la, scenario_a, paths[0]),
        _run_card(b, lb, scenario_b, paths[1]),
        "</div>",
        *([f'<p class="note">{esc(lengths)}</p>'] if (lengths := durations_differ(a, b)) else []),
        "<h2>Throughput and latency</h2>",
        '<div class="grid">',
        chart(rates, "chart-rates"),
        chart(fig_latency_time_ab(a, b, la, lb), "chart-latency-time", empty="No per-interval latency lists in these results."),
        chart(fig_percentiles_ab(a, b, la, lb), "chart-percentiles", empty="no latency figures"),
        chart(fig_flow_p99_ab(a, b, la, lb), "chart-flow-latency", empty="no flow delivered anything"),
        "</div>",
        "<h2>Side by side</h2>",
        '<div class="grid" style="align-items:start">',
        html_table([s for s in sections if s.title in ("run", "outcomes", "SLOs") or s.title.startswith("rates")], la, lb, "comparison"),
        html_table([s for s in sections if s.title.startswith(("latency", "per flow"))], la, lb, "comparison-latency"),
        "</div>",
        (
            "<footer>exchange compare · B vs A: relative change; green where lower latency or fewer losses, red where "
            "worse; ≈: within run-to-run noise (latency 5 % and 1 ms, rates 2 %, counts 1 %, losses any difference), "
            "not judged</footer>"
        ),
    ]
    return page(f"{la} vs {lb} · exchange compare", "\n".join(body))


def run_compare(a_path: Path, b_path: Path, out_path: Path | None = None) -> tuple[Group, Path]:
    """Read both results (and their scenario.json), write the page; return the terminal table and the page's path."""
    a_path, b_path = Path(a_path), Path(b_path)
    a, b = load_result(a_path), load_result(b_path)
    out = Path(out_path) if out_path else Path("compare.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_compare_html(a, b, load_scenario_beside(a_path), load_scenario_beside(b_path), (str(a_path), str(b_path))), encoding="utf-8")
    return compare_table(a, b, (str(a_path), str(b_path))), out
