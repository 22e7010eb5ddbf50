"""`exchange run` end to end, as a user runs it: conservation, and no process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from exchange.kafka import brokers
from exchange.runner.status import StatusReader
from schemas.results import Result
from schemas.status import StatusMessage

from .harness import ROOT, broker_kinds, pids_mentioning

_runs: dict[Path, int] = {}  # run dir → pid of its `exchange run`


def start_run(out: Path, *args: str, broker: str = "tansu") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "run", *args, "--out", str(out), "--broker", broker],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _runs[out] = proc.pid
    return proc


def broker_port(run_dir: Path) -> str | None:
    log = run_dir / "broker.log"
    if not log.exists():
        return None
    # Tansu says where it listens; Kafka logs its configuration
    m = re.search(r"(?:listening on: tcp://|advertised\.listeners = PLAINTEXT://)127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
    return m.group(1) if m else None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def publishing_demo(out: Path, broker: str = "tansu") -> Iterator[subprocess.Popen]:
    """`exchange run demo` for 30 s, once its producers publish; killed when the block ends."""
    proc = start_run(out, "demo", "--duration", "30", broker=broker)

    def publishing() -> dict | None:
        if proc.poll() is not None:  # say why, now, rather than time out
            raise AssertionError(f"the run exited {proc.returncode} before publishing: {proc.stderr.read()[-2000:]}")
        return status_event(out / "producers.jsonl", "stats")

    try:
        # what the run itself allows its processes to get ready on this broker, and a minute to start it
        wait_for(publishing, brokers.ready_timeout(brokers.parse(broker)[0], 60.0) + 60, "publishing to start")
        yield proc
    finally:
        proc.kill()


def status_event(path: Path, kind: str) -> StatusMessage | None:
    """The first message of ``kind`` in a status file (whole lines only), or None."""
    return next((m for m in StatusReader(path).read() if m.kind == kind), None)


def assert_nothing_left(run_dir: Path, port: str | None) -> None:
    def gone():
        left = pids_mentioning(str(run_dir))
        if port:
            left += pids_mentioning(f"127.0.0.1:{port}")
        if run_dir in _runs:  # a Kafka JVM's command line names its data dir, which names the run's pid
            left += pids_mentioning(f"dx-kafka-{_runs[run_dir]}-")
        return not left

    wait_for(gone, 10, f"every process of {run_dir} to exit")


@pytest.mark.parametrize("broker", broker_kinds("tansu", "kafka", "kafka:3"))
def test_demo_run_accounts_for_every_record(tmp_path, broker):
    out = tmp_path / "demo"
    proc = start_run(out, "demo", "--duration", "3", broker=broker)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr + stdout
    assert "conservation check passed" in stdout
    assert str(out / "result.json") in stdout.replace("\n", "")
    result = Result.model_validate_json((out / "result.json").read_text())
    assert result.conservation.ok and result.counts.unaccounted == 0
    assert result.counts.produced > 8000  # ~2,870 records/s for 3 s
    assert result.counts.expected == result.counts.delivered + result.counts.denied + result.counts.dead_lettered
    flows = result.flows
    assert flows["psb.enterprise-registration"].delivered == 0  # pending application
    assert flows["psb.enterprise-registration"].denied_by_reason == {"not_approved": result.counts_by_entry["enterprise-registration"].produced}
    assert flows["urban.population"].delivered == 0 and set(flows["urban.population"].denied_by_reason) == {"not_shared"}
    assert flows["urban.gps-fix"].delivered == result.counts_by_entry["gps-fix"].produced
    town = flows["nancheng.gps-fix"]
    assert 0 < town.delivered < flows["urban.gps-fix"].delivered  # only its own jurisdiction's rows
    assert town.delivered + town.denied == result.counts_by_entry["gps-fix"].produced
    assert len(result.publishRate) >= 2 and len(result.consumeRate) >= 2
    assert min(result.publishRate) > 0, result.publishRate  # the producers' last stats line adds no empty interval
    assert result.aggregatedEndToEndLatency99pct > 0
    raw = json.loads((out / "result.json").read_text())
    for field in (
        "workload",
        "driver",
        "messageSize",
        "topics",
        "partitions",
        "publishRate",
        "consumeRate",
        "aggregatedEndToEndLatency50pct",
        "aggregatedEndToEndLatency9999pct",
        "aggregatedEndToEndLatencyMax",
    ):
        assert field in raw
    assert result.run.broker is not None and result.run.broker in result.driver
    assert result.run.broker.startswith("Apache Kafka" if broker.startswith("kafka") else "Tansu")
    assert set(result.run.router_cpu) == {"router-0"} and 0 < result.run.router_cpu["router-0"] < 2  # cores while publishing
    if broker == "kafka:3":
        assert "3 nodes, RF 3, min ISR 2" in result.run.broker
        assert all((out / f"broker-{n}.log").exists() for n in (1, 2, 3))
    assert_nothing_left(out, broker_port(out))


@pytest.mark.parametrize("broker", broker_kinds())
def test_a_router_killed_mid_run_fails_the_run_fast_and_leaves_nothing(tmp_path, broker):
    out = tmp_path / "killed"
    with publishing_demo(out, broker) as proc:
        ready = wait_for(lambda: status_event(out / "router-0.jsonl", "ready"), 10, "the router")
        os.kill(ready.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "router-0 exited with code -9" in stderr
    assert_nothing_left(out, broker_port(out))


@pytest.mark.parametrize("broker", broker_kinds())
def test_ctrl_c_stops_every_process(tmp_path, broker):
    out = tmp_path / "interrupted"
    with publishing_demo(out, broker) as proc:
        port = broker_port(out)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert_nothing_left(out, port)


def test_the_embedded_broker_dying_fails_the_run_with_a_clear_message(tmp_path):
    out = tmp_path / "broker-died"
    with publishing_demo(out) as proc:
        port = broker_port(out)
        broker_pids = [p for p in pids_mentioning(f"tcp://127.0.0.1:{port}") if "tansu" in Path(f"/proc/{p}/cmdline").read_text()]
        assert broker_pids
        started = time.monotonic()
        os.kill(broker_pids[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - started
    assert proc.returncode == 1
    assert "the embedded broker died" in stderr and "memory" in stderr
    assert took < 20, f"failing took {took:.1f} s (a hang?)"
    assert_nothing_left(out, port)


def test_cpu_seconds_reads_a_live_process_and_says_none_for_a_gone_one():
    from exchange.runner.processes import cpu_seconds

    child = subprocess.Popen([sys.executable, "-c", "sum(range(3_000_000))"])
    child.wait()  # reaped: its pid is gone
    before = cpu_seconds()
    sum(range(3_000_000))
    assert before is not None and cpu_seconds() > before  # type: ignore[operator]
    assert cpu_seconds(child.pid) is None


def test_cpu_seconds_reads_the_final_times_of_an_exited_process_not_yet_reaped():
    """The run reads its producers' CPU before it polls (reaps) them: a process that has just
    exited keeps its final times in /proc until then (exchange/runner/controller.py)."""
    from exchange.runner.processes import cpu_seconds

    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"])
    deadline = time.monotonic() + 30
    while "\nState:\tZ" not in Path(f"/proc/{child.pid}/status").read_text():  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        spent = cpu_seconds(child.pid)
        assert spent is not None and spent >= 0.3
    finally:
        child.wait()
    assert cpu_seconds(child.pid) is None


@pytest.mark.parametrize("argv", [["-m", "exchange", "scenarios"], ["-m", "exchange", "validate", "demo"]])
def test_python_dash_m_exchange_works(argv):
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout


def test_slo_verdicts_fail_when_they_should_and_fail_on_slo_exits_nonzero(tmp_path):
    """The demo's SLOs, plus one no exchange can meet; at a tenth of the rate."""
    text = (ROOT / "exchange" / "scenarios" / "presets" / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "slos:\n",
        "slos:\n  - {name: impossible, metric: e2e_p50_ms, max: 0.001}\n  - {name: never reached, metric: delivered_per_s, min: 1000000}\n",
        1,
    )
    scenario = tmp_path / "demo-slos.yaml"
    scenario.write_text(text, encoding="utf-8")
    out = tmp_path / "slo-run"
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", str(scenario), "--duration", "3", "--out", str(out), "--rate-multiplier", "0.1", "--fail-on-slo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    result = Result.model_validate_json((out / "result.json").read_text())
    verdicts = {v.name: v for v in result.slos}
    assert not verdicts["impossible"].passed and verdicts["impossible"].measured > 0.001
    assert not verdicts["never reached"].passed
    assert verdicts["every record accounted for"].passed and verdicts["every record accounted for"].measured == 0
    assert "SLO FAIL impossible: e2e_p50_ms ≤ 0.001 ms, measured " in done.stdout  # with its unit
    assert re.search(r"SLO FAIL impossible: .*, measured [\d,]+\.\d ms\n", done.stdout), done.stdout
    # an SLO of some entries names them: the demo's realtime p99 is over gps-fix, not every flow
    assert verdicts["realtime flows p99"].entries == ("gps-fix",) and verdicts["impossible"].entries is None
    assert re.search(r"SLO (pass|FAIL) realtime flows p99 \(gps-fix\): e2e_p99_ms ≤ 200 ms, measured", done.stdout), done.stdout
    assert 600 < result.counts.produced < 1200  # 2,870/s × 0.1 × 3 s
