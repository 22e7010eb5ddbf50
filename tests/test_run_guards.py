"""What a run refuses before it starts, and what fails it while it goes (issue 14 item 5):
topics that exist with other partitions than the run needs, and a crash inside a child
process that lives on (a Faust agent, an asyncio task, a thread). Real embedded broker,
real router worker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
import pytest_asyncio

from exchange.errors import TopicMismatch
from exchange.kafka import clients
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.topics import changelog_plan, create_topics, topic_plan
from exchange.runner.controller import RunFailed, _check_alive, _Child
from exchange.runner.processes import CRASHED, spawn, terminate
from exchange.runner.status import StatusReader
from exchange.scenarios.loader import parse
from exchange.workflow import publish_control
from schemas.applications import ControlEvent
from schemas.envelope import Topics

from .harness import ROOT, SHARING_SCENARIO, sharing_scenario

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def broker():
    async with EmbeddedBroker() as b:
        yield b


async def partitions(bootstrap: str) -> dict[str, int]:
    async with clients.started(clients.admin("topology", bootstrap), bootstrap, "describing topics") as admin:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}


def exchange(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchange", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def scenario_text(platform: str) -> str:
    return SHARING_SCENARIO.replace("platform: {id: t1,", f"platform: {{id: {platform},")


def scenario_for(platform: str):
    return parse(scenario_text(platform), f"{platform}.yaml")


def scenario_file(tmp_path, platform: str):
    path = tmp_path / f"{platform}.yaml"
    path.write_text(scenario_text(platform), encoding="utf-8")
    return path


async def test_a_run_refuses_a_control_topic_with_other_partitions_before_starting_anything(broker, tmp_path):
    """The issue's case: a control topic auto-created with 4 partitions crashed the router's control agent."""
    await create_topics(broker.bootstrap, {"dx.g1.control": 4})
    out = tmp_path / "run"
    started = time.monotonic()
    done = exchange("run", str(scenario_file(tmp_path, "g1")), "--bootstrap", broker.bootstrap, "--duration", "2", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "dx.g1.control has 4 partitions, needs 1" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list(out.glob("router-*")), "a router was started"
    assert time.monotonic() - started < 60


async def test_faust_changelog_topics_with_other_partitions_are_refused_too(broker):
    scenario = scenario_for("g3")
    await create_topics(broker.bootstrap, {"dx-g3-router-approvals-changelog": 2})
    with pytest.raises(TopicMismatch, match="dx-g3-router-approvals-changelog has 2 partitions, needs 1"):
        await create_topics(broker.bootstrap, topic_plan(scenario), check=changelog_plan(scenario))
    assert "dx.g3.control" not in await partitions(broker.bootstrap)  # refused before creating anything


async def test_a_workflow_command_on_a_fresh_broker_creates_the_topics_as_a_run_does(broker, tmp_path):
    done = exchange(
        "apply",
        str(scenario_file(tmp_path, "g2")),
        "--bootstrap",
        broker.bootstrap,
        "--consumer",
        "b",
        "--entry",
        "cond",
        "--purpose",
        "测试",
        "--no-wait",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    parts = await partitions(broker.bootstrap)
    plan = topic_plan(sharing_scenario())
    for name, n in plan.items():
        assert parts.get(name.replace("dx.t1.", "dx.g2.")) == n, name
    assert parts["dx.g2.control"] == 1


async def test_a_crashed_agent_in_a_live_router_is_reported_and_fails_the_run(broker, tmp_path):
    """A Faust agent crash is only logged and the worker lives on; its crash line fails the run."""
    scenario = sharing_scenario()
    topics = Topics("t1")
    plan = topic_plan(scenario)
    plan[topics.control] = 4  # what auto-creation made of it in the issue
    await create_topics(broker.bootstrap, plan)
    scenario_json = tmp_path / "scenario.json"
    scenario_json.write_text(scenario.model_dump_json())
    status, log = tmp_path / "router-0.jsonl", tmp_path / "router-0.log"
    argv = [
        sys.executable,
        "-m",
        "exchange.router",
        "--scenario",
        str(scenario_json),
        "--bootstrap",
        broker.bootstrap,
        "--status",
        str(status),
        "--datadir",
        str(tmp_path / "data"),
    ]
    proc = spawn(argv, log_path=log)
    child = _Child("router-0", proc, StatusReader(status), log, argv, pids=[proc.pid])
    try:
        deadline = time.monotonic() + 60
        while not child.is_ready():
            child.read()
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.05)
        _check_alive([child], None, allow_exit=set())  # nothing crashed yet
        await publish_control(
            broker.bootstrap,
            topics.control,
            ControlEvent(action="apply", actor="b", consumer="b", entry="cond", purpose="测试", at_ns=time.time_ns()),
        )
        while not any(m.kind == CRASHED for m in child.events):
            child.read()
            assert time.monotonic() < deadline + 30, log.read_text()[-2000:]
            await asyncio.sleep(0.05)
        assert proc.poll() is None, "the worker died: the old check would have caught that"
        with pytest.raises(RunFailed, match=r"router-0 .*crashed: PartitionsMismatch: .*dx.t1.control.* has 4 partitions"):
            _check_alive([child], None, allow_exit=set())
    finally:
        terminate(proc)


async def test_a_crashed_thread_or_task_is_reported_while_the_process_lives_on(tmp_path):
    status = tmp_path / "child.jsonl"
    code = textwrap.dedent(f"""
        import asyncio, gc, threading
        from exchange.runner.processes import report_crashes
        from exchange.runner.status import StatusWriter, sender
        report_crashes(StatusWriter({str(status)!r}, sender("router")))

        def boom():
            raise OSError("disk full in a thread")
        t = threading.Thread(target=boom, name="writer"); t.start(); t.join()

        async def main():
            async def fails():
                raise KeyError("lost task")
            task = asyncio.ensure_future(fails())
            await asyncio.sleep(0.05)
            del task
            gc.collect()
            async def cancelled():
                await asyncio.sleep(10)
            c = asyncio.ensure_future(cancelled()); await asyncio.sleep(0); c.cancel()
            await asyncio.sleep(0.05)
            # a connection lost under aiokafka's own fire-and-forget task is aiokafka's to handle…
            from aiokafka.conn import create_conn
            lost = asyncio.ensure_future(create_conn("127.0.0.1", 1))
            # …under one of ours, it is a crash
            async def ours():
                raise ConnectionResetError("peer went away")
            mine = asyncio.ensure_future(ours())
            await asyncio.sleep(0.3)
            del lost, mine
            gc.collect()
        asyncio.run(main())
        print("still alive")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "still alive" in done.stdout, done.stderr
    crashes = [m.body.message for m in StatusReader(status).read() if m.kind == CRASHED]
    assert any("thread writer crashed: OSError: disk full in a thread" in m for m in crashes), crashes
    assert any("Task exception was never retrieved (main.<locals>.fails): KeyError" in m for m in crashes), crashes
    assert any("(main.<locals>.ours): ConnectionResetError: peer went away" in m for m in crashes), crashes
    assert len(crashes) == 3, crashes  # a cancelled task is no crash, nor aiokafka's lost connection


async def test_the_controllers_metrics_line_goes_to_the_live_views_console(broker, tmp_path, capfd):
    """Issue 14 item 14: the line used to go straight to stderr, into the middle of the live view;
    now the command line prints it through the console the live view is on, above it."""
    from exchange.runner.controller import RunOptions, run

    said: list[str] = []
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "sd-producers-9.json").write_text("[]")  # a target a killed child left (a newcomer's Ctrl-C)
    result, _ = await run(RunOptions(scenario_for("g4"), duration=1.0, out=tmp_path / "run", bootstrap=broker.bootstrap), say=said.append)
    assert result.conservation.ok, result.conservation.message
    assert not list((tmp_path / "run").glob("sd-*.json"))  # no target outlives the run
    # this machine's processes of the run, by role (the broker is not the run's), and the rest of the machine
    assert {"router", "producers", "consumers", "controller", "other"} <= result.run.cpu_s.keys() and "broker" not in result.run.cpu_s
    # the window opens when publishing starts (no longer at the producers' spawn, with their
    # start-up in it): a 1 s run's producers may spend under a 10 ms tick of it, or exit unread
    assert result.run.cpu_s["router"] > 0 and result.run.cpu_s["producers"] >= 0 and result.run.machine_cores == os.cpu_count()
    assert result.run.machine_busy is not None and 0 < result.run.machine_busy <= 1.05  # /proc/stat counts in 10 ms ticks
    sd = re.escape(str(tmp_path / "run" / "sd-*.json"))
    url = r"http://127\.0\.0\.1:\d+/metrics"
    where = rf"\(the other processes' addresses, for Prometheus to read meanwhile: {sd}; docs/cluster\.md\)"
    expected = rf"controller 0: Prometheus metrics on {url} while it runs {where}"
    assert any(re.fullmatch(expected, line) for line in said), said
    assert "Prometheus metrics on" not in capfd.readouterr().err


async def test_applications_filed_before_a_run_are_decided_when_its_router_starts(broker, tmp_path):
    """The issue's sequence, now working: workflow commands against a fresh broker before any
    run (fire and forget), then the run: its router applies them in order and psb receives the
    conditional entry it had no approval for in the scenario."""
    from exchange.runner.controller import RunOptions, run
    from exchange.scenarios import loader as scenarios

    flow = "psb.enterprise-registration"
    for action, *extra in (("apply", "--purpose", "企业开办"), ("review",), ("approve",)):
        done = exchange(
            action, "demo", "--bootstrap", broker.bootstrap, "--consumer", "psb", "--entry", "enterprise-registration", *extra, "--no-wait"
        )
        assert done.returncode == 0, done.stdout + done.stderr
    result, _ = await run(RunOptions(scenarios.load("demo"), duration=3.0, out=tmp_path / "run", bootstrap=broker.bootstrap, rate_multiplier=0.2))
    assert result.conservation.ok, result.conservation.message
    assert result.flows[flow].delivered > 0 and not result.flows[flow].denied_by_reason.get("not_approved"), result.flows[flow]
