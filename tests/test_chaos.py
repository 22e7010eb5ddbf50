"""Fault injection (``exchange run --chaos``): the spec, and nothing lost under each fault.

The integration runs go through ``exchange.runner.controller.run`` on the real embedded broker with
real router, producer and consumer processes; the faults are real signals (SIGKILL,
SIGSTOP/SIGCONT) or a department really stopping its reads. Each run asserts the
conservation check, that the fault is in the result with a recovery time, and that any
redelivery is counted as a duplicate rather than a delivery.
"""

from __future__ import annotations

import json

import pytest

from exchange.runner import chaos
from exchange.runner.chaos import BrokerHandle, ChaosError, Fault, LagSample
from exchange.runner.controller import RunOptions, run
from exchange.runner.status import read_messages
from exchange.scenarios.loader import load
from schemas.results import Result

from .harness import broker_kinds

DEPTS = {"urban", "tax"}


def parse(spec: str, **kw):
    return chaos.parse(spec, **{"duration": 30, "workers": 2, "departments": DEPTS, **kw})


# the spec --------------------------------------------------------------------------------
def test_every_kind_parses_and_comes_out_in_time_order():
    faults = parse("pause-broker@10s+3s, kill-router@20s,pause-router:1@1.5s+500ms,kill-consumers@25s,pause-consumer:urban@5s+2s,kill-router:1@8s")
    assert faults == [
        Fault("pause-router", "1", 1.5, 0.5),
        Fault("pause-consumer", "urban", 5.0, 2.0),
        Fault("kill-router", "1", 8.0, 0.0),
        Fault("pause-broker", None, 10.0, 3.0),
        Fault("kill-router", "0", 20.0, 0.0),
        Fault("kill-consumers", None, 25.0, 0.0),
    ]
    assert [f.label for f in faults][:2] == ["pause-router:1@1.5s+0.5s", "pause-consumer:urban@5s+2s"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kill-router@x", "'kill-router@x': time 'x' must look like 20s"),
        ("kill-router@20", "time '20' must look like 20s"),
        ("kill-router", "expected KIND[:TARGET]@TIME[+DURATION]"),
        ("explode@3s", "unknown fault 'explode'"),
        ("kill-router:2@3s", "router worker '2' does not exist (--workers 2"),
        ("kill-router:a@3s", "router worker 'a' does not exist"),
        ("pause-router@3s", "pause-router needs a duration"),
        ("kill-router@3s+2s", "kill-router takes no duration"),
        ("pause-broker@3s+0s", "the duration must be more than 0"),
        ("pause-consumer:police@3s+2s", "'police' is not a subscribing department of the scenario (known: tax, urban)"),
        ("pause-consumer@3s+2s", "name the subscribing department"),
        ("kill-consumers:urban@3s", "kill-consumers takes no target"),
        ("kill-router@30s", "at 30s is not within the run's 30 s of publishing"),
        ("kill-router@5s,,pause-broker@6s+1s", "an empty fault between commas"),
        ("pause-router@5s+3s,kill-router:0@7s", "'kill-router:0@7s' overlaps 'pause-router:0@5s+3s'"),
        ("", "empty spec"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_bad_part(spec, message):
    with pytest.raises(ChaosError) as exc:
        parse(spec)
    assert message in str(exc.value)
    assert str(exc.value).startswith("--chaos: ")


def test_the_broker_can_only_be_paused_when_it_is_ours_and_stateful_consumers_cannot_be_killed():
    with pytest.raises(ChaosError, match=r"pause-broker needs a broker the run starts itself \(--broker\), not one given with --bootstrap"):
        parse("pause-broker@3s+2s", broker=None)
    with pytest.raises(ChaosError, match="reactions or workflows"):
        parse("kill-consumers@3s", restartable_consumers=False)
    assert parse("kill-router@1s,pause-router:1@1s+1s")  # different workers may overlap


CLUSTER = BrokerHandle("kafka", 3)


def test_broker_faults_on_a_cluster_name_a_node_or_leave_it_to_the_run():
    faults = parse("kill-broker@3s+restart, kill-broker:2@10s,pause-broker:3@12s+2s,kill-broker:1@14s+4s", broker=CLUSTER)
    assert faults == [
        Fault("kill-broker", None, 3.0, 0.0, restart=True),
        Fault("kill-broker", "2", 10.0, 0.0, restart=False),
        Fault("pause-broker", "3", 12.0, 2.0),
        Fault("kill-broker", "1", 14.0, 4.0, restart=True),
    ]
    assert [f.label for f in faults] == ["kill-broker@3s+restart", "kill-broker:2@10s", "pause-broker:3@12s+2s", "kill-broker:1@14s+4s"]
    assert faults[1].down_for_good and not faults[0].down_for_good and faults[3].end_s == 18.0
    assert parse("pause-broker@3s+2s", broker=CLUSTER) == [Fault("pause-broker", None, 3.0, 2.0)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kill-broker:4@3s", "broker node '4' does not exist (kafka:3: nodes 1…3)"),
        ("kill-broker:0@3s", "broker node '0' does not exist"),
        ("kill-broker:x@3s+restart", "broker node 'x' does not exist"),
        ("kill-broker@3s+0s", "the duration must be more than 0"),
        ("kill-broker@3s+again", "time 'again' must look like 20s"),
        ("pause-broker:2@3s", "pause-broker needs a duration"),
        ("kill-broker:2@3s,pause-broker:2@20s+1s", "overlaps 'kill-broker:2@3s' (same broker node 2, down for the rest of the run: add +restart)"),
        ("kill-broker:2@3s+5s,kill-broker:2@6s", "overlaps 'kill-broker:2@3s+5s' (same broker node 2)"),
        ("kill-broker@3s+restart,pause-broker:1@3s+1s", "a broker fault without a node may hit any node"),
        ("pause-broker:1@3s+5s,kill-broker@4s", "a broker fault without a node may hit any node"),
    ],
)
def test_a_bad_broker_fault_on_a_cluster_is_refused(spec, message):
    with pytest.raises(ChaosError) as exc:
        parse(spec, broker=CLUSTER)
    assert message in str(exc.value)


def test_two_nodes_may_be_faulted_at_once_when_named():
    faults = parse("kill-broker:1@3s+5s,pause-broker:2@4s+2s", broker=CLUSTER)
    assert [f.resource for f in faults] == ["broker node 1", "broker node 2"]


@pytest.mark.parametrize(
    ("broker", "spec", "message"),
    [
        (
            BrokerHandle("tansu"),
            "kill-broker@3s+restart",
            "'kill-broker@3s+restart': kill-broker needs a Kafka cluster (--broker kafka:3), not the embedded Tansu broker",
        ),
        (BrokerHandle("kafka", 1), "kill-broker:1@3s", "kill-broker needs a Kafka cluster (--broker kafka:3), not a single Kafka node"),
        (
            BrokerHandle("tansu"),
            "pause-broker:1@3s+1s",
            "pause-broker:NODE needs a Kafka cluster (--broker kafka:3), not the embedded "
            "Tansu broker, which is one node: write pause-broker@… to stop the whole broker",
        ),
        (None, "kill-broker@3s+restart", "kill-broker needs a broker the run starts itself (--broker), not one given with --bootstrap"),
    ],
)
def test_broker_node_faults_are_refused_without_a_cluster_in_one_line(broker, spec, message):
    with pytest.raises(ChaosError) as exc:
        parse(spec, broker=broker)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert parse("pause-broker@3s+1s", broker=BrokerHandle("kafka", 1))  # a single node pauses whole, as Tansu does


def test_recovery_waits_for_latency_too():
    fault = Fault("kill-broker", "2", 4.0, 0.0, restart=True)
    samples = [
        LagSample(t, lag, True, p99)
        for t, lag, p99 in [
            (1.5, 10, 20.0),
            (2.5, 30, 40.0),
            (3.5, 20, None),  # baseline: lag 20, p99 30 ms
            (4.5, 900, None),
            (5.5, 40, 900.0),  # lag is back at 5.5 s, latency is not: the backlog came late
            (6.5, 30, 95.0),
            (7.5, 20, 70.0),  # p99 back to ≤ max(30 × 1.5, 30 + 50) = 80 at 7.5 s
        ]
    ]
    r = chaos.recovery(fault, samples, until_s=8)
    assert (r.baseline_lag, r.baseline_p99_ms, r.peak_lag, r.peak_p99_ms) == (20, 30, 900, 900)
    assert (r.lag_recovered_after_s, r.latency_recovered_after_s, r.recovered_after_s) == (1.5, 3.5, 3.5)
    # no deliveries before the fault: no latency baseline, lag alone decides
    bare = chaos.recovery(fault, [LagSample(s.t, s.lag, True) for s in samples], until_s=8)
    assert bare.baseline_p99_ms is None and bare.recovered_after_s == 1.5


def test_recovery_is_measured_from_the_end_of_the_fault_and_ignores_silent_processes():
    fault = Fault("pause-broker", None, 4.0, 2.0)
    samples = [
        LagSample(t / 2, lag, complete)
        for t, lag, complete in [
            (2, 10, True),
            (4, 30, True),
            (6, 20, True),  # baseline: 20
            (8, 25, True),
            (10, 900, True),
            (12, 0, False),  # the fault (4–6 s); a silent process is not "no lag"
            (13, 400, True),
            (14, 120, True),
            (16, 10, True),
        ]
    ]
    r = chaos.recovery(fault, samples, until_s=10)
    assert r.baseline_lag == 20 and r.peak_lag == 900
    assert r.recovered_after_s == 1.0  # at 7 s: 120 ≤ max(20 × 1.5, 20 + 100)
    never = chaos.recovery(fault, samples[:7], until_s=6.5)
    assert never.recovered_after_s is None and never.peak_lag == 900


# runs on the embedded broker ---------------------------------------------------------------
def chaos_run(
    tmp_path, spec: str, duration: float = 8, rate_multiplier: float = 0.3, workers: int = 1, broker: str = "tansu", producer_workers: int = 1
) -> Result:
    import asyncio

    options = RunOptions(
        load("demo"),
        duration=duration,
        out=tmp_path / "run",
        workers=workers,
        rate_multiplier=rate_multiplier,
        chaos=spec,
        drain_timeout=30,
        broker=broker,
        producer_workers=producer_workers,
    )
    result, run_dir = asyncio.run(run(options))
    assert result.counts.unaccounted == 0, result.conservation.message
    assert result.conservation.ok
    c = result.counts
    assert c.expected == c.delivered + c.denied + c.dead_lettered  # duplicates are not deliveries
    assert sum(f.duplicates for f in result.flows.values()) <= c.duplicates
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert [f["spec"] for f in on_disk["faults"]] == [
        f.label for f in chaos.parse(spec, duration=duration, workers=workers, departments={s.consumer for s in options.scenario.subscriptions})
    ]
    assert (run_dir / "chaos.jsonl").exists()
    return result


@pytest.mark.parametrize("broker", broker_kinds())
def test_a_killed_router_worker_is_restarted_and_nothing_is_lost(tmp_path, broker):
    result = chaos_run(tmp_path, "kill-router@4s", broker=broker)
    (fault,) = result.faults
    assert fault.kind == "kill-router" and fault.target == "0" and fault.injected_at_s >= 4.0
    assert fault.recovered_after_s is not None and fault.recovered_after_s > 1.0  # a restart takes seconds
    # no peak assertion: a dead worker reports nothing, and the restarted one often clears the
    # backlog before its first report (docs/chaos.md: the peak is a lower bound for router kills)
    log = read_messages(tmp_path / "run" / "router-0.jsonl")
    assert len({m.sender.pid for m in log}) == 2  # two incarnations, one status file


def test_killed_consumers_resume_from_their_checkpoint_without_counting_twice(tmp_path):
    result = chaos_run(tmp_path, "kill-consumers@4s", rate_multiplier=0.5)
    (fault,) = result.faults
    assert fault.kind == "kill-consumers" and fault.recovered_after_s is not None
    assert (tmp_path / "run" / "consumers.checkpoint").exists()
    events = read_messages(tmp_path / "run" / "consumers.jsonl")
    assert [m.body.restored for m in events if m.kind == "ready"] == [False, True]
    # every flow's deliveries add up with its denials to what was produced: nothing twice, nothing lost
    gps = result.counts_by_entry["gps-fix"].produced
    assert result.flows["urban.gps-fix"].delivered == gps
    assert result.flows["nancheng.gps-fix"].delivered + result.flows["nancheng.gps-fix"].denied == gps


def test_a_paused_broker_stalls_the_producers_who_retry_and_drop_nothing(tmp_path):
    result = chaos_run(tmp_path, "pause-broker@4s+3s")
    (fault,) = result.faults
    assert fault.recovered_after_s is not None
    assert fault.publish_delay_max_ms is not None and fault.publish_delay_max_ms >= 2000  # the stall shows
    assert result.aggregatedPublishDelayLatencyMax >= 2_000_000  # µs
    assert result.flows["urban.gps-fix"].end_to_end_from_intended_ms.max >= 2000


def test_faults_count_from_the_schedule_start_not_from_the_producers_spawn(tmp_path):
    """A producers process slow to start (3 s more, as on a loaded machine: a CI run took 5-6 s)
    must not see the fault pass before its first record: the pause at 1 s still stalls it."""
    import asyncio

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(3)\n")
    options = RunOptions(
        load("demo"),
        duration=5,
        out=tmp_path / "run",
        rate_multiplier=0.3,
        chaos="pause-broker@1s+2s",
        drain_timeout=30,
        child_env={"producers": {"PYTHONPATH": str(slow)}},
    )
    result, _ = asyncio.run(run(options))
    assert result.conservation.ok, result.conservation.message
    (fault,) = result.faults
    assert fault.publish_delay_max_ms is not None and fault.publish_delay_max_ms >= 1000, fault  # the stall shows


def test_two_producer_workers_ride_out_a_paused_broker_and_drop_nothing(tmp_path):
    result = chaos_run(tmp_path, "pause-broker@4s+3s", producer_workers=2)  # conservation checked inside
    (fault,) = result.faults
    assert result.run.producer_workers == 2 and result.producersPerTopic == 2
    assert fault.recovered_after_s is not None and result.counts.duplicates == 0
    assert result.aggregatedPublishDelayLatencyMax >= 2_000_000  # µs: both workers' stall, in the merged histogram


def test_a_paused_department_falls_behind_alone_and_catches_up(tmp_path):
    result = chaos_run(tmp_path, "pause-consumer:urban@4s+3s")
    (fault,) = result.faults
    assert fault.target == "urban" and fault.recovered_after_s is not None
    assert fault.peak_lag > fault.baseline_lag + 100  # urban's backlog grew while it did not read
    urban, emergency = result.flows["urban.gps-fix"], result.flows["emergency.gps-fix"]
    assert urban.delivered == emergency.delivered == result.counts_by_entry["gps-fix"].produced
    assert urban.end_to_end_ms.max >= 2500  # urban waited for the pause…
    assert emergency.end_to_end_ms.p99 < urban.end_to_end_ms.max / 2  # …the others did not


def test_the_command_line_refuses_a_bad_spec_before_starting_anything(tmp_path):
    import subprocess
    import sys

    from .harness import ROOT

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exchange",
            "run",
            "demo",
            "--duration",
            "5",
            "--out",
            str(tmp_path / "x"),
            "--chaos",
            "kill-router@1s,pause-consumer:police@2s+1s",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "'pause-consumer:police@2s+1s': 'police' is not a subscribing department" in done.stderr
    assert not (tmp_path / "x").exists()
    helped = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert "--chaos" in helped.stdout and "pause-broker" in helped.stdout


def test_the_terminal_and_the_report_name_the_broker_node_a_fault_hit():
    import io

    from rich.console import Console

    from exchange.results.report import fault_section
    from exchange.runner.display import fault_table
    from schemas.results import FaultResult

    from .test_display import demo

    result = demo()
    result.faults = [
        FaultResult(
            spec="kill-broker@5s+restart",
            kind="kill-broker",
            target=None,
            at_s=5,
            injected_at_s=5.1,
            duration_s=0,
            node=3,
            node_chosen="leads 4 of 10 ingress partitions",
            baseline_lag=12,
            peak_lag=900,
            recovered_after_s=11.5,
            baseline_p99_ms=40,
            peak_p99_ms=9500,
        )
    ]
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(fault_table(result))
    text = console.export_text()
    assert "kill-broker@5s+restart (node 3)" in text and "40 → 9,500 ms" in text and "11.5 s" in text
    html = fault_section(result.model_dump(mode="json"))
    assert "node 3 (leads 4 of 10 ingress partitions)" in html and "40 → 9,500" in html
    result.faults[0].baseline_p99_ms = None  # nothing delivered before the fault
    console.print(fault_table(result))
    assert "— → 9,500 ms" in console.export_text()
