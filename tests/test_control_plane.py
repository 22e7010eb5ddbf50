"""Conditional sharing as a live workflow, on a real broker and a real router worker:
approval, revocation within a second, expiry, a restarted worker keeping its approvals,
refusals audited, and the audit chain catching tampering. Every test runs on both brokers
(the embedded Tansu one and Apache Kafka), one broker and one router per module each."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
import pytest_asyncio

from exchange.kafka.topics import read_topic
from exchange.policy.audit import verify
from exchange.workflow import publish_control
from schemas.applications import ControlEvent
from schemas.envelope import H_ROUTED, H_SUBSCRIPTION, H_TRACE
from schemas.envelope import audit_records as rows_of

from .harness import RouterProcess, broker_kinds, envelope, new_run, publish, read_all, running_broker, sharing_scenario
from .test_router_integration import records_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def plane(request, tmp_path_factory):
    """One broker and one router for the module's tests, per broker kind."""
    workdir = tmp_path_factory.mktemp(f"control-{request.param}")
    async with (
        running_broker(request.param, log_path=workdir / "broker.log") as broker,
        RouterProcess(sharing_scenario(), broker.bootstrap, workdir, kind=broker.kind) as router,
    ):
        yield router


async def control(plane, action: str, actor: str, consumer: str = "b", entry: str = "cond", **extra) -> int:
    event = ControlEvent(action=action, actor=actor, consumer=consumer, entry=entry, at_ns=time.time_ns(), **extra)
    await publish_control(plane.bootstrap, plane.topics.control, event)
    return event.at_ns


class Stream:
    """Publishes records of an entry at a steady rate until stopped."""

    def __init__(self, plane, entry: str, run: str, per_second: int = 200) -> None:
        self.plane, self.entry, self.run, self.rate = plane, entry, run, per_second
        self.sent = 0
        self._task: asyncio.Task | None = None

    async def _go(self) -> None:
        records = records_for(self.entry, 5000)
        while True:
            chunk = [
                (k, orjson.dumps(v), envelope(self.entry, "prov", f"7.{self.sent + i + 1}", self.run))
                for i, (k, v) in enumerate(records[self.sent % 4000 : self.sent % 4000 + self.rate // 10])
            ]
            await publish(self.plane.bootstrap, self.plane.topics.ingress(self.entry), chunk)
            self.sent += len(chunk)
            await asyncio.sleep(0.1)

    def __enter__(self) -> Stream:
        self._task = asyncio.ensure_future(self._go())
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def to_b(records) -> list:
    return [r for r in records if dict(r.headers)[H_SUBSCRIPTION] == b"b.cond"]


async def audit_rows(plane) -> list[dict]:
    return [a for _, _, v in await read_topic(plane.bootstrap, plane.topics.audit) for a in rows_of(orjson.loads(v))]


async def test_approval_then_revocation_stops_delivery_within_a_second(plane):
    run = new_run()
    with Stream(plane, "cond", run) as stream:
        await asyncio.sleep(1.0)
        assert to_b(await read_all(plane.bootstrap, plane.topics.delivery("b"), run=run, idle=0.5)) == []  # pending
        await control(plane, "apply", "b", purpose="测试", items=["enterprise.name"])
        await control(plane, "approve", "a")  # not the provider: refused
        await control(plane, "review", "prov")
        await control(plane, "approve", "prov")
        await asyncio.sleep(1.5)
        revoked_at = await control(plane, "revoke", "prov", reason="用途已结束")
        await asyncio.sleep(2.0)
        await stream.stop()
    got = to_b(await read_all(plane.bootstrap, plane.topics.delivery("b"), run=run, idle=1.5))
    assert got, "nothing was delivered under the approval"
    for r in got:
        assert set(orjson.loads(r.value)) == {"enterprise.name"}  # only the items approved
    last_routed = max(int(dict(r.headers)[H_ROUTED]) for r in got)
    lag = (last_routed - revoked_at) / 1e9
    print(f"revocation took effect after {lag * 1000:.0f} ms")  # the figure in docs/concepts.md
    assert lag < 1.0, f"deliveries continued {lag:.2f} s after the revocation"
    rows = [a for a in await audit_rows(plane) if a["subscription"] == "b.cond" and a["run"] == ""]
    states = [a["decision"] for a in rows]
    assert states[-5:] == ["submitted", "refused", "under_review", "approved", "revoked"]
    refused = [a for a in rows if a["decision"] == "refused"]
    assert refused and "only the provider" in refused[0]["reason"] and refused[0]["source"] == "a"


async def test_an_approval_expires_by_itself(plane):
    run = new_run()
    await control(plane, "apply", "b", purpose="测试")
    await control(plane, "review", "prov")
    approved_at = await control(plane, "approve", "prov", valid_for_s=1.0)
    with Stream(plane, "cond", run) as stream:
        await asyncio.sleep(3.0)
        await stream.stop()
    got = to_b(await read_all(plane.bootstrap, plane.topics.delivery("b"), run=run, idle=1.5))
    assert got
    assert max(int(dict(r.headers)[H_ROUTED]) for r in got) < approved_at + 1.5e9
    rows = [a for a in await audit_rows(plane) if a["subscription"] == "b.cond" and a["decision"] == "expired"]
    assert rows, "the expiry was not audited"


async def test_a_restarted_worker_keeps_its_approvals(plane):
    await control(plane, "apply", "b", purpose="测试")
    await control(plane, "review", "prov")
    await control(plane, "approve", "prov")
    await asyncio.sleep(1.0)
    plane.proc.kill()  # SIGKILL: nothing saved on the way out
    plane.proc.wait()
    await plane.start()
    run = new_run()
    messages = [(k, orjson.dumps(v), envelope("cond", "prov", f"8.{i + 1}", run)) for i, (k, v) in enumerate(records_for("cond", 20))]
    await publish(plane.bootstrap, plane.topics.ingress("cond"), messages)
    got = to_b(await read_all(plane.bootstrap, plane.topics.delivery("b"), run=run, until=20))
    assert len({dict(r.headers)[H_TRACE] for r in got}) == 20  # at-least-once: a rebalance may repeat some


async def test_audit_verify_passes_and_catches_a_rewritten_record(plane):
    messages = await read_topic(plane.bootstrap, plane.topics.audit)
    assert len(messages) > 5
    intact = verify(messages)
    assert intact.ok, intact.broken[:1]
    # rewrite one decision inside one block (an insider editing the trail)
    n = len(messages) // 2
    partition, offset, value = messages[n]
    block = orjson.loads(value)
    block["rows"][0][7] = "delivered" if block["rows"][0][7] != "delivered" else "denied"
    tampered = [*messages[:n], (partition, offset, orjson.dumps(block)), *messages[n + 1 :]]
    broken = verify(tampered)
    assert not broken.ok
    assert (broken.broken[0].partition, broken.broken[0].offset) == (partition, offset)
    # a careful insider also fixes the block's own hash: the next block's link breaks instead
    from exchange.policy.audit import block_hash

    block["hash"] = block_hash(block)
    resealed = [*messages[:n], (partition, offset, orjson.dumps(block)), *messages[n + 1 :]]
    broken = verify(resealed)
    assert not broken.ok and broken.broken[0].problem == "previous-hash link broken"


async def test_exchange_audit_verify_command(plane, tmp_path):
    """The CLI reads the real audit topic; a copy with one rewritten record fails with the link."""
    import subprocess
    import sys

    from exchange.kafka import clients
    from exchange.kafka.topics import create_topics

    from .harness import ROOT

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "exchange", "audit", "verify", "--bootstrap", plane.bootstrap, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    run = new_run()  # some decisions to audit, whatever ran before
    messages = [(k, orjson.dumps(v), envelope("open", "prov", f"5.{i + 1}", run)) for i, (k, v) in enumerate(records_for("open", 30))]
    for chunk in (messages[:10], messages[10:20], messages[20:]):
        await publish(plane.bootstrap, plane.topics.ingress("open"), chunk)
        await asyncio.sleep(0.3)
    await read_all(plane.bootstrap, plane.topics.delivery("a"), run=run, until=30)
    intact = cli("--platform", "t1")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "every chain intact" in intact.stdout
    messages = await read_topic(plane.bootstrap, plane.topics.audit)
    copy = "dx.t1.audit-tampered"
    await create_topics(plane.bootstrap, {copy: 1})
    producer = clients.producer("control", plane.bootstrap)
    await producer.start()
    try:
        for n, (_, _, value) in enumerate(messages):
            if n == len(messages) // 2:
                block = orjson.loads(value)
                block["rows"][0][2] = "someone-else"  # who made the decision, rewritten
                value = orjson.dumps(block)
            await producer.send_and_wait(copy, value, partition=0)
    finally:
        await producer.stop()
    broken = cli("--topic", copy)
    assert broken.returncode == 1
    assert "broken:" in broken.stdout and f"offset {len(messages) // 2}" in broken.stdout


def _workflow_cli(plane, tmp_path, *args: str, scenario_text: str | None = None):
    import subprocess
    import sys

    from .harness import ROOT, SHARING_SCENARIO

    path = tmp_path / "sharing.yaml"
    path.write_text(scenario_text or SHARING_SCENARIO, encoding="utf-8")
    action, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "exchange", action, str(path), "--bootstrap", plane.bootstrap, *rest],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_workflow_commands_print_the_routers_verdict_and_exit_1_on_a_refusal(plane, tmp_path):
    """Issue 14 item 4: a refused approval used to print success and exit 0."""
    refused = _workflow_cli(plane, tmp_path, "approve", "--consumer", "b", "--entry", "cond", "--as", "a")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr  # one line
    assert "refused" in refused.stderr and "only the provider 'prov' of 'cond' may approve; 'a' tried" in refused.stderr
    undeclared = _workflow_cli(plane, tmp_path, "apply", "--consumer", "c", "--entry", "cond", "--purpose", "测试")
    assert undeclared.returncode == 1
    assert "'c' has no subscription to 'cond' in the scenario" in undeclared.stderr
    # an accepted action says the application's new state
    revoke = _workflow_cli(plane, tmp_path, "revoke", "--consumer", "b", "--entry", "cond", "--reason", "测试结束")
    if revoke.returncode == 1:  # not approved at this point of the module: bring it there first
        for action, *extra in (("apply", "--purpose", "测试"), ("review",), ("approve",)):
            step = _workflow_cli(plane, tmp_path, action, "--consumer", "b", "--entry", "cond", *extra)
            assert step.returncode in (0, 1), step.stderr
        revoke = _workflow_cli(plane, tmp_path, "revoke", "--consumer", "b", "--entry", "cond", "--reason", "测试结束")
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    assert "revoke: b.cond by prov: accepted, now revoked" in revoke.stdout
    applied = _workflow_cli(plane, tmp_path, "apply", "--consumer", "b", "--entry", "cond", "--purpose", "测试")
    assert applied.returncode == 0 and "now submitted" in applied.stdout, applied.stderr
    # fire and forget: published, no verdict awaited
    sent = _workflow_cli(plane, tmp_path, "review", "--consumer", "b", "--entry", "cond", "--no-wait")
    assert sent.returncode == 0 and "not waiting for the verdict" in sent.stdout, sent.stderr
    # the refusals are audited as before
    rows = [a for a in await audit_rows(plane) if a["decision"] == "refused"]
    assert any("'c' has no subscription" in a["reason"] for a in rows)


async def test_a_workflow_command_with_no_router_to_answer_exits_2_after_its_timeout(plane, tmp_path):
    """No router for the platform: the command says so once its timeout is over (exit 2: could not check)."""
    from .harness import SHARING_SCENARIO

    other = SHARING_SCENARIO.replace("platform: {id: t1,", "platform: {id: t9,")
    started = time.monotonic()
    done = _workflow_cli(plane, tmp_path, "apply", "--consumer", "b", "--entry", "cond", "--purpose", "测试", "--timeout", "1", scenario_text=other)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no verdict on dx.t9.verdicts within 1 s" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
