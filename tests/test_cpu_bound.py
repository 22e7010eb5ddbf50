"""A run says when the machine it ran on was CPU-bound (result.json run.cpu_s, run.machine_busy, warnings)."""

from __future__ import annotations

import os

import pytest

from exchange.results.build import CPU_BOUND, cpu_warning
from exchange.runner.processes import machine_cpu
from schemas.results import RunInfo


def info(busy: float | None, **cpu: float) -> RunInfo:
    return RunInfo(
        scenario="demo", run_id="r", seed=1, duration_s=10, started_at="2026-11-30T00:00:00Z", bootstrap="127.0.0.1:9092",
        embedded_broker=True, router_workers=1, router_ready_s=[1.0], drain_s=0.5, dead_letters_by_reason={},
        cpu_window_s=10.0, cpu_s=cpu, machine_cores=2, machine_busy=busy,
    )  # fmt: skip


def test_the_machine_busy_share_comes_from_proc_stat():
    tick = os.sysconf("SC_CLK_TCK")
    #            user nice system idle iowait irq softirq steal guest guest_nice
    line = "cpu  300 10 90 500 50 20 20 10 40 0"
    busy, elapsed = machine_cpu(line)
    assert busy == pytest.approx(450 / tick) and elapsed == pytest.approx(1000 / tick)  # guest is inside user
    assert machine_cpu("cpu  1 2 3") == (6 / tick, 6 / tick)  # an old kernel's shorter line
    assert machine_cpu("cpu  x") is None
    now = machine_cpu()
    assert now is not None and 0 < now[0] <= now[1]


def test_a_cpu_bound_run_says_so_naming_what_kept_the_cores_busy():
    assert cpu_warning(info(CPU_BOUND - 0.01, router=9.0)) is None
    assert cpu_warning(info(None)) is None  # not measured (not Linux)
    said = cpu_warning(info(0.97, router=9.0, broker=6.0, consumers=3.5, other=0.9, controller=0.0))
    assert said is not None and said.startswith("CPU-bound: this machine's 2 cores were 97% busy")
    assert "(router 0.90, broker 0.60, consumers 0.35, other 0.09 cores)" in said  # busiest first, idle roles left out
    assert "docs/distributed.md" in said
