"""The page's plotly figures: rates, latency over time, percentiles, flows, outcomes, exceptions, the department matrix."""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go

from exchange.results.report.series import (
    MAX_X,
    Names,
    aggregated_curve,
    delivered_flows,
    department_matrix,
    flow_label,
    interval_x,
    nonempty_list,
    pct_label,
    pct_to_x,
    quantiles_curve,
    worst_flows,
)

FONT = '"Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", "Source Han Sans SC", "Helvetica Neue", Arial, sans-serif'
MAX_BARS = 40  # flows in the outcome chart
COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488"]
REASON_COLORS = ["#f97316", "#ef4444", "#a855f7", "#eab308", "#64748b", "#be123c", "#0ea5e9"]


def base_layout(fig: go.Figure, title: str, height: int = 380, **kw: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15, "color": "#0f172a"}},
        font={"family": FONT, "size": 12, "color": "#334155"},
        colorway=COLORS,
        height=height,
        margin={"l": 60, "r": 20, "t": 48, "b": 48},
        legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0, "font": {"size": 11}, "traceorder": "normal"},
        hoverlabel={"font": {"family": FONT}},
        paper_bgcolor="white",
        plot_bgcolor="white",
        **kw,
    )
    fig.update_xaxes(gridcolor="#eef2f7", zerolinecolor="#cbd5e1", linecolor="#cbd5e1")
    fig.update_yaxes(gridcolor="#eef2f7", zerolinecolor="#cbd5e1", linecolor="#cbd5e1")
    return fig


def fig_rates(runs: list[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Publish and consume rate per interval (and the router's backlog), one or more runs."""
    fig = go.Figure()
    compare = len(runs) > 1
    for i, (label, r) in enumerate(runs):
        dash = "solid" if i == 0 else "dash"
        prefix = f"{label}: " if compare else ""
        for key, name, color in (("publishRate", "publish rate", COLORS[0]), ("consumeRate", "consume rate", COLORS[2])):
            ys = r.get(key) or []
            fig.add_trace(
                go.Scatter(
                    x=interval_x(r, len(ys)),
                    y=ys,
                    name=prefix + name,
                    mode="lines+markers",
                    line={"color": color, "width": 2.5, "dash": dash},
                    marker={"size": 5},
                    hovertemplate="%{y:,.0f} records/s at %{x} s<extra>" + html.escape(prefix + name) + "</extra>",
                )
            )
        if nonempty_list(r.get("publishErrorRate")):
            ys = r["publishErrorRate"]
            fig.add_trace(
                go.Scatter(x=interval_x(r, len(ys)), y=ys, name=prefix + "publish errors", mode="lines", line={"color": COLORS[4], "dash": dash})
            )
        if nonempty_list(r.get("backlog")) and not compare:
            ys = r["backlog"]
            fig.add_trace(
                go.Scatter(
                    x=interval_x(r, len(ys)),
                    y=ys,
                    name="router backlog (records)",
                    yaxis="y2",
                    mode="lines",
                    line={"color": "#94a3b8", "width": 1},
                    fill="tozeroy",
                    fillcolor="rgba(148,163,184,0.18)",
                )
            )
    base_layout(fig, "Throughput over time")
    if not compare:
        mark_warmup(fig, runs[0][1])
        mark_faults(fig, runs[0][1])
    fig.update_xaxes(ticksuffix=" s")
    fig.update_yaxes(title_text="records/s", rangemode="tozero")
    if any(d.yaxis == "y2" for d in fig.data):
        fig.update_layout(
            yaxis2={
                "title": "backlog, records",
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "rangemode": "tozero",
                "tickformat": ",.0f",
                "nticks": 6,
            }
        )
    return fig


def mark_faults(fig: go.Figure, r: dict[str, Any]) -> None:
    """The --chaos faults on a time axis: a band while a pause lasts, a line at a kill."""
    for f in r.get("faults") or []:
        at = f.get("injected_at_s") if f.get("injected_at_s") is not None else f.get("at_s")
        if not isinstance(at, (int, float)):
            continue
        label = {"text": html.escape(str(f.get("spec", ""))), "font": {"size": 10, "color": "#b91c1c"}}
        if f.get("duration_s"):
            fig.add_vrect(x0=at, x1=at + f["duration_s"], fillcolor="rgba(220,38,38,0.10)", line_width=0, label={**label, "textposition": "top left"})
        else:
            fig.add_vline(
                x=at,
                line={"color": "#dc2626", "width": 1.5, "dash": "dash"},
                label={**label, "textposition": "end", "textangle": 0, "xanchor": "left"},
            )


def mark_warmup(fig: go.Figure, r: dict[str, Any]) -> None:
    """The warm-up on a time axis: a grey band over its seconds (exchange/runner/warmup.py)."""
    seconds = (r.get("warmup") or {}).get("seconds")
    if isinstance(seconds, (int, float)) and seconds > 0:
        fig.add_vrect(
            x0=0,
            x1=seconds,
            fillcolor="rgba(100,116,139,0.12)",
            line_width=0,
            label={"text": "warm-up", "textposition": "top left", "font": {"size": 10, "color": "#475569"}},
        )


def latency_series(r: dict[str, Any]) -> list[tuple[str, list, str]]:
    """(name, values in ms, kind) of every per-interval latency list in the result."""
    out = []
    for key, name in (
        ("endToEndLatency50pct", "end-to-end p50"),
        ("endToEndLatency99pct", "end-to-end p99"),
        ("publishLatency99pct", "publish p99"),
        ("publishDelayLatency99pct", "publish delay p99"),
    ):
        if nonempty_list(r.get(key)):
            scale = 1000.0 if "Delay" in key else 1.0  # OMB: publish delay in µs
            out.append((name, [v / scale if isinstance(v, (int, float)) else None for v in r[key]], "total"))
    for name, flow in worst_flows(r):
        if nonempty_list(flow.get("interval_p99_ms")):
            out.append((flow_label(flow, name) + " p99", flow["interval_p99_ms"], "flow"))
    return out


def fig_latency_time(r: dict[str, Any]) -> go.Figure | None:
    series = latency_series(r)
    if not series:
        return None
    fig = go.Figure()
    width = {"end-to-end p99": 3, "end-to-end p50": 2.5}
    palette = {"end-to-end p50": COLORS[0], "end-to-end p99": COLORS[4], "publish p99": COLORS[2], "publish delay p99": COLORS[6]}
    flow_colors = iter(COLORS[3:] + COLORS[:3])
    for name, ys, kind in series:
        line = {"color": palette[name], "width": width.get(name, 2)} if kind == "total" else {"color": next(flow_colors), "width": 1.2, "dash": "dot"}
        fig.add_trace(
            go.Scatter(
                x=interval_x(r, len(ys)),
                y=ys,
                name=name,
                mode="lines",
                line=line,
                connectgaps=False,
                hovertemplate="%{y:.1f} ms at %{x} s<extra>" + html.escape(name) + "</extra>",
            )
        )
    base_layout(fig, "Latency over time (per interval)")
    mark_warmup(fig, r)
    mark_faults(fig, r)
    fig.update_xaxes(ticksuffix=" s")
    fig.update_yaxes(title_text="ms", rangemode="tozero")
    return fig


def percentile_axes(fig: go.Figure, title: str, height: int = 400) -> go.Figure:
    base_layout(fig, title, height=height)
    ticks = [2, 10, 100, 1e3, 1e4, 1e5, MAX_X]
    labels = ["p50", "p90", "p99", "p99.9", "p99.99", "p99.999", "max"]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=labels, range=[0, math.log10(MAX_X) + 0.08])
    fig.update_yaxes(title_text="latency, ms", rangemode="tozero")
    return fig


def curve_trace(points: list[tuple[float, float]], name: str, **line: Any) -> go.Scatter:
    return go.Scatter(
        x=[pct_to_x(p) for p, _ in points],
        y=[v for _, v in points],
        name=name,
        mode="lines+markers",
        line=line,
        marker={"size": 4},
        text=[pct_label(p) for p, _ in points],
        hovertemplate="%{text}: %{y:.2f} ms<extra>" + html.escape(name) + "</extra>",
    )


def fig_percentiles(r: dict[str, Any]) -> go.Figure | None:
    fig = go.Figure()
    e2e = aggregated_curve(r)
    if e2e:
        fig.add_trace(curve_trace(e2e, "all flows, end to end", color="#0f172a", width=3.5))
    pub = aggregated_curve(r, "aggregatedPublishLatency")
    if pub:
        fig.add_trace(curve_trace(pub, "publish (broker ack)", color="#94a3b8", width=2, dash="dash"))
    for i, (name, flow) in enumerate(worst_flows(r)):
        pts = quantiles_curve(flow.get("end_to_end_ms"))
        if pts:
            fig.add_trace(curve_trace(pts, flow_label(flow, name), color=COLORS[i % len(COLORS)], width=1.4))
    if not fig.data:
        return None
    return percentile_axes(fig, "Latency distribution: percentile plot (each 9 a decade)", height=420)


def fig_flow_latency(r: dict[str, Any], names: Names) -> go.Figure | None:
    """One row per flow: a bar from p50 to max, dots at p50, p99, p99.9 and max."""
    flows = delivered_flows(r)
    if not flows:
        return None
    title = "End-to-end latency per flow: p50 · p99 · p99.9 · max"
    if len(flows) > MAX_BARS:
        title += f" (the {MAX_BARS} slowest at p99 of {len(flows)})"
        flows = sorted(worst_flows(r, MAX_BARS), key=lambda kv: flow_label(kv[1], kv[0]))
    labels = [flow_label(f, n) for n, f in flows]
    hover = [f"{names.entry(f.get('entry', ''))} → {names.dept(f.get('consumer', ''))}" for _, f in flows]
    q = [f.get("end_to_end_ms") or {} for _, f in flows]
    fig = go.Figure()
    xs, ys = [], []
    for label, qq in zip(labels, q, strict=True):
        xs += [qq.get("50pct"), qq.get("max"), None]
        ys += [label, label, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#cbd5e1", "width": 6}, showlegend=False, hoverinfo="skip"))
    for key, name, color, size in (
        ("50pct", "p50", "#60a5fa", 11),
        ("99pct", "p99", "#1d4ed8", 11),
        ("999pct", "p99.9", "#1e3a8a", 9),
        ("max", "max", "#f97316", 9),
    ):
        fig.add_trace(
            go.Scatter(
                x=[qq.get(key) for qq in q],
                y=labels,
                name=name,
                mode="markers",
                marker={"color": color, "size": size, "line": {"color": "white", "width": 1}},
                customdata=hover,
                hovertemplate="%{customdata}<br>" + name + ": %{x:.1f} ms<extra></extra>",
            )
        )
    base_layout(fig, title, height=max(320, 120 + 30 * len(flows)))
    fig.update_xaxes(ticksuffix=" ms", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", automargin=True, showgrid=True)
    fig.update_layout(margin={"l": 10})
    return fig


def fig_outcomes(r: dict[str, Any], names: Names) -> go.Figure | None:
    flows = sorted((r.get("flows") or {}).items(), key=lambda kv: flow_label(kv[1], kv[0]))
    if not flows:
        return None
    title = "Outcomes per flow (records × subscription): delivered, denied by reason"
    if len(flows) > MAX_BARS:
        flows = sorted(flows, key=lambda kv: -(kv[1].get("delivered", 0) + kv[1].get("denied", 0)))[:MAX_BARS]
        title += f" (the {MAX_BARS} busiest of {len(r['flows'])})"
    labels = [flow_label(f, n) for n, f in flows]
    hover = [f"{names.entry(f.get('entry', ''))} → {names.dept(f.get('consumer', ''))}" for _, f in flows]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            y=labels,
            x=[f.get("delivered", 0) for _, f in flows],
            name="delivered",
            orientation="h",
            marker_color="#22c55e",
            customdata=hover,
            hovertemplate="%{customdata}<br>delivered: %{x:,}<extra></extra>",
        )
    )
    reasons = sorted({reason for _, f in flows for reason in (f.get("denied_by_reason") or {})})
    for i, reason in enumerate(reasons):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[(f.get("denied_by_reason") or {}).get(reason, 0) for _, f in flows],
                name=f"denied: {reason}",
                orientation="h",
                marker_color=REASON_COLORS[i % len(REASON_COLORS)],
                customdata=hover,
                hovertemplate="%{customdata}<br>" + reason + ": %{x:,}<extra></extra>",
            )
        )
    if any(isinstance(f.get("masked"), int) for _, f in flows):
        title = title.replace("delivered,", "delivered (| masked),")  # masked deliveries are a subset of delivered
        fig.add_trace(
            go.Scatter(
                y=labels,
                x=[f.get("masked", 0) for _, f in flows],
                name="of which masked",
                mode="markers",
                marker={"symbol": "line-ns-open", "size": 16, "color": "#0f172a", "line": {"width": 2}},
            )
        )
    base_layout(fig, title, height=max(300, 120 + 26 * len(flows)), barmode="stack", bargap=0.3)
    fig.update_xaxes(tickformat=",")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(margin={"l": 10})
    return fig


def fig_exceptions(r: dict[str, Any]) -> go.Figure | None:
    """Dead letters by reason and 一数一源 conflicts by item: absent when there are none."""
    dead = {k: v for k, v in ((r.get("run") or {}).get("dead_letters_by_reason") or {}).items() if v}
    conflicts = {k: (v or {}).get("conflicts", 0) for k, v in (r.get("one_number_one_source") or {}).items()}
    conflicts = {k: v for k, v in conflicts.items() if v}
    if not dead and not conflicts:
        return None
    fig = go.Figure()
    if dead:
        fig.add_trace(
            go.Bar(
                x=list(dead.values()),
                y=[f"dead letter: {k}" for k in dead],
                orientation="h",
                name="dead-lettered",
                marker_color="#dc2626",
                text=[f"{v:,}" for v in dead.values()],
                textposition="auto",
            )
        )
    if conflicts:
        fig.add_trace(
            go.Bar(
                x=list(conflicts.values()),
                y=[f"conflict: {k}" for k in conflicts],
                orientation="h",
                name="一数一源 conflicts",
                marker_color="#a855f7",
                text=[f"{v:,}" for v in conflicts.values()],
                textposition="auto",
            )
        )
    base_layout(fig, "Dead letters and one-number-one-source conflicts", height=max(240, 110 + 30 * (len(dead) + len(conflicts))))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(margin={"l": 10}, showlegend=False)
    return fig


def fig_matrix(r: dict[str, Any], names: Names) -> go.Figure | None:
    rows, cols, cells = department_matrix(r, names)
    if not cells:
        return None
    z, text, hover = [], [], []
    for row in rows:
        z.append([])
        text.append([])
        hover.append([])
        for col in cols:
            cell = cells.get((row, col))
            if cell is None:
                z[-1].append(None), text[-1].append(""), hover[-1].append("no subscription")
                continue
            d, n = cell["delivered"], cell["denied"]
            z[-1].append(math.log10(d + 1))
            text[-1].append(f"<b>{d:,}</b>" + (f"<br>✕ {n:,}" if n else ""))
            hover[-1].append(f"{row} → {col}<br>delivered {d:,} · denied {n:,}<br>{'、'.join(sorted(set(cell['entries'])))}")
    top = max((v for line in z for v in line if v is not None), default=1.0) or 1.0
    ticks = [t for t in range(int(top) + 1)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cols,
            y=rows,
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=[[0, "#eff6ff"], [0.5, "#93c5fd"], [1, "#2563eb"]],
            textfont={"size": 13},
            zmin=0,
            zmax=top,
            xgap=3,
            ygap=3,
            colorbar={"title": {"text": "delivered"}, "tickvals": ticks, "ticktext": [f"{10**t:,}" for t in ticks], "thickness": 12},
        )
    )
    label = "providing department" if names.known else "entry (no scenario.json: rows by entry)"
    big = len(rows) * len(cols) > 300  # too many cells to label: hover only
    if big:
        fig.update_traces(texttemplate=None, text=None, xgap=1, ygap=1)
    base_layout(fig, "Flows between departments: delivered (✕ denied)", height=max(300, 150 + (18 if big else 46) * len(rows)))
    fig.update_xaxes(title_text="consuming department", side="bottom", showgrid=False, automargin=True, tickfont={"size": 11 if big else 13})
    fig.update_yaxes(title_text=label, autorange="reversed", showgrid=False, automargin=True, tickfont={"size": 11 if big else 13})
    return fig
