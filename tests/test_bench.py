"""`exchange bench` stays honest: every path processes every record, and says so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .harness import ROOT


@pytest.mark.slow
def test_bench_counts_every_record_on_every_path(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "bench", "--records", "5000", "--latency-seconds", "2", "--json", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    for path in ("produced", "raw_records", "router_records", "consumer_records"):
        assert figures[path] == 5000, (path, figures)
    assert figures["all_records_processed"] is True
    assert figures["half_rate_conservation_ok"] is True
    for key in ("raw_records_per_s", "router_records_per_s", "producer_records_per_s", "consumer_records_per_s"):
        assert figures[key] > 0
    assert figures["ratio"] == round(figures["router_records_per_s"] / figures["raw_records_per_s"], 3)
    assert figures["router_ready_s"] > 0 and figures["router_peak_rss_mb"] > 0


def test_broker_floor_receives_every_record_and_reports_each_window(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exchange",
            "bench",
            "--broker-floor",
            "--floor-rate",
            "500",
            "--latency-seconds",
            "2",
            "--record-size",
            "200",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["received"] == 1000 == sum(w["received"] for w in figures["windows"])
    assert figures["windows"][0]["from_s"] == 0.0 and figures["windows"][0]["received"] > 900
    assert all(0 < w["p50_ms"] <= w["p99_ms"] for w in figures["windows"])
