"""Latency measured right, and finding the maximum sustainable rate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from schemas.results import Result

from .harness import ROOT
from .test_run import status_event, wait_for


@pytest.mark.slow
def test_max_rate_search_converges_on_a_throttled_consumer(tmp_path):
    """A subscriber that takes in at most 400 records/s: the search must find about that."""
    out = tmp_path / "maxrate"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exchange",
            "run",
            str(ROOT / "tests" / "data" / "throttled.yaml"),
            "--find-max-rate",
            "--duration",
            "5",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((out / "max-rate.json").read_text())
    assert 300 <= found["max_rate_per_s"] <= 520, found
    assert any(not t["held"] and "backlog" in t["why"] for t in found["trials"])


def test_a_stalled_producer_shows_in_publish_delay_and_latency_from_intended_time(tmp_path):
    """SIGSTOP the producer process for 2 s: the records it owed are sent late, and the
    result says so (publish delay, end to end from the intended time) instead of hiding it."""
    out = tmp_path / "stall"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "run", "demo", "--duration", "8", "--out", str(out), "--rate-multiplier", "0.3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = wait_for(lambda: status_event(out / "producers.jsonl", "ready"), 60, "the producers")
        time.sleep(2)
        os.kill(ready.pid, signal.SIGSTOP)
        time.sleep(2)
        os.kill(ready.pid, signal.SIGCONT)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    r = Result.model_validate_json((out / "result.json").read_text())
    assert r.conservation.ok
    assert r.aggregatedPublishDelayLatencyMax >= 1_500_000  # µs: the stall is there
    flow = r.flows["urban.gps-fix"]
    assert flow.end_to_end_from_intended_ms.max >= 1500
    assert flow.end_to_end_ms.p50 < 500  # measured from the (late) send time, the stall would be invisible


def test_table_exchange_publishes_whole_batches_judged_against_their_cycle(tmp_path):
    text = (ROOT / "exchange" / "scenarios" / "presets" / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace("    - {department: hrss, rate: 100}", "    - {department: hrss, rate: 100, profile: {kind: batch, every: 2}}")
    text = text.replace("slos:\n", "slos:\n  - {name: batches on time, metric: batch_within_cycle, min: 0.99}\n", 1)
    scenario = tmp_path / "batch.yaml"
    scenario.write_text(text, encoding="utf-8")
    out = tmp_path / "batch"
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", str(scenario), "--duration", "4", "--out", str(out), "--rate-multiplier", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    r = Result.model_validate_json((out / "result.json").read_text())
    flow = r.flows["tax.social-insurance"]
    assert flow.delivered == 200  # two cycles of 100 rows (50/s × 2 s)
    assert flow.within_cycle_share is not None and flow.within_cycle_share > 0.99
    assert next(v for v in r.slos if v.name == "batches on time").passed
    assert set(r.consumer_lag) >= {"tax", "urban"}  # lag over time, per delivery topic
    assert all(len(v) == len(r.endToEndLatency99pct) > 0 for v in r.consumer_lag.values())
