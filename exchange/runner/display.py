"""What a person sees in the terminal: live progress while a run goes, a summary after."""

from __future__ import annotations

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from exchange.runner.controller import Progress
from schemas.results import FlowResult, Result


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
MAX_TIED_EXTRA = 10  # flows tied at the cut are shown together, up to this many past MAX_FLOWS_SHOWN

# Columns of the summary, (header, key); left out right to left of DROP_ORDER, one at a time,
# until the table fits the terminal (the flow names are never cut: see SummaryTable).
COLUMNS = (
    ("produced", "produced"),
    ("delivered", "delivered"),
    ("denied", "denied"),
    ("dead", "dead"),
    ("rec/s", "rate"),
    ("p50", "p50"),
    ("p99", "p99"),
    ("p99.9", "p999"),
    ("max", "max"),
)
DROP_ORDER = ("p999", "max", "dead", "p50", "rate", "produced")


def busiest_flows(flows: dict[str, FlowResult], n: int = MAX_FLOWS_SHOWN) -> tuple[list[tuple[str, FlowResult]], str]:
    """The ``n`` busiest flows, and a note on any left out; busiest: most records delivered.

    Ranked by records delivered, then denied, then name (so equal flows come out in the
    same order every time). Flows tied with the last one kept are kept too, up to
    ``n + MAX_TIED_EXTRA`` flows; past that the cut stays at ``n`` and the note says how
    many tied flows were left out. Returns every flow, ranked, when there are at most ``n``.
    """
    ranked = sorted(flows.items(), key=lambda kv: (-kv[1].delivered, -kv[1].denied, kv[1].entry, kv[1].consumer))
    if len(ranked) <= n:
        return ranked, ""

    def rank(kv: tuple[str, FlowResult]) -> tuple[int, int]:
        return kv[1].delivered, kv[1].denied

    end = n
    while end < len(ranked) and rank(ranked[end]) == rank(ranked[n - 1]):
        end += 1
    if end - n <= MAX_TIED_EXTRA:
        return ranked[:end], ""
    left = end - n
    d, x = rank(ranked[n - 1])
    return ranked[:n], f"{left:,} more tied at {d:,} delivered, {x:,} denied"


class SummaryTable:
    """The per-flow summary printed after a run, laid out for the console it is printed on.

    Flows are grouped by catalogue entry: a row per entry (records produced, dead-lettered)
    and under it a row per subscriber (``→ consumer``), so a name is at most an entry id
    or a department id and the entry's own figures are not repeated per flow. When the
    console is too narrow for every column, columns are left out (in :data:`DROP_ORDER`)
    rather than squeezing the names; the caption names what was left out. Flow names are
    never wrapped or cut.
    """

    def __init__(self, result: Result) -> None:
        self.result = result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown = [key for _, key in COLUMNS if key != "dead" or self._any_dead()]
        table = self.table(shown)
        unbounded = options.update(max_width=10_000)
        for key in DROP_ORDER:
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
            if key in shown:
                shown.remove(key)
                table = self.table(shown)
        # the caption under the table, wrapped at the console's width like the lines printed
        # after it (a table's own caption wraps at the table's), and no trailing blanks
        caption, table.caption = table.caption, None
        for part in (table, Text.from_markup(str(caption))) if caption else (table,):
            for line in console.render_lines(part, options, pad=False):
                yield from _rstripped(line)
                yield Segment.line()

    def _any_dead(self) -> bool:
        return any(e.dead_lettered for e in self.result.counts_by_entry.values())

    def table(self, columns: list[str]) -> Table:
        """The summary with these columns (keys of :data:`COLUMNS`), at its natural width."""
        result = self.result
        flows, note = busiest_flows(result.flows)
        title = f"{result.workload}: per flow (entry → subscriber); latency end to end, ms"
        if len(flows) < len(result.flows):
            title += f" — the {len(flows)} busiest (most delivered) of {len(result.flows):,} flows"
            title += f"; {note}" if note else ""
            title += "; all are in result.json"
        by_entry: dict[str, list[FlowResult]] = {}
        if len(flows) == len(result.flows):  # everything: in name order
            flows = sorted(flows, key=lambda kv: (kv[1].entry, kv[1].consumer))
        for _, flow in flows:  # else the entries in order of their busiest flow
            by_entry.setdefault(flow.entry, []).append(flow)
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        widest = max([len(e) for e in by_entry] + [4 + len(f.consumer) for _, f in flows], default=0)
        table.add_column("entry → subscriber", no_wrap=True, min_width=widest)
        for header, key in COLUMNS:
            if key in columns:
                table.add_column(header, justify="right", no_wrap=True)
        for entry_id, entry_flows in by_entry.items():
            entry = result.counts_by_entry.get(entry_id)
            cells = {
                "produced": f"{entry.produced:,}" if entry else "—",
                "dead": f"{entry.dead_lettered // max(1, entry.subscriptions):,}" if entry else "—",
            }
            table.add_row(Text(entry_id, style="bold"), *(cells.get(key, "") for _, key in COLUMNS if key in columns))
            for flow in entry_flows:
                lat = flow.end_to_end_ms
                cells = {
                    "delivered": f"{flow.delivered:,}",
                    "denied": f"{flow.denied:,}",
                    "rate": f"{flow.records_per_s:,.0f}",
                    "p50": _ms(lat.p50, flow.delivered),
                    "p99": _ms(lat.p99, flow.delivered),
                    "p999": _ms(lat.p999, flow.delivered),
                    "max": _ms(lat.max, flow.delivered),
                }
                table.add_row(Text(f"  → {flow.consumer}"), *(cells.get(key, "") for _, key in COLUMNS if key in columns))
        c = result.counts
        reasons: dict[str, int] = {}
        for flow in result.flows.values():
            for reason, n in flow.denied_by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + n
        denied = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items())) or "none"
        dead = ", ".join(f"{r} {n:,}" for r, n in sorted(result.run.dead_letters_by_reason.items())) or "none"
        after = f" (after the {result.warmup.seconds:g} s warm-up)" if result.warmup else ""
        caption = (
            f"all flows{after}: p50 {result.aggregatedEndToEndLatency50pct:.1f} ms, p99 {result.aggregatedEndToEndLatency99pct:.1f} ms, "
            f"max {result.aggregatedEndToEndLatencyMax:.1f} ms · {c.produced:,} records produced, {c.duplicates:,} duplicates dropped "
            f"({result.run.guarantee})\n"
            f"denied by reason: {denied} · dead letters by reason: {dead}"
        )
        if result.warmup:
            caption += "\n" + warmup_line(result)
        left_out = [header for header, key in COLUMNS if key not in columns and (key != "dead" or self._any_dead())]
        if left_out:
            caption += f"\nleft out to fit the terminal: {', '.join(left_out)} (a wider terminal, or result.json, has them)"
        table.caption = caption + input_warnings(result)
        table.caption_justify = "left"
        return table


def _rstripped(line: list[Segment]) -> list[Segment]:
    """A rendered line without the blanks at its end (a table pads every row to its width)."""
    line = list(line)
    while line and not line[-1].control and not line[-1].text.rstrip():
        line.pop()
    if line and not line[-1].control:
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(), last.style)
    return line


def summary_table(result: Result) -> SummaryTable:
    """The per-flow summary of a run, as a rich renderable that fits the console's width."""
    return SummaryTable(result)


def warmup_line(result: Result) -> str:
    """One caption line for the warm-up: its deliveries and latency, kept out of the figures above it."""
    w = result.warmup
    if w.delivered == 0:
        return f"warm-up, first {w.seconds:g} s (counted, kept out of the latency figures): nothing delivered"
    e = w.end_to_end_ms
    return (
        f"warm-up, first {w.seconds:g} s (counted, kept out of the latency figures): {w.delivered:,} delivered, "
        f"p50 {e.p50:.1f} ms, p99 {e.p99:.1f} ms, max {e.max:.1f} ms"
    )


def input_warnings(result: Result) -> str:
    """Caption lines for input the figures leave out (empty when there is none)."""
    out = ""
    if result.clock_skew:
        per = escape(", ".join(f"{src} {v.records:,} ({v.min_ms:,.0f} … {v.max_ms:,.0f} ms)" for src, v in sorted(result.clock_skew.items())))
        out += (
            "\n[yellow]clock skew:[/yellow] deliveries with a latency that cannot be true (negative or over an hour), "
            f"kept out of the latency figures — by source: {per}"
        )
    if result.counts.foreign_dead_lettered:
        why = escape(", ".join(f"{r} {n:,}" for r, n in result.counts.foreign_dead_letters_by_reason.items()))
        out += (
            f"\n[yellow]records from other clients:[/yellow] {result.counts.foreign_dead_lettered:,} dead-lettered records "
            f"carry no run id or another run's ({why}); not this run's outcomes, kept in the dead-letter topic"
        )
    if result.counts.undecodable:
        out += (
            f"\n[yellow]undecodable batches:[/yellow] {result.counts.undecodable:,} ingress records the router could not "
            "decode were dead-lettered (unsupported_codec / corrupt_batch); their run cannot be read"
        )
    return out


def _ms(value: float, n: int) -> str:
    return f"{value:.1f}" if n else "—"


def _p99_change(before: float | None, peak: float | None) -> str:
    """``40 → 9,500 ms``; a dash for a side without deliveries."""
    if before is None and peak is None:
        return "—"
    return " → ".join("—" if v is None else f"{v:,.0f}" for v in (before, peak)) + " ms"


def fault_table(result: Result) -> Table:
    """The faults injected with --chaos, and how long the exchange took to come back."""
    table = Table(title="faults injected (--chaos); lag = router + subscriber lag, records", title_justify="left")
    for col in ("fault", "injected at", "baseline lag", "peak lag", "p99 before → peak", "recovered after", "publish delay max"):
        table.add_column(col, justify="left" if col == "fault" else "right", no_wrap=True)
    for f in result.faults:
        table.add_row(
            f.spec + (f" (node {f.node})" if f.node is not None and f.target is None else ""),
            "—" if f.injected_at_s is None else f"{f.injected_at_s:.1f} s",
            f"{f.baseline_lag:,.0f}",
            f"{f.peak_lag:,}",
            _p99_change(f.baseline_p99_ms, f.peak_p99_ms),
            "not within the run" if f.recovered_after_s is None else f"{f.recovered_after_s:.1f} s",
            "—" if f.publish_delay_max_ms is None else f"{f.publish_delay_max_ms:,.0f} ms",
        )
    table.caption = (
        f"{result.counts.duplicates:,} duplicates dropped by trace id (redeliveries, not counted as deliveries); "
        "recovered: lag back to ≤ max(baseline × 1.5, baseline + 100) and p99 to ≤ max(baseline × 1.5, baseline + 50 ms) "
        "after the fault ended"
    )
    table.caption_justify = "left"
    return table
