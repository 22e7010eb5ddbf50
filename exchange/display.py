"""What a person sees in the terminal: live progress while a run goes, a summary after."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from schemas.results import Result

from .run import Progress


class LiveProgress:
    """A one-table live view, refreshed by the controller; silent when not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None

    def __enter__(self) -> LiveProgress:
        if self.console.is_terminal:
            self._live = Live(self._render(Progress()), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, progress: Progress) -> None:
        if self._live is not None:
            self._live.update(self._render(progress))

    @staticmethod
    def _render(p: Progress) -> Table:
        table = Table(title=f"exchange run — {p.phase}", show_header=False, box=None)
        remaining = max(0.0, p.duration - p.elapsed)
        table.add_row("elapsed / remaining", f"{p.elapsed:6.1f} s / {remaining:5.1f} s")
        table.add_row("publish rate", f"{p.publish_rate:,.0f} records/s")
        table.add_row("consume rate", f"{p.consume_rate:,.0f} records/s")
        table.add_row("produced", f"{p.produced:,}")
        table.add_row("delivered / denied / dead-lettered", f"{p.delivered:,} / {p.denied:,} / {p.dead_lettered:,}")
        if p.expected:
            table.add_row("still to account for", f"{p.expected - p.delivered - p.denied - p.dead_lettered:,}")
        if p.duplicates:
            table.add_row("duplicates dropped", f"{p.duplicates:,}")
        return table


def summary_table(result: Result) -> Table:
    table = Table(title=f"{result.workload}: per flow (entry → subscriber)")
    for col in ("flow", "produced", "delivered", "denied", "dead-lettered", "records/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"):
        table.add_column(col, justify="left" if col == "flow" else "right")
    for name, flow in sorted(result.flows.items()):
        entry = result.counts_by_entry.get(flow.entry)
        produced = entry.produced if entry else 0
        dead = (entry.dead_lettered // max(1, entry.subscriptions)) if entry else 0
        lat = flow.end_to_end_ms
        denied = f"{flow.denied:,}"
        if flow.denied_by_reason:
            denied += " (" + ", ".join(f"{r}" for r in sorted(flow.denied_by_reason)) + ")"
        table.add_row(
            f"{flow.entry} → {flow.consumer}",
            f"{produced:,}",
            f"{flow.delivered:,}",
            denied,
            f"{dead:,}",
            f"{flow.records_per_s:,.0f}",
            _ms(lat.p50, flow.delivered),
            _ms(lat.p99, flow.delivered),
            _ms(lat.p999, flow.delivered),
            _ms(lat.max, flow.delivered),
        )
    c = result.counts
    table.caption = (
        f"all flows: end-to-end p50 {result.aggregatedEndToEndLatency50pct:.1f} ms, "
        f"p99 {result.aggregatedEndToEndLatency99pct:.1f} ms, max {result.aggregatedEndToEndLatencyMax:.1f} ms; "
        f"{c.produced:,} records produced, {c.duplicates:,} duplicates dropped"
    )
    return table


def _ms(value: float, n: int) -> str:
    return f"{value:.1f}" if n else "—"
