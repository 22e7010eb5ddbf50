"""What the page reads from a result: number formats, flows, latency curves, names."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

PCT_KEYS = [("50pct", 50.0), ("75pct", 75.0), ("95pct", 95.0), ("99pct", 99.0), ("999pct", 99.9), ("9999pct", 99.99), ("99999pct", 99.999)]
MAX_X = 1e6  # where "max" sits on the percentile axis (one decade past p99.999)
MAX_LINES = 12  # per-flow lines drawn in one chart; the rest are in the table


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
    return sorted(((n, f) for n, f in (result.get("flows") or {}).items() if f.get("delivered")), key=lambda kv: flow_label(kv[1], kv[0]))


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
