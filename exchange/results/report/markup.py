"""HTML building blocks: the style sheet, escaping, chart cards, tables, the page frame (plotly.js inline)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from exchange.results.report.charts import FONT

CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "pan2d"],
}


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


def table(headers: list[str], rows: Iterable[list[Any]], left: int = 1, scroll: bool = False, last_left: bool = False) -> str:
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
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        f"</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
