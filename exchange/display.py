"""What a person sees in the terminal: live progress while a run goes, a summary after."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.markup import escape
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
        table.add_row("lag: router / subscribers", f"{p.router_lag:,} / {p.consumer_lag:,} records")
        table.add_row("end-to-end p99, last second", f"{p.p99_ms:,.1f} ms")
        if p.conflicts:
            table.add_row("一数一源 conflicts", f"{p.conflicts:,}")
        if p.expected:
            table.add_row("still to account for", f"{p.expected - p.delivered - p.denied - p.dead_lettered:,}")
        if p.duplicates:
            table.add_row("duplicates dropped", f"{p.duplicates:,}")
        for said in p.faults[-4:]:
            table.add_row("chaos", said)
        return table


MAX_FLOWS_SHOWN = 25


def summary_table(result: Result) -> Table:
    table = Table(title=f"{result.workload}: per flow (entry → subscriber); latency end to end, ms", title_justify="left")
    table.add_column("flow", overflow="fold")
    for col in ("produced", "delivered", "denied", "dead", "rec/s", "p50", "p99", "p99.9", "max"):
        table.add_column(col, justify="right", no_wrap=True)
    flows = sorted(result.flows.items(), key=lambda kv: (kv[1].entry, kv[1].consumer))
    if len(flows) > MAX_FLOWS_SHOWN:  # the busiest; result.json has them all
        flows = sorted(flows, key=lambda kv: -(kv[1].delivered + kv[1].denied))[:MAX_FLOWS_SHOWN]
        table.title += f" — the {MAX_FLOWS_SHOWN} busiest of {len(result.flows)} flows"
    for name, flow in flows:
        entry = result.counts_by_entry.get(flow.entry)
        produced = entry.produced if entry else 0
        dead = (entry.dead_lettered // max(1, entry.subscriptions)) if entry else 0
        lat = flow.end_to_end_ms
        table.add_row(
            f"{flow.entry} → {flow.consumer}",
            f"{produced:,}",
            f"{flow.delivered:,}",
            f"{flow.denied:,}",
            f"{dead:,}",
            f"{flow.records_per_s:,.0f}",
            *(_ms(v, flow.delivered) for v in (lat.p50, lat.p99, lat.p999, lat.max)),
        )
    c = result.counts
    reasons: dict[str, int] = {}
    for flow in result.flows.values():
        for reason, n in flow.denied_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
    denied = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items())) or "none"
    dead = ", ".join(f"{r} {n:,}" for r, n in sorted(result.run.dead_letters_by_reason.items())) or "none"
    table.caption = (
        f"all flows: p50 {result.aggregatedEndToEndLatency50pct:.1f} ms, p99 {result.aggregatedEndToEndLatency99pct:.1f} ms, "
        f"max {result.aggregatedEndToEndLatencyMax:.1f} ms · {c.produced:,} records produced, {c.duplicates:,} duplicates dropped\n"
        f"denied by reason: {denied} · dead letters by reason: {dead}"
    )
    table.caption += input_warnings(result)
    table.caption_justify = "left"
    return table


def input_warnings(result: Result) -> str:
    """Caption lines for input the figures leave out (empty when there is none)."""
    out = ""
    if result.clock_skew:
        per = escape(", ".join(f"{src} {v.records:,} ({v.min_ms:,.0f} … {v.max_ms:,.0f} ms)" for src, v in sorted(result.clock_skew.items())))
        out += ("\n[yellow]clock skew:[/yellow] deliveries with a latency that cannot be true (negative or over an hour), "
                f"kept out of the latency figures — by source: {per}")
    if result.counts.undecodable:
        out += (f"\n[yellow]undecodable batches:[/yellow] {result.counts.undecodable:,} ingress records the router could not "
                "decode were dead-lettered (unsupported_codec / corrupt_batch); their run cannot be read")
    return out


def _ms(value: float, n: int) -> str:
    return f"{value:.1f}" if n else "—"


def fault_table(result: Result) -> Table:
    """The faults injected with --chaos, and how long the exchange took to come back."""
    table = Table(title="faults injected (--chaos); lag = router + subscriber lag, records", title_justify="left")
    for col in ("fault", "injected at", "baseline lag", "peak lag", "recovered after", "publish delay max"):
        table.add_column(col, justify="left" if col == "fault" else "right", no_wrap=True)
    for f in result.faults:
        table.add_row(
            f.spec,
            "—" if f.injected_at_s is None else f"{f.injected_at_s:.1f} s",
            f"{f.baseline_lag:,.0f}",
            f"{f.peak_lag:,}",
            "not within the run" if f.recovered_after_s is None else f"{f.recovered_after_s:.1f} s",
            "—" if f.publish_delay_max_ms is None else f"{f.publish_delay_max_ms:,.0f} ms",
        )
    table.caption = (f"{result.counts.duplicates:,} duplicates dropped by trace id (redeliveries, not counted as deliveries); "
                     "recovered: lag back to ≤ max(baseline × 1.5, baseline + 100) after the fault ended")
    table.caption_justify = "left"
    return table
