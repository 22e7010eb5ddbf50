"""The terminal summary after a run: readable at 80 columns, and the busiest flows are the ones shown."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from exchange.runner.display import MAX_FLOWS_SHOWN, MAX_TIED_EXTRA, busiest_flows, summary_table
from schemas.results import EntryCounts, FlowResult, Result

DEMO = Path(__file__).parent / "data" / "demo" / "result.json"


def demo() -> Result:
    return Result.model_validate_json(DEMO.read_text())


def render(result: Result, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(summary_table(result))
    return console.export_text().splitlines()


def flow(template: FlowResult, entry: str, consumer: str, delivered: int, denied: int) -> FlowResult:
    return template.model_copy(
        update={
            "entry": entry,
            "consumer": consumer,
            "delivered": delivered,
            "denied": denied,
            "denied_by_reason": {"out_of_jurisdiction": denied} if denied else {},
        }
    )


def dongguan_like() -> Result:
    """Dongguan's shape: gps-fix read whole by urban and emergency, and by 33 towns (own rows only),
    plus 338 quieter flows; by delivered + denied every gps-fix flow ties."""
    r = demo()
    t = r.flows["urban.gps-fix"]
    flows = {"urban.gps-fix": flow(t, "gps-fix", "urban", 24_666, 0), "emergency.gps-fix": flow(t, "gps-fix", "emergency", 24_666, 0)}
    for n in range(33):
        flows[f"town-{n:02}.gps-fix"] = flow(t, "gps-fix", f"town-{n:02}", 747, 24_666 - 747)
    for n in range(338):
        flows[f"dept-{n % 84:02}.entry-{n:03}"] = flow(t, f"entry-{n:03}", f"dept-{n % 84:02}", 800 + n, 0)
    counts = {
        e: EntryCounts(produced=24_666 if e == "gps-fix" else 500, subscriptions=1, expected=0, delivered=0, denied=0, dead_lettered=0, unaccounted=0)
        for e in {f.entry for f in flows.values()}
    }
    return r.model_copy(update={"flows": flows, "counts_by_entry": counts})


def test_80_columns_show_every_flow_name_and_key_figure_whole():
    lines = render(demo(), 80)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in text
    for name in (
        "enterprise-registration",
        "gps-fix",
        "population",
        "social-insurance",
        "→ hrss",
        "→ psb",
        "→ tax",
        "→ changan",
        "→ emergency",
        "→ nancheng",
        "→ urban",
    ):
        assert name in text
    row = next(line for line in lines if "→ emergency" in line)
    for figure in ("12,350", "2,470", "66.8", "170.5"):  # delivered, rec/s, p50, p99
        assert figure in row.split()
    assert "12,350" in next(line for line in lines if line.strip().startswith("gps-fix")).split()  # produced
    assert "11,999" in next(line for line in lines if "→ changan" in line).split()  # denied
    assert "left out to fit the terminal: p99.9, max" in text.replace("\n", " ")


def test_a_wide_terminal_gets_every_column_and_no_wrapped_names():
    lines = render(demo(), 120)
    header = next(line for line in lines if line.split()[:1] == ["entry"]).split()
    assert header[3:] == ["produced", "delivered", "denied", "rec/s", "p50", "p99", "p99.9", "max"]
    assert "left out" not in "\n".join(lines)
    assert sum(line.lstrip().startswith("→ ") for line in lines) == len(demo().flows)  # one line per flow


def test_100_columns_do_not_wrap_names():
    lines = render(demo(), 100)
    assert all(len(line) <= 100 for line in lines)
    assert any(line.split()[:1] == ["enterprise-registration"] for line in lines)


def test_the_busiest_flows_are_those_that_delivered_most():
    result = dongguan_like()
    shown, note = busiest_flows(result.flows)
    names = [name for name, _ in shown]
    assert names[:2] == ["emergency.gps-fix", "urban.gps-fix"]  # tied first, in name order
    assert len(shown) == MAX_FLOWS_SHOWN and note == ""
    assert not any(name.startswith("town-") for name in names)  # 747 delivered each: not among the busiest
    text = "\n".join(render(result, 80))
    assert "→ urban" in text and "→ emergency" in text
    assert f"the {MAX_FLOWS_SHOWN} busiest (most delivered) of 373 flows" in text.replace("\n", " ")


def test_flows_tied_at_the_cut_are_kept_together_or_counted():
    t = demo().flows["urban.gps-fix"]
    few = {f"d{n:02}.e": flow(t, "e", f"d{n:02}", 100, 0) for n in range(MAX_FLOWS_SHOWN + MAX_TIED_EXTRA - 1)}
    few["top.e"] = flow(t, "e", "top", 200, 0)
    shown, note = busiest_flows(few)
    assert len(shown) == len(few) and note == ""  # 34 tied for second: all shown
    many = {f"d{n:02}.e": flow(t, "e", f"d{n:02}", 100, 5) for n in range(MAX_FLOWS_SHOWN + MAX_TIED_EXTRA + 5)}
    shown, note = busiest_flows(many)
    assert [n for n, _ in shown] == sorted(many)[:MAX_FLOWS_SHOWN]  # same order every time
    assert note == f"{MAX_TIED_EXTRA + 5:,} more tied at 100 delivered, 5 denied"
    assert busiest_flows(dict(list(few.items())[-3:]))[0][0][0] == "top.e"  # few flows: all, busiest first


def test_no_line_ends_in_blanks_and_the_caption_wraps_at_the_console_not_the_table():
    """A newcomer's finding: rows were padded with blanks to the table's width, and the lines
    under it wrapped at the table's width (~90 columns) while the lines after it did not."""
    for width in (80, 140):
        lines = render(demo(), width)
        assert lines and all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    table_width = max(len(line) for line in render(demo(), 140) if "─" in line)
    caption = [line for line in render(demo(), 140) if line.startswith("all flows")]
    assert caption and len(caption[0]) > table_width  # one line, as wide as the console allows
