"""`exchange report` and `exchange compare`: self-contained pages, rendered as a user sees them.

Fixtures in tests/data/ are real runs (`exchange run … --duration 5`): demo, demo with two
router workers, and hubei-business-startup (workflows, one-number-one-source conflicts).
The browser tests need Debian's chromium (`apt-get install chromium`) and skip without it.
Set DX_REPORT_SCREENSHOT=docs/report.png to keep the demo report's screenshot.
"""

from __future__ import annotations

import copy
import html
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from rich.console import Console

from exchange.results.compare import Row, build_compare_html, comparison, run_compare
from exchange.results.report import Names, ReportError, build_report_html, department_matrix, load_result, load_scenario_beside, write_report

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo" / "result.json"
DEMO2 = DATA / "demo-2workers" / "result.json"
HUBEI = DATA / "hubei" / "result.json"
CHROMIUM = Path("/usr/bin/chromium")
REPORT_CHARTS = ["chart-rates", "chart-latency-time", "chart-percentiles", "chart-flow-latency", "chart-matrix", "chart-outcomes"]
COMPARE_CHARTS = ["chart-rates", "chart-latency-time", "chart-percentiles", "chart-flow-latency"]


def report_of(path: Path) -> str:
    return build_report_html(load_result(path), load_scenario_beside(path))


def external_refs(page: str) -> list[str]:
    """src/href of <script>, <link>, <img> and <iframe> tags that point at the network."""
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, flags=re.IGNORECASE)
    return [t for t in tags if re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", t, flags=re.IGNORECASE)]


def chart_ids(page: str) -> set[str]:
    return set(re.findall(r'<div id="(chart-[a-z-]+)" class="plotly-graph-div"', page))


def assert_self_contained(page: str) -> None:
    assert external_refs(page) == []
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", page, flags=re.IGNORECASE), "every script must be inline"
    assert not re.search(r"<link\b[^>]*\bhref\s*=", page, flags=re.IGNORECASE), "every stylesheet must be inline"
    assert '<meta charset="utf-8">' in page
    assert '"Noto Sans CJK SC", "Microsoft YaHei"' in page
    assert page.count("Plotly.newPlot") >= 1
    # plotly.js embedded exactly once
    assert page.count('<script type="text/javascript">/**\n* plotly.js') == 1


# ---------------------------------------------------------------- report (no browser)


def test_report_is_self_contained_and_complete():
    result = load_result(DEMO)
    page = report_of(DEMO)
    assert_self_contained(page)
    assert f"<h1>{result['workload']}" in page
    assert html.escape(result["conservation"]["message"]) in page
    assert "Conservation check passed" in page
    assert chart_ids(page) == set(REPORT_CHARTS)  # one container per chart; no dead letters: no exceptions chart
    assert "No dead letters and no one-number-one-source conflicts" in page
    assert "东莞市政务数据共享交换平台" in page and "交通局" in page  # names from scenario.json
    assert result["driver"] in page and result["run"]["run_id"] in page


def test_report_shows_workflows_conflicts_and_dead_letters():
    result = load_result(HUBEI)
    result["run"]["dead_letters_by_reason"] = {"bad_json": 7}
    page = build_report_html(result, load_scenario_beside(HUBEI))
    assert chart_ids(page) == set(REPORT_CHARTS) | {"chart-exceptions"}
    assert 'id="workflows"' in page and "企业开办" in page
    assert 'id="one-source"' in page and "enterprise.name" in page
    assert "dead letter: bad_json" in page and "conflict: enterprise.name" in page


def test_slo_table_and_verdicts():
    result = load_result(DEMO)
    result["slos"] = [
        {"name": "realtime p99", "metric": "e2e_p99_ms", "target": "≤ 200", "measured": 250.5, "passed": False},
        {"name": "accounted", "target": "≤ 0", "measured": 0, "unit": "records", "passed": True},
    ]
    page = build_report_html(result, None)
    slo_table = page[page.index('id="slos"') :]
    assert "✕ fail" in slo_table and "✓ pass" in slo_table and "250.5" in slo_table and "records" in slo_table
    assert "1 of 2 SLOs missed" in page
    del result["slos"]
    assert "no SLOs declared" in build_report_html(result, None)


def test_older_result_without_interval_lists_still_renders():
    """What exists is charted; what does not is said, not drawn empty."""
    result = load_result(DEMO)
    old = {
        k: v
        for k, v in result.items()
        if not (
            k.startswith(("endToEndLatency", "publishLatency", "publishDelayLatency"))
            or k.endswith("Quantiles")
            or k in ("slos", "backlog", "publishErrorRate")
        )
    }
    for flow in old["flows"].values():
        flow.pop("interval_p50_ms", None), flow.pop("interval_p99_ms", None)
    page = build_report_html(old, None)
    assert chart_ids(page) == set(REPORT_CHARTS) - {"chart-latency-time"}
    assert "No per-interval latency lists in this result" in page
    assert "no SLOs declared" in page
    assert "rows by entry" in page  # no scenario.json: matrix rows are entries


def test_optional_interval_fields_are_charted():
    result = load_result(DEMO)
    for key in ("endToEndLatency50pct", "endToEndLatency99pct", "publishLatency99pct", "publishDelayLatency99pct"):
        result[key] = [10.0, 20.0, 30.0]
    result["publishDelayLatency99pct"] = [5000.0, 6000.0, 7000.0]  # µs, as OMB
    name = next(iter(result["flows"]))
    result["flows"][name]["interval_p99_ms"] = [11.0, None, 13.0]
    result["counts"]["masked"] = 1234
    result["flows"][name]["masked"] = 1234
    page = build_report_html(result, None)
    assert "chart-latency-time" in chart_ids(page)
    assert "publish delay p99" in page
    assert "of which masked" in page and "1,234" in page


def test_fine_quantile_map_is_used_for_the_percentile_curve():
    from exchange.results.report import aggregated_curve

    result = load_result(DEMO)
    result["aggregatedEndToEndLatencyQuantiles"] = {"50.0": 5.0, "90.0": 9.0, "99.0": 20.0, "100.0": 40.0}
    assert aggregated_curve(result) == [(50.0, 5.0), (90.0, 9.0), (99.0, 20.0), (100.0, 40.0)]
    del result["aggregatedEndToEndLatencyQuantiles"]
    points = aggregated_curve(result)
    assert points[0] == (50.0, result["aggregatedEndToEndLatency50pct"])
    assert points[-1] == (100.0, result["aggregatedEndToEndLatencyMax"])


def test_matrix_rows_are_providing_departments():
    result = load_result(DEMO)
    rows, cols, cells = department_matrix(result, Names(load_scenario_beside(DEMO)))
    assert "交通局" in rows and "城管局" in cols
    assert cells[("交通局", "城管局")]["delivered"] == result["flows"]["urban.gps-fix"]["delivered"]
    rows, _, _ = department_matrix(result, Names(None))
    assert "gps-fix" in rows


def test_load_result_tolerates_new_fields_and_rejects_non_results(tmp_path):
    import orjson

    result = load_result(DEMO)
    result["someFutureField"] = [1, 2, 3]
    next(iter(result["flows"].values()))["someFutureFlowField"] = 1
    (tmp_path / "result.json").write_bytes(orjson.dumps(result))
    assert load_result(tmp_path / "result.json")["someFutureField"] == [1, 2, 3]

    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ReportError, match="workload"):
        load_result(tmp_path / "bad.json")
    broken = copy.deepcopy(result)
    broken["counts"]["produced"] = "many"
    (tmp_path / "broken.json").write_bytes(orjson.dumps(broken))
    with pytest.raises(ReportError, match=r"counts\.produced"):
        load_result(tmp_path / "broken.json")
    with pytest.raises(ReportError):
        load_result(tmp_path / "missing.json")


def test_write_report_defaults_to_beside_the_result(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DEMO.parent, run)
    out = write_report(run / "result.json")
    assert out == run / "report.html"
    assert "交通局" in out.read_text(encoding="utf-8")
    assert write_report(run / "result.json", tmp_path / "x" / "r.html").is_file()


# ---------------------------------------------------------------- compare (no browser)


def test_compare_table_and_page(tmp_path):
    group, out = run_compare(DEMO, HUBEI, tmp_path / "compare.html")
    console = Console(record=True, width=160)
    console.print(group)
    text = console.export_text()
    assert "A · demo" in text and "B · hubei-business-startup" in text
    assert "gps-fix → urban p99" in text and "invoice-issue → operator p99" in text  # flows of either run
    assert "end to end p99" in text and "publish rate" in text
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert chart_ids(page) == set(COMPARE_CHARTS)
    assert "demo" in page and "hubei-business-startup" in page


def test_compare_says_when_the_runs_lasted_differently():
    """A newcomer's finding: a 30 s and a 10 s run side by side, their totals compared as if alike."""
    from exchange.results.compare import durations_differ

    a, b = {"run": {"duration_s": 30.0}}, {"run": {"duration_s": 10.0}}
    assert durations_differ(a, b) == "A ran 30 s and B 10 s: rates and latencies compare, totals (records, outcomes) do not"
    assert durations_differ(a, {"run": {"duration_s": 30.2}}) is None and durations_differ(a, {}) is None


def test_compare_rows_judge_latency_and_slos():
    a, b = load_result(DEMO), load_result(DEMO2)
    sections = {s.title: s for s in comparison(a, b)}
    workers = next(r for r in sections["run"].rows if r.label == "router workers")
    assert (workers.a, workers.b) == (1, 2)
    assert Row("p99", 100.0, 150.0, better="lower", kind="ms").delta() == ("+50.0 %", "worse")
    assert Row("p99", 100.0, 50.0, better="lower", kind="ms").delta() == ("-50.0 %", "better")
    assert Row("p99", 100.0, 103.0, better="lower", kind="ms").delta() == ("≈", "")  # within 5 %: noise, not judged
    assert Row("p99", None, 3.0, better="lower", kind="ms").delta() == ("", "")
    page = build_compare_html(a, b)
    assert "A · demo" in page and "B · demo" in page
    assert [r.label for r in sections["SLOs"].rows] == [s["name"] for s in a["slos"]]
    assert sections["SLOs"].rows[0].a.startswith("✓ pass")
    a.pop("slos"), b.pop("slos")
    assert comparison(a, b)[-1].rows[0].a == "no SLOs declared"


# ---------------------------------------------------------------- in a real browser


def render(page: Path, tmp_path: Path, height: int = 3000) -> tuple[str, Path]:
    """Open the page in headless Chromium; return the DOM after scripts ran and a screenshot."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) : cannot render the page")
    tmp_path.mkdir(parents=True, exist_ok=True)
    png = tmp_path / f"{page.stem}.png"
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--screenshot={png}",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        dom, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        dom, err = b"", b"timed out"
    finally:
        try:  # chromium and any helper it left behind: its own process group, started above
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert png.is_file(), err.decode(errors="replace")[-2000:]
    return dom.decode("utf-8", errors="replace"), png


def png_stats(path: Path) -> tuple[int, int, float, int]:
    """Width, height, share of non-zero bytes in the filtered scanlines, distinct byte values.

    A blank page's scanlines filter to almost all zeros (measured: 0.02 %, 4 values);
    a page of charts gives several percent and all 256 values."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, size = 8, [], (0, 0)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    return size[0], size[1], 1 - raw.count(0) / len(raw), len(set(raw))


def assert_rendered(dom: str, png: Path, charts: list[str], height: int) -> None:
    rendered = set(re.findall(r'<div id="(chart-[a-z-]+)" class="plotly-graph-div[^"]*js-plotly-plot', dom))
    assert rendered == set(charts), f"charts plotly did not draw: {set(charts) - rendered}"
    assert dom.count('class="main-svg"') >= 2 * len(charts)
    assert dom.count('class="trace scatter') + dom.count('class="trace bars') + dom.count('class="hm"') >= len(charts)
    width, h, nonzero, distinct = png_stats(png)
    assert (width, h) == (1400, height)
    assert png.stat().st_size > 100_000
    assert nonzero > 0.01 and distinct > 64, f"screenshot looks blank ({nonzero:.4f}, {distinct} values)"


def test_report_renders_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report_of(DEMO), encoding="utf-8")
    dom, png = render(page, tmp_path)
    assert_rendered(dom, png, REPORT_CHARTS, 3000)
    assert "交通局" in dom and "Conservation check passed" in dom
    if os.environ.get("DX_REPORT_SCREENSHOT"):  # the README's picture: the whole demo page, no empty tail
        _, png = render(page, tmp_path / "readme", height=2800)
        shutil.copyfile(png, os.environ["DX_REPORT_SCREENSHOT"])


def test_compare_renders_in_chromium(tmp_path):
    _, page = run_compare(DEMO, DEMO2, tmp_path / "compare.html")
    dom, png = render(page, tmp_path, height=2200)
    assert_rendered(dom, png, COMPARE_CHARTS, 2200)


def _q(p50: float, p99: float) -> dict:
    return {"50pct": p50, "75pct": p50, "95pct": p99, "99pct": p99, "999pct": p99, "9999pct": p99, "99999pct": p99, "max": p99, "avg": p50}


def test_cascade_against_flat_compares_hubs_hops_and_paths():
    flat, cascade = load_result(DEMO), load_result(DEMO)
    flat["paths"] = {"gz": {"hubs": ["gz"], "delivered": 100, "end_to_end_ms": _q(10, 40)}}
    flat["hops"] = {
        "producer → gz": {"count": 100, "latency_ms": _q(4, 20)},
        "gz": {"count": 100, "latency_ms": _q(0.3, 2)},
        "gz → consumer": {"count": 100, "latency_ms": _q(5, 20)},
    }
    cascade["paths"] = {
        "gy": {"hubs": ["gy"], "delivered": 50, "end_to_end_ms": _q(10, 40)},
        "gy > gz": {"hubs": ["gy", "gz"], "delivered": 50, "end_to_end_ms": _q(30, 90)},
    }
    cascade["hops"] = {"gy → gz": {"count": 50, "latency_ms": _q(12, 45)}}
    sections = {s.title: s for s in comparison(flat, cascade)}
    hubs = {r.label: (r.a, r.b) for r in sections["hubs"].rows}
    assert hubs["hubs crossed per delivery (mean)"] == (1.0, 1.5) and hubs["distinct paths"] == (1, 2)
    hops = {r.label: (r.a, r.b) for r in sections["per hop (into a hub, inside it, out to the consumer), ms"].rows}
    assert hops["gy → gz p99"] == (None, 45) and hops["gz p50"] == (0.3, None)
    paths = [r.label for r in sections["per hub path, end to end, ms"].rows]
    assert paths[:4] == ["gy p50", "gy p99", "gz p50", "gz p99"] and paths[-1] == "gy > gz p99"  # by hubs crossed
    page = build_report_html(cascade)
    assert 'id="paths"' in page and "gy &gt; gz" in page and 'id="hops"' in page
    assert "Hub paths" not in build_report_html(load_result(DEMO))  # a result without stamps has no such section
