"""``exchange report``: one self-contained HTML page from a run's ``result.json``.

The page embeds plotly.js once, inline, so it opens offline (no CDN, no network). It reads
the raw JSON and takes every optional part with ``.get()``: per-interval latency lists,
``aggregated…Quantiles`` maps and ``slos`` are charted when present and skipped (with a
note) when not, so the same code reads older and newer results. ``scenario.json`` next to
``result.json``, when present, gives department and entry names and each entry's provider.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from pydantic import ValidationError

from schemas.results import Result
from schemas.scenario import MaskRule

from exchange.policy.masking import apply_mask

from exchange.errors import ExchangeError

FONT = '"Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", "Source Han Sans SC", "Helvetica Neue", Arial, sans-serif'
PCT_KEYS = [("50pct", 50.0), ("75pct", 75.0), ("95pct", 95.0), ("99pct", 99.0), ("999pct", 99.9),
            ("9999pct", 99.99), ("99999pct", 99.999)]
MAX_X = 1e6  # where "max" sits on the percentile axis (one decade past p99.999)
MAX_LINES = 12  # per-flow lines drawn in one chart; the rest are in the table
MAX_BARS = 40  # flows in the outcome chart
COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
          "#4b5563", "#65a30d", "#7c3aed", "#0d9488"]
REASON_COLORS = ["#f97316", "#ef4444", "#a855f7", "#eab308", "#64748b", "#be123c", "#0ea5e9"]
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["lasso2d", "select2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "pan2d"]}
ESSENTIAL = {"workload", "counts", "flows", "conservation"}
SAMPLES_FILE = "samples.jsonl"  # written by the consumer process (consumers/samples.py)
SAMPLE_KEYS = {"flow", "entry", "consumer", "n", "trace", "delivered", "source", "masks", "items"}
SAMPLES_SHOWN = 3  # deliveries shown per flow; samples.jsonl has them all
SAMPLE_FLOWS_SHOWN = 60  # flows shown, those with masked or replaced values first
SAMPLE_FLOWS_OPEN = 3  # flows shown unfolded


class ReportError(ExchangeError):
    """The file is not a result this report can read."""


# ---------------------------------------------------------------- loading


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (give a run's directory or its result.json)") from None
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data


def load_result(path: Path) -> dict[str, Any]:
    """The raw result dict, checked against ``schemas.results.Result``.

    Fields the model does not know (yet) are accepted, and so are missing ones the
    report does not need; a wrong type or a missing essential part is an error."""
    data = load_json(path)
    try:
        Result.model_validate(data)
    except ValidationError as exc:
        problems = [e for e in exc.errors()
                    if e["type"] != "extra_forbidden" and not (e["type"] == "missing" and e["loc"][0] not in ESSENTIAL)]
        if problems:
            lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in problems[:10]]
            raise ReportError(f"{path}: not a result.json:\n  " + "\n  ".join(lines)) from None
    return data


def load_scenario_beside(result_path: Path) -> dict[str, Any] | None:
    path = Path(result_path).with_name("scenario.json")
    if not path.is_file():
        return None
    try:
        return load_json(path)
    except ReportError:
        return None


def load_samples_beside(result_path: Path) -> list[dict[str, Any]] | None:
    """The delivery samples (``samples.jsonl``) beside a result, or None when there are none.

    Raises :class:`ReportError` naming the file and line of a line that is not a sample."""
    path = Path(result_path).with_name(SAMPLES_FILE)
    if not path.is_file():
        return None
    samples = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ReportError(f"{path}, line {n}: not JSON ({exc})") from None
        missing = SAMPLE_KEYS - set(sample) if isinstance(sample, dict) else SAMPLE_KEYS
        if missing:
            raise ReportError(f"{path}, line {n}: not a delivery sample (missing {', '.join(sorted(missing))})")
        samples.append(sample)
    return samples


# ---------------------------------------------------------------- reading the result


def fmt_ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, (int, float)) else "—"


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else None


def flow_label(flow: dict[str, Any], name: str = "") -> str:
    if "entry" in flow and "consumer" in flow:
        return f"{flow['entry']} → {flow['consumer']}"
    return name


def delivered_flows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(((n, f) for n, f in (result.get("flows") or {}).items() if f.get("delivered")),
                  key=lambda kv: flow_label(kv[1], kv[0]))


def worst_flows(result: dict[str, Any], n: int = MAX_LINES) -> list[tuple[str, dict[str, Any]]]:
    """The flows with the highest p99 (those an architect looks at first)."""
    flows = delivered_flows(result)
    if len(flows) <= n:
        return flows
    return sorted(flows, key=lambda kv: -(kv[1].get("end_to_end_ms") or {}).get("99pct", 0.0))[:n]


def pct_to_x(p: float) -> float:
    """HdrHistogram's percentile axis: 1 / (1 − q), so each 9 gets a decade."""
    return MAX_X if p >= 100.0 else 100.0 / (100.0 - p)


def aggregated_curve(result: dict[str, Any], prefix: str = "aggregatedEndToEndLatency") -> list[tuple[float, float]]:
    """(percentile, value) points: the fine ``…Quantiles`` map if present, else the OMB fields."""
    fine = result.get(prefix + "Quantiles")
    if isinstance(fine, dict) and fine:
        points = sorted((float(p), float(v)) for p, v in fine.items())
    else:
        points = [(p, result[prefix + k]) for k, p in PCT_KEYS if isinstance(result.get(prefix + k), (int, float))]
        if isinstance(result.get(prefix + "Max"), (int, float)):
            points.append((100.0, result[prefix + "Max"]))
    return [(p, v) for p, v in points if p >= 1.0 and v > 0]


def quantiles_curve(q: dict[str, Any] | None) -> list[tuple[float, float]]:
    q = q or {}
    points = [(p, q[k]) for k, p in PCT_KEYS if isinstance(q.get(k), (int, float))]
    if isinstance(q.get("max"), (int, float)):
        points.append((100.0, q["max"]))
    return [(p, v) for p, v in points if v > 0]


def pct_label(p: float) -> str:
    return "max" if p >= 100 else f"p{p:g}"


class Names:
    """Department and entry names, and each entry's provider, from ``scenario.json``."""

    def __init__(self, scenario: dict[str, Any] | None) -> None:
        scenario = scenario or {}
        self.known = bool(scenario)
        self.platform = (scenario.get("platform") or {}).get("name", "")
        self.depts = {d.get("id"): d.get("name") or d.get("id") for d in scenario.get("departments") or []}
        self.entries = {c.get("id"): c for c in scenario.get("catalogue") or []}

    def dept(self, dept_id: str) -> str:
        return self.depts.get(dept_id) or dept_id

    def entry(self, entry_id: str) -> str:
        return (self.entries.get(entry_id) or {}).get("name") or entry_id

    def provider(self, entry_id: str) -> str | None:
        return (self.entries.get(entry_id) or {}).get("provider")


def department_matrix(result: dict[str, Any], names: Names) -> tuple[list[str], list[str], dict[tuple[str, str], dict]]:
    """Rows: providing department (or entry, without scenario.json); columns: consumer."""
    cells: dict[tuple[str, str], dict] = {}
    for flow in (result.get("flows") or {}).values():
        entry, consumer = flow.get("entry", "?"), flow.get("consumer", "?")
        provider = names.provider(entry)
        row = names.dept(provider) if provider else entry
        col = names.dept(consumer)
        cell = cells.setdefault((row, col), {"delivered": 0, "denied": 0, "entries": []})
        cell["delivered"] += flow.get("delivered", 0)
        cell["denied"] += flow.get("denied", 0)
        cell["entries"].append(names.entry(entry))
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    return rows, cols, cells


def interval_x(result: dict[str, Any], n: int) -> list[float]:
    step = (result.get("sampleRateMillis") or 1000) / 1000.0
    return [round((i + 1) * step, 3) for i in range(n)]


def nonempty_list(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(v, (int, float)) and v for v in value)


# ---------------------------------------------------------------- figures


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
            fig.add_trace(go.Scatter(x=interval_x(r, len(ys)), y=ys, name=prefix + name, mode="lines+markers",
                                     line={"color": color, "width": 2.5, "dash": dash}, marker={"size": 5},
                                     hovertemplate="%{y:,.0f} records/s at %{x} s<extra>" + html.escape(prefix + name) + "</extra>"))
        if nonempty_list(r.get("publishErrorRate")):
            ys = r["publishErrorRate"]
            fig.add_trace(go.Scatter(x=interval_x(r, len(ys)), y=ys, name=prefix + "publish errors", mode="lines",
                                     line={"color": COLORS[4], "dash": dash}))
        if nonempty_list(r.get("backlog")) and not compare:
            ys = r["backlog"]
            fig.add_trace(go.Scatter(x=interval_x(r, len(ys)), y=ys, name="router backlog (records)", yaxis="y2",
                                     mode="lines", line={"color": "#94a3b8", "width": 1}, fill="tozeroy",
                                     fillcolor="rgba(148,163,184,0.18)"))
    base_layout(fig, "Throughput over time")
    if not compare:
        mark_warmup(fig, runs[0][1])
        mark_faults(fig, runs[0][1])
    fig.update_xaxes(ticksuffix=" s")
    fig.update_yaxes(title_text="records/s", rangemode="tozero")
    if any(d.yaxis == "y2" for d in fig.data):
        fig.update_layout(yaxis2={"title": "backlog, records", "overlaying": "y", "side": "right", "showgrid": False,
                                  "rangemode": "tozero", "tickformat": ",.0f", "nticks": 6})
    return fig


def mark_faults(fig: go.Figure, r: dict[str, Any]) -> None:
    """The --chaos faults on a time axis: a band while a pause lasts, a line at a kill."""
    for f in r.get("faults") or []:
        at = f.get("injected_at_s") if f.get("injected_at_s") is not None else f.get("at_s")
        if not isinstance(at, (int, float)):
            continue
        label = {"text": html.escape(str(f.get("spec", ""))), "font": {"size": 10, "color": "#b91c1c"}}
        if f.get("duration_s"):
            fig.add_vrect(x0=at, x1=at + f["duration_s"], fillcolor="rgba(220,38,38,0.10)", line_width=0,
                          label={**label, "textposition": "top left"})
        else:
            fig.add_vline(x=at, line={"color": "#dc2626", "width": 1.5, "dash": "dash"},
                          label={**label, "textposition": "end", "textangle": 0, "xanchor": "left"})


def mark_warmup(fig: go.Figure, r: dict[str, Any]) -> None:
    """The warm-up on a time axis: a grey band over its seconds (exchange/runner/warmup.py)."""
    seconds = (r.get("warmup") or {}).get("seconds")
    if isinstance(seconds, (int, float)) and seconds > 0:
        fig.add_vrect(x0=0, x1=seconds, fillcolor="rgba(100,116,139,0.12)", line_width=0,
                      label={"text": "warm-up", "textposition": "top left", "font": {"size": 10, "color": "#475569"}})


def latency_series(r: dict[str, Any]) -> list[tuple[str, list, str]]:
    """(name, values in ms, kind) of every per-interval latency list in the result."""
    out = []
    for key, name in (("endToEndLatency50pct", "end-to-end p50"), ("endToEndLatency99pct", "end-to-end p99"),
                      ("publishLatency99pct", "publish p99"), ("publishDelayLatency99pct", "publish delay p99")):
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
    palette = {"end-to-end p50": COLORS[0], "end-to-end p99": COLORS[4], "publish p99": COLORS[2],
               "publish delay p99": COLORS[6]}
    flow_colors = iter(COLORS[3:] + COLORS[:3])
    for name, ys, kind in series:
        line = ({"color": palette[name], "width": width.get(name, 2)} if kind == "total"
                else {"color": next(flow_colors), "width": 1.2, "dash": "dot"})
        fig.add_trace(go.Scatter(x=interval_x(r, len(ys)), y=ys, name=name, mode="lines", line=line,
                                 connectgaps=False, hovertemplate="%{y:.1f} ms at %{x} s<extra>" + html.escape(name) + "</extra>"))
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
        x=[pct_to_x(p) for p, _ in points], y=[v for _, v in points], name=name, mode="lines+markers",
        line=line, marker={"size": 4},
        text=[pct_label(p) for p, _ in points],
        hovertemplate="%{text}: %{y:.2f} ms<extra>" + html.escape(name) + "</extra>")


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
    for label, qq in zip(labels, q):
        xs += [qq.get("50pct"), qq.get("max"), None]
        ys += [label, label, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#cbd5e1", "width": 6}, showlegend=False,
                             hoverinfo="skip"))
    for key, name, color, size in (("50pct", "p50", "#60a5fa", 11), ("99pct", "p99", "#1d4ed8", 11),
                                   ("999pct", "p99.9", "#1e3a8a", 9), ("max", "max", "#f97316", 9)):
        fig.add_trace(go.Scatter(x=[qq.get(key) for qq in q], y=labels, name=name, mode="markers",
                                 marker={"color": color, "size": size, "line": {"color": "white", "width": 1}},
                                 customdata=hover, hovertemplate="%{customdata}<br>" + name + ": %{x:.1f} ms<extra></extra>"))
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
    fig.add_trace(go.Bar(y=labels, x=[f.get("delivered", 0) for _, f in flows], name="delivered", orientation="h",
                         marker_color="#22c55e", customdata=hover,
                         hovertemplate="%{customdata}<br>delivered: %{x:,}<extra></extra>"))
    reasons = sorted({reason for _, f in flows for reason in (f.get("denied_by_reason") or {})})
    for i, reason in enumerate(reasons):
        fig.add_trace(go.Bar(y=labels, x=[(f.get("denied_by_reason") or {}).get(reason, 0) for _, f in flows],
                             name=f"denied: {reason}", orientation="h", marker_color=REASON_COLORS[i % len(REASON_COLORS)],
                             customdata=hover, hovertemplate="%{customdata}<br>" + reason + ": %{x:,}<extra></extra>"))
    if any(isinstance(f.get("masked"), int) for _, f in flows):
        title = title.replace("delivered,", "delivered (| masked),")  # masked deliveries are a subset of delivered
        fig.add_trace(go.Scatter(y=labels, x=[f.get("masked", 0) for _, f in flows], name="of which masked",
                                 mode="markers", marker={"symbol": "line-ns-open", "size": 16, "color": "#0f172a",
                                                         "line": {"width": 2}}))
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
        fig.add_trace(go.Bar(x=list(dead.values()), y=[f"dead letter: {k}" for k in dead], orientation="h",
                             name="dead-lettered", marker_color="#dc2626", text=[f"{v:,}" for v in dead.values()],
                             textposition="auto"))
    if conflicts:
        fig.add_trace(go.Bar(x=list(conflicts.values()), y=[f"conflict: {k}" for k in conflicts], orientation="h",
                             name="一数一源 conflicts", marker_color="#a855f7",
                             text=[f"{v:,}" for v in conflicts.values()], textposition="auto"))
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
        z.append([]), text.append([]), hover.append([])
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
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=rows, text=text, texttemplate="%{text}", customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=[[0, "#eff6ff"], [0.5, "#93c5fd"], [1, "#2563eb"]],
        textfont={"size": 13},
        zmin=0, zmax=top, xgap=3, ygap=3,
        colorbar={"title": {"text": "delivered"}, "tickvals": ticks, "ticktext": [f"{10 ** t:,}" for t in ticks],
                  "thickness": 12}))
    label = "providing department" if names.known else "entry (no scenario.json: rows by entry)"
    big = len(rows) * len(cols) > 300  # too many cells to label: hover only
    if big:
        fig.update_traces(texttemplate=None, text=None, xgap=1, ygap=1)
    base_layout(fig, "Flows between departments: delivered (✕ denied)",
                height=max(300, 150 + (18 if big else 46) * len(rows)))
    fig.update_xaxes(title_text="consuming department", side="bottom", showgrid=False, automargin=True,
                     tickfont={"size": 11 if big else 13})
    fig.update_yaxes(title_text=label, autorange="reversed", showgrid=False, automargin=True,
                     tickfont={"size": 11 if big else 13})
    return fig


# ---------------------------------------------------------------- HTML


CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f1f5f9; --ok:#15803d; --bad:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font-family:FONTSTACK; font-size:14px; line-height:1.45; }
main { max-width:1360px; margin:0 auto; padding:24px 28px 48px; }
header.top { display:flex; justify-content:space-between; align-items:flex-end; gap:24px; flex-wrap:wrap; margin-bottom:14px; }
h1 { font-size:26px; margin:0; letter-spacing:-0.01em; }
h1 small { font-weight:400; color:var(--muted); font-size:17px; margin-left:8px; }
h2 { font-size:17px; margin:28px 0 10px; }
.meta { color:var(--muted); font-size:12.5px; display:flex; flex-wrap:wrap; gap:4px 16px; margin-top:6px; }
.meta b { color:var(--ink); font-weight:600; }
.verdicts { display:grid; grid-template-columns:5fr 2fr; gap:12px; margin:8px 0 14px; }
.verdict { border-radius:10px; padding:14px 18px; font-size:16px; font-weight:600; display:flex; gap:12px; align-items:center; }
.verdict.none { background:white; color:var(--muted); border:1px solid var(--line); }
.verdict.ok { background:#dcfce7; color:var(--ok); border:1px solid #86efac; }
.verdict.bad { background:#fee2e2; color:var(--bad); border:1px solid #fca5a5; }
.verdict .icon { font-size:24px; line-height:1; }
.verdict .sub { font-weight:400; color:var(--ink); font-size:14px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(116px, 1fr)); gap:10px; margin-bottom:8px; }
.kpi { background:white; border:1px solid var(--line); border-radius:10px; padding:10px 14px; }
.kpi .v { font-size:22px; font-weight:700; font-variant-numeric:tabular-nums; }
.kpi .l { color:var(--muted); font-size:12px; }
.kpi.warn .v { color:var(--bad); }
.grid { display:grid; grid-template-columns:1fr 1fr; gap:14px; }
.card { background:white; border:1px solid var(--line); border-radius:10px; padding:8px 10px; min-width:0; }
.card.wide { grid-column:1 / -1; }
.note { color:var(--muted); font-size:13px; padding:14px 12px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; font-size:13px; }
th, td { padding:6px 8px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { color:var(--muted); font-weight:600; background:#f8fafc; position:sticky; top:0; }
td.l, th.l { text-align:left; }
tr:last-child td { border-bottom:none; }
.scroll { max-height:560px; overflow:auto; }
.pass { color:var(--ok); font-weight:700; } .fail { color:var(--bad); font-weight:700; }
.better { color:var(--ok); } .worse { color:var(--bad); }
.sec td { background:#f8fafc; font-weight:700; text-align:left; color:var(--ink); }
.muted { color:var(--muted); }
.chg { font-weight:700; background:#fef9c3; padding:0 3px; border-radius:3px; }
details.sample { border-top:1px solid var(--line); padding:6px 4px; }
details.sample summary { cursor:pointer; padding:4px 0; }
details.sample td { white-space:normal; word-break:break-all; }
footer { color:var(--muted); font-size:12px; margin-top:28px; }
@media (max-width: 1000px) { .grid { grid-template-columns:1fr; } }
""".replace("FONTSTACK", FONT)


def esc(value: Any) -> str:
    return html.escape(str(value))


def chart(fig: go.Figure | None, div_id: str, wide: bool = False, empty: str = "") -> str:
    """A chart card (plotly.js itself is on the page once, in the head)."""
    cls = "card wide" if wide else "card"
    if fig is None:
        return f'<div class="{cls}" id="{div_id}-none"><div class="note">{esc(empty)}</div></div>' if empty else ""
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)
    return f'<div class="{cls} chart">{body}</div>'


def table(headers: list[str], rows: Iterable[list[Any]], left: int = 1, scroll: bool = False,
          last_left: bool = False) -> str:
    """An HTML table; cells are HTML already (escape them), the first ``left`` columns align left."""
    n = len(headers)

    def cls(i: int) -> str:
        return ' class="l"' if i < left or (last_left and i == n - 1) else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    out = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        f"</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def verdict(result: dict[str, Any]) -> str:
    cons = result.get("conservation") or {}
    ok = cons.get("ok") is True
    icon, word = ("✓", "Conservation check passed") if ok else ("✕", "Conservation check FAILED")
    return (f'<div class="verdict {"ok" if ok else "bad"}" id="conservation"><span class="icon">{icon}</span>'
            f'<div>{word}<div class="sub">{esc(cons.get("message", "no conservation check in this result"))}</div></div></div>')


def input_warnings(result: dict[str, Any]) -> str:
    """Banners for input the figures leave out: clock skew per source, records other clients wrote, batches that could not be decoded."""
    out = []
    skew = result.get("clock_skew") or {}
    if isinstance(skew, dict) and skew:
        total = sum(int(v.get("records", 0)) for v in skew.values() if isinstance(v, dict))
        per = "; ".join(f"{src}: {fmt_int(v.get('records'))} ({fmt_ms(v.get('min_ms'))} … {fmt_ms(v.get('max_ms'))} ms)"
                        for src, v in sorted(skew.items()) if isinstance(v, dict))
        out.append(f'<div class="verdict bad" id="clock-skew"><span class="icon">⚠</span><div>Clock skew: {fmt_int(total)} '
                   "deliveries with a latency that cannot be true (negative or over an hour), kept out of every latency figure"
                   f'<div class="sub">by source: {esc(per)}</div></div></div>')
    foreign = (result.get("counts") or {}).get("foreign_dead_lettered")
    if foreign:
        why = "; ".join(f"{r}: {fmt_int(n)}" for r, n in ((result.get("counts") or {}).get("foreign_dead_letters_by_reason") or {}).items())
        out.append(f'<div class="verdict bad" id="foreign-dead-letters"><span class="icon">⚠</span><div>{fmt_int(foreign)} records '
                   "dead-lettered during the run carry no run id or another run's (written to an ingress topic by another client)"
                   f'<div class="sub">not among this run\'s outcomes; by reason: {esc(why)}</div></div></div>')
    undecodable = (result.get("counts") or {}).get("undecodable")
    if undecodable:
        out.append(f'<div class="verdict bad" id="undecodable"><span class="icon">⚠</span><div>{fmt_int(undecodable)} records in '
                   "ingress batches the router could not decode (dead-lettered as unsupported_codec / corrupt_batch)"
                   '<div class="sub">their run cannot be read from them, so they are not among this run\'s outcomes</div></div></div>')
    return "".join(out)


def slo_verdict(result: dict[str, Any]) -> str:
    slos = result.get("slos")
    if not isinstance(slos, list) or not slos:
        return '<div class="verdict none"><span class="icon">–</span><div>SLOs<div class="sub">no SLOs declared</div></div></div>'
    failed = [s.get("name", "?") for s in slos if not s.get("passed")]
    if not failed:
        return (f'<div class="verdict ok"><span class="icon">✓</span><div>All {len(slos)} SLOs met'
                f'<div class="sub">{esc(", ".join(s.get("name", "?") for s in slos))}</div></div></div>')
    return (f'<div class="verdict bad"><span class="icon">✕</span><div>{len(failed)} of {len(slos)} SLOs missed'
            f'<div class="sub">{esc(", ".join(failed))}</div></div></div>')


def run_meta(r: dict[str, Any]) -> str:
    run = r.get("run") or {}
    ready = ", ".join(f"{s:.1f} s" for s in run.get("router_ready_s") or [])
    items = [("driver", r.get("driver")), ("run", run.get("run_id")), ("started", run.get("started_at")),
             ("duration", f"{run.get('duration_s')} s" if run.get("duration_s") is not None else None),
             ("seed", run.get("seed")), ("router workers", run.get("router_workers")), ("router ready", ready or None),
             ("drain", f"{run.get('drain_s')} s" if run.get("drain_s") is not None else None),
             ("record size", f"{r.get('messageSize')} B" if r.get("messageSize") else None),
             ("topics / partitions", f"{r.get('topics')} / {r.get('partitions')}" if r.get("topics") else None),
             ("broker", (f"{run['broker']} at " if run.get("broker") else "embedded " if run.get("embedded_broker") else "")
              + str(run.get("bootstrap", "")) if run else None)]
    return '<div class="meta">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in items if v not in (None, "")) + "</div>"


def kpis(r: dict[str, Any]) -> str:
    c = r.get("counts") or {}
    cards = [
        ("produced", fmt_int(c.get("produced")), False),
        ("delivered", fmt_int(c.get("delivered")), False),
        ("denied", fmt_int(c.get("denied")), False),
        ("dead-lettered", fmt_int(c.get("dead_lettered")), bool(c.get("dead_lettered"))),
        ("unaccounted", fmt_int(c.get("unaccounted")), bool(c.get("unaccounted"))),
        ("mean publish rate, rec/s", fmt_int(round(mean(r.get("publishRate") or []) or 0)), False),
        ("mean consume rate, rec/s", fmt_int(round(mean(r.get("consumeRate") or []) or 0)), False),
        ("end-to-end p50, ms", fmt_ms(r.get("aggregatedEndToEndLatency50pct")), False),
        ("end-to-end p99, ms", fmt_ms(r.get("aggregatedEndToEndLatency99pct")), False),
        ("end-to-end max, ms", fmt_ms(r.get("aggregatedEndToEndLatencyMax")), False),
    ]
    if isinstance(r.get("warmup"), dict) and r["warmup"].get("seconds"):  # the latency cards leave the warm-up out
        cards[-3:] = [(label.replace(", ms", " after warm-up, ms"), v, warn) for label, v, warn in cards[-3:]]
    if isinstance(c.get("masked"), int):
        cards.insert(2, ("masked", fmt_int(c["masked"]), False))
    return '<div class="kpis">' + "".join(
        f'<div class="kpi{" warn" if warn else ""}"><div class="v">{esc(v)}</div><div class="l">{esc(label)}</div></div>'
        for label, v, warn in cards) + "</div>"


def slo_unit(slo: dict[str, Any]) -> str:
    if slo.get("unit"):
        return str(slo["unit"])
    metric = str(slo.get("metric", ""))
    return "ms" if metric.endswith("_ms") else "records/s" if metric.endswith("_per_s") else "ratio" if metric.endswith("rate") else ""


def fmt_value(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "—" if v is None else str(v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"


def slo_section(r: dict[str, Any]) -> str:
    slos = r.get("slos")
    if not isinstance(slos, list) or not slos:
        return '<div class="card" id="slos"><div class="note">no SLOs declared</div></div>'
    rows = [[esc(s.get("name", "")), esc(s.get("metric", "")), esc(fmt_value(s.get("target"))),
             esc(fmt_value(s.get("measured"))), esc(slo_unit(s)),
             '<span class="pass">✓ pass</span>' if s.get("passed") else '<span class="fail">✕ fail</span>'] for s in slos]
    return '<div class="card" id="slos">' + table(["SLO", "metric", "target", "measured", "unit", "verdict"], rows, left=2) + "</div>"


def fault_section(r: dict[str, Any]) -> str:
    faults = r.get("faults") or []
    if not faults:
        return ""
    rows = []
    for f in faults:
        recovered = f.get("recovered_after_s")
        target = f.get("target") or (f"node {f['node']} ({f.get('node_chosen') or 'chosen by the run'})" if f.get("node") else "—")
        p99 = " → ".join("—" if f.get(k) is None else f"{f[k]:,.0f}" for k in ("baseline_p99_ms", "peak_p99_ms"))
        rows.append([esc(f.get("spec", "")), esc(f.get("kind", "")), esc(target),
                     esc(f"{f['injected_at_s']:.1f} s" if f.get("injected_at_s") is not None else "not injected"),
                     esc(f"{f.get('duration_s', 0):g} s"), fmt_int(round(f.get("baseline_lag", 0))), fmt_int(f.get("peak_lag")), esc(p99),
                     '<span class="fail">not within the run</span>' if recovered is None else esc(f"{recovered:.1f} s"),
                     fmt_ms(f.get("publish_delay_max_ms"))])
    duplicates = (r.get("counts") or {}).get("duplicates", 0)
    return ('<h2>Faults injected (--chaos) and recovery</h2><div class="card" id="faults">'
            + table(["fault", "kind", "target", "injected at", "duration", "baseline lag", "peak lag", "p99 before → peak ms",
                     "recovered after", "publish delay max ms"], rows, left=3)
            + f'<div class="note">lag: router + subscriber lag, records; p99: subscribers\' end-to-end p99 per second; '
              f"recovered: lag back to ≤ max(baseline × 1.5, baseline + 100) and p99 to ≤ max(baseline × 1.5, baseline + 50 ms) "
              f"after the fault ended (a kill: from the kill, so the restart or failover counts). "
              f"{duplicates:,} redeliveries were dropped as duplicates by trace id, not counted as deliveries.</div></div>")


def warmup_section(r: dict[str, Any]) -> str:
    """The warm-up's own figures: counted in every total, kept out of the aggregated latency and SLOs."""
    w = r.get("warmup")
    seconds = w.get("seconds") if isinstance(w, dict) else None
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return ""
    rows = []
    for label, key in (("end to end", "end_to_end_ms"), ("end to end, from intended send time", "end_to_end_from_intended_ms"),
                       ("publish latency", "publish_latency_ms"), ("publish delay", "publish_delay_ms")):
        q = w.get(key) or {}
        rows.append([esc(label), *(fmt_ms(q.get(k)) for k in ("50pct", "99pct", "999pct", "max"))])
    return (f'<h2>Warm-up: the first {seconds:g} s, reported apart</h2><div class="card" id="warmup">'
            + table(["warm-up latency, ms", "p50", "p99", "p99.9", "max"], rows)
            + f'<div class="note">{fmt_int(w.get("published"))} records published and {fmt_int(w.get("delivered"))} deliveries '
              "with an intended send time in the warm-up: routed and counted in every total and the conservation check, "
              "kept out of the aggregated and per-flow percentiles, the hops and the SLO verdicts above; "
              "the per-interval charts show every second, the warm-up shaded.</div></div>")


def workflow_section(r: dict[str, Any]) -> str:
    workflows = r.get("workflows") or {}
    if not workflows:
        return ""
    rows = []
    for name, w in workflows.items():
        q = w.get("time_ms") or {}
        rows.append([esc(name), fmt_int(w.get("completed")), fmt_int(w.get("incomplete")),
                     *(fmt_ms(q.get(k)) for k in ("50pct", "95pct", "99pct", "max"))])
    return ('<h2>Workflows (joint processes, per master key: start → last step)</h2><div class="card" id="workflows">'
            + table(["workflow", "completed", "incomplete", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows) + "</div>")


def onss_section(r: dict[str, Any]) -> str:
    items = r.get("one_number_one_source") or {}
    if not items:
        return ""
    rows = [[esc(k), fmt_int(v.get("verified")), fmt_int(v.get("conflicts")), fmt_int(v.get("unverified")),
             fmt_int(v.get("invalid_key", 0)), f"{v.get('verification_rate', 0) * 100:.1f} %", fmt_int(v.get("quality_events")),
             esc(", ".join(f"{d} {n:,}" for d, n in sorted((v.get("by_department") or {}).items())))]
            for k, v in sorted(items.items())]
    return ('<h2>One number, one source (一数一源): copies verified against the authoritative source</h2>'
            '<div class="card" id="one-source">' + table(
                ["item", "verified", "conflicts", "unverified", "invalid key", "verification rate", "quality events",
                 "by department"],
                rows, last_left=True) + "</div>")


def hops_section(r: dict[str, Any]) -> str:
    """Per hub path and per hop (X-Road style in/out stamps): where the time goes in a cascade."""
    paths, hops = r.get("paths") or {}, r.get("hops") or {}
    if not paths:
        return ""
    path_rows = [[esc(name), fmt_int(len(p.get("hubs", ()))), fmt_int(p.get("delivered")),
                  *(fmt_ms((p.get("end_to_end_ms") or {}).get(k)) for k in ("50pct", "99pct", "max"))]
                 for name, p in sorted(paths.items(), key=lambda kv: (len(kv[1].get("hubs", ())), kv[0]))]
    hop_rows = [[esc(name), fmt_int(h.get("count")), *(fmt_ms((h.get("latency_ms") or {}).get(k)) for k in ("50pct", "99pct", "max"))]
                for name, h in sorted(hops.items())]
    return ('<h2>Hub paths and hops (级联: each hub stamps a record in and out)</h2><div class="grid" style="align-items:start">'
            '<div class="card" id="paths">' + table(["path (hubs in order)", "hubs", "delivered", "p50 ms", "p99 ms", "max ms"], path_rows)
            + '</div><div class="card" id="hops">'
            + table(["segment (a → b: into b; b: inside b)", "records", "p50 ms", "p99 ms", "max ms"], hop_rows) + "</div></div>")


def flow_table(r: dict[str, Any], names: Names) -> str:
    by_entry = r.get("counts_by_entry") or {}
    rows = []
    for name, f in sorted((r.get("flows") or {}).items(), key=lambda kv: flow_label(kv[1], kv[0])):
        entry, consumer = f.get("entry", ""), f.get("consumer", "")
        provider = names.provider(entry)
        q = f.get("end_to_end_ms") or {}
        lat = [fmt_ms(q.get(k)) if f.get("delivered") else "—" for k in ("50pct", "99pct", "999pct", "max")]
        ec = by_entry.get(entry) or {}  # an entry's dead letters count once per subscription
        denied = ", ".join(f"{k} {v:,}" for k, v in sorted((f.get("denied_by_reason") or {}).items()))
        rows.append([esc(flow_label(f, name)), esc(names.entry(entry)),
                     esc(f"{names.dept(provider)} → {names.dept(consumer)}" if provider else names.dept(consumer)),
                     fmt_int(ec.get("produced")), fmt_int(f.get("delivered")), fmt_int(f.get("denied")), esc(denied),
                     fmt_int(ec.get("dead_lettered", 0) // max(1, ec.get("subscriptions", 1)) if ec else None),
                     fmt_int(round(f.get("records_per_s", 0))), *lat])
    return '<div class="card">' + table(
        ["flow (entry → consumer)", "entry", "departments", "produced", "delivered", "denied", "denied by reason",
         "dead", "rec/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"], rows, left=3, scroll=True) + "</div>"


def sample_item_rows(sample: dict[str, Any], names: Names) -> tuple[list[list[str]], Counter]:
    """One row per item of a sampled delivery: item, source value, delivered value, what happened.

    What happened is read off the two values and the sample's ``masks`` and ``items``:
    masked as its rule says (脱敏; the report applies the rule to the source value and
    compares), not in the subscription's items, replaced by the authoritative value or
    left out (一数一源), or as published. Also returns the tally of those outcomes."""
    source, delivered = sample.get("source"), sample.get("delivered") or {}
    masks, items, copies = sample.get("masks") or {}, set(sample.get("items") or ()), sample.get("copies") or {}
    item_names = {i.get("key"): i.get("name") for i in (names.entries.get(sample.get("entry")) or {}).get("items") or []}
    keys = list(source or {}) + [k for k in delivered if k not in (source or {})]
    rows, tally = [], Counter()
    for key in keys:
        has_src, has_out = source is not None and key in source, key in delivered
        src, out = (source or {}).get(key), delivered.get(key)
        if source is None:
            how, kind = "source record not read back", "unknown"
        elif key in masks and has_out:
            rule = masks[key]
            expected = apply_mask(MaskRule(rule), src) if rule in MaskRule._value2member_map_ else None
            if out == expected:
                how, kind = f'<span class="pass">脱敏 masked</span> ({esc(rule)})', "masked"
            elif key in copies and expected is not None and out != src and (
                    rule == MaskRule.address.value or apply_mask(MaskRule(rule), out) == out):
                # the copy differed: the authoritative value, masked (the rule leaves a masked value as it is)
                how, kind = (f'<span class="pass">脱敏 masked</span> ({esc(rule)}), of the authoritative value '
                             f"(一数一源: {esc(copies[key])}'s; the copy differed)"), "masked"
            else:
                how, kind = f'<span class="fail">✕ not masked as its rule ({esc(rule)}) says</span>', "mask_wrong"
        elif has_src and not has_out:
            if key not in items:
                how, kind = "not shared: not in the subscription's items", "not_shared"
            else:
                how, kind = "left out (一数一源: no authoritative value yet, or not granted)", "left_out"
        elif has_out and (not has_src or out != src):
            whose = f" ({esc(copies[key])})" if key in copies else ""
            how, kind = f"一数一源: the authoritative source's value{whose}; the copy differed", "replaced"
        else:
            how, kind = '<span class="muted">as published</span>', "same"
        tally[kind] += 1
        label = esc(key) + (f' <span class="muted">{esc(item_names[key])}</span>' if item_names.get(key) else "")
        shown = esc(_value(out) if has_out else "—")
        if kind in ("masked", "mask_wrong", "replaced"):  # what changed on the way stands out
            shown = f'<span class="chg">{shown}</span>'
        rows.append([label, esc(_value(src) if has_src else "—"), shown, how])
    return rows, tally


def _value(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def samples_section(samples: list[dict[str, Any]] | None, names: Names) -> str:
    """What each subscriber actually received: sampled deliveries beside their source records."""
    if not samples:
        return ""
    by_flow: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_flow.setdefault(s["flow"], []).append(s)
    cards, totals = [], Counter()
    for flow, kept in by_flow.items():
        kept.sort(key=lambda s: s.get("n", 0))
        blocks, tally = [], Counter()
        for s in kept[:SAMPLES_SHOWN]:
            rows, t = sample_item_rows(s, names)
            tally += t
            head = (f"delivery #{s.get('n')} · trace {s.get('trace')}" + (f" · key {s['key']}" if s.get("key") else "")
                    + (f" · from {s['source_at']['topic']}[{s['source_at']['partition']}]@{s['source_at']['offset']}"
                       if isinstance(s.get("source_at"), dict) else ""))
            blocks.append([f'<tr class="sec"><td colspan="4">{esc(head)}</td></tr>'] +
                          ["<tr>" + "".join(f'<td class="l">{c}</td>' for c in row) + "</tr>" for row in rows])
        for s in kept[SAMPLES_SHOWN:]:
            tally += sample_item_rows(s, names)[1]
        totals += tally
        cards.append((flow, kept, blocks, tally))
    # flows whose deliveries differ from the source first: those show masking and 一数一源
    cards.sort(key=lambda c: (-(c[3]["masked"] + c[3]["replaced"] + c[3]["mask_wrong"]), c[0]))
    html_cards = []
    for i, (flow, kept, blocks, tally) in enumerate(cards[:SAMPLE_FLOWS_SHOWN]):
        s = kept[0]
        provider = s.get("provider") or names.provider(s.get("entry", ""))
        who = f"{names.dept(provider)} → {names.dept(s.get('consumer', ''))}" if provider else names.dept(s.get("consumer", ""))
        said = [f"{tally[k]:,} {label}" for k, label in (("masked", "masked"), ("replaced", "from the authoritative source"),
                                                        ("not_shared", "not shared"), ("left_out", "left out"),
                                                        ("mask_wrong", "NOT masked as the rule says")) if tally[k]]
        summary = (f"<b>{esc(s.get('entry'))} → {esc(s.get('consumer'))}</b> · {esc(names.entry(s.get('entry', '')))}: "
                   f"{esc(who)} · {len(kept)} deliveries sampled" + (f" · {esc(', '.join(said))}" if said else ""))
        body = ("<table><thead><tr><th class=\"l\">item</th><th class=\"l\">source record (as published)</th>"
                "<th class=\"l\">as the subscriber received it</th><th class=\"l\">what happened</th></tr></thead><tbody>"
                + "".join(line for block in blocks for line in block) + "</tbody></table>")
        more = f'<div class="note">{len(kept) - SAMPLES_SHOWN} more in {SAMPLES_FILE}</div>' if len(kept) > SAMPLES_SHOWN else ""
        html_cards.append(f'<details class="sample" data-flow="{esc(flow)}"{" open" if i < SAMPLE_FLOWS_OPEN else ""}>'
                          f"<summary>{summary}</summary>{body}{more}</details>")
    bad = totals["mask_wrong"]
    verdict_line = (f'<span class="fail">✕ {bad:,} masked values do not match their rule</span>' if bad else
                    f'<span class="pass">✓</span> every masked value is its masking rule applied to the source value'
                    if totals["masked"] else "no masked items in these flows")
    left = len(cards) - SAMPLE_FLOWS_SHOWN
    return ('<h2>What each subscriber received (脱敏 and 一数一源): sampled deliveries beside their source records</h2>'
            '<div class="card" id="samples"><div class="note">'
            f"The first deliveries of each flow as its subscriber received them, next to the record the provider published "
            f"(same trace id). {len(samples):,} deliveries of {len(cards):,} flows: {totals['masked']:,} masked values, "
            f"{totals['replaced']:,} from the authoritative source, {totals['not_shared']:,} items not shared. {verdict_line}."
            + (f" {unread:,} deliveries without their source record (not read back within the time budget)."
               if (unread := sum(1 for x in samples if x.get("source") is None)) else "")
            + (f" {left:,} more flows are in {SAMPLES_FILE}." if left > 0 else "")
            + "</div>" + "".join(html_cards) + "</div>")


def title_of(r: dict[str, Any], names: Names) -> str:
    return str(r.get("workload", "result")) + (f" — {names.platform}" if names.platform else "")


def build_report_html(result: dict[str, Any], scenario: dict[str, Any] | None = None,
                      samples: list[dict[str, Any]] | None = None) -> str:
    """The whole page, from the raw result dict (and scenario.json's dict and the lines of
    samples.jsonl, if there are any)."""
    names = Names(scenario)
    r = result
    no_intervals = "No per-interval latency lists in this result (older format): see the distribution and per-flow latency."
    body = [
        '<header class="top"><div>',
        f"<h1>{esc(r.get('workload', 'result'))}<small>{esc(names.platform)}</small></h1>",
        run_meta(r), "</div></header>",
        '<div class="verdicts">', verdict(r), slo_verdict(r), "</div>", input_warnings(r), kpis(r),
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
        chart(fig_exceptions(r), "chart-exceptions", wide=True,
              empty="No dead letters and no one-number-one-source conflicts in this run."),
        "</div>",
        warmup_section(r), fault_section(r),
        "<h2>Service-level objectives</h2>", slo_section(r),
        workflow_section(r), onss_section(r), samples_section(samples, names), hops_section(r),
        "<h2>Flows</h2>", flow_table(r, names),
        ("<footer>exchange report · latencies in ms (publish delay converted from µs) · "
         "rates per sampleRateMillis interval · generated offline, plotly.js embedded</footer>"),
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
