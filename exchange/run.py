"""The run controller: broker, topics, router workers, consumers, producers, result.

It starts every process itself, watches them through their status files, and ends the
run only when every produced record is accounted for (or the drain time runs out), so
the conservation check speaks about the whole run. Any child or broker death fails the
run at once with the reason; no process outlives the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.results import Result, RunInfo
from schemas.scenario import Scenario

from . import metrics
from .broker import EmbeddedBroker
from .processes import spawn, terminate
from .results import Reports, build_result, expected_outcomes
from .slos import judge
from .status import StatusReader
from .topology import create_topics, topic_plan

POLL_S = 0.2


class RunFailed(RuntimeError):
    """The run could not complete; the message says what died or timed out."""


@dataclass
class RunOptions:
    scenario: Scenario
    duration: float | None = None
    out: Path | None = None
    bootstrap: str | None = None
    seed: int = 1
    workers: int = 1
    drain_timeout: float = 30.0
    ready_timeout: float = 60.0
    rate_multiplier: float = 1.0


@dataclass
class Progress:
    """A snapshot for the live display."""

    phase: str = "starting"
    elapsed: float = 0.0
    duration: float = 0.0
    produced: int = 0
    publish_rate: float = 0.0
    consume_rate: float = 0.0
    delivered: int = 0
    denied: int = 0
    dead_lettered: int = 0
    expected: int = 0
    duplicates: int = 0
    router_lag: int = 0
    consumer_lag: int = 0
    p99_ms: float = 0.0  # end to end, last interval
    conflicts: int = 0


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen
    status: StatusReader
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def spawn(cls, run_dir: Path, name: str, module_args: list[str]) -> _Child:
        """``python -m <module_args…> --status RUN_DIR/NAME.jsonl``, logging to RUN_DIR/NAME.log."""
        status, log = run_dir / f"{name}.jsonl", run_dir / f"{name}.log"
        proc = spawn([sys.executable, "-m", *module_args, "--status", str(status)], log_path=log)
        return cls(name, proc, StatusReader(status), log)

    def read(self) -> list[dict[str, Any]]:
        new = self.status.read()
        self.events.extend(e for e in new if e["event"] != "stats")
        return new

    def last(self, event: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["event"] == event), None)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def default_run_dir(scenario: Scenario) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{scenario.name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


async def run(options: RunOptions, on_progress: Callable[[Progress], None] = lambda p: None) -> tuple[Result, Path]:
    """Run a scenario end to end; returns the result and the run directory."""
    scenario = options.scenario
    duration = options.duration if options.duration is not None else scenario.load.duration
    run_dir = options.out or default_run_dir(scenario)
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario_json = run_dir / "scenario.json"
    scenario_json.write_text(scenario.model_dump_json(indent=2), encoding="utf-8")
    progress = Progress(duration=duration)
    broker = None if options.bootstrap else EmbeddedBroker(log_path=run_dir / "broker.log")
    children: list[_Child] = []
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run_id = secrets.token_hex(4)
    sd_file = None
    try:
        if broker is not None:
            await broker.astart()
        bootstrap = options.bootstrap or broker.bootstrap
        sd_file = metrics.expose("controller", "0", scenario, run_dir, 0, run_id)
        p = scenario.platform.id
        metrics.RUN_DURATION_SECONDS.labels(p).set(duration)
        progress.phase = "creating topics"
        on_progress(progress)
        await create_topics(bootstrap, topic_plan(scenario))

        def start(name: str, module: str, *args: str) -> _Child:
            child = _Child.spawn(run_dir, name, [module, "--scenario", str(scenario_json), "--bootstrap", bootstrap,
                                                 "--run-id", run_id, *args])
            children.append(child)
            return child

        progress.phase = "starting router"
        on_progress(progress)
        routers = [
            start(name, "exchange.router", "--worker", str(i), "--platform", hub, "--datadir", str(run_dir / f"{name}-data"))
            for hub, i, name in _router_names(scenario, options.workers)
        ]
        consumers = start("consumers", "consumers", "--seed", str(options.seed))
        await _wait_ready([*routers, consumers], broker, options.ready_timeout)
        router_ready = [r.last("ready")["seconds"] for r in routers]

        progress.phase = "publishing"
        producers = start("producers", "producers", "--duration", str(duration), "--seed", str(options.seed),
                          "--rate-multiplier", str(options.rate_multiplier))
        reports = Reports(producers={}, consumers={})
        # counts start at zero when publishing starts
        reports.publish_samples.append((0.0, 0))
        reports.error_samples.append((0.0, 0))
        reports.consume_samples.append((0.0, 0))
        t0 = time.monotonic()
        drain_started: float | None = None
        reactions: dict[str, int] = {}
        routed: dict[str, int] = {}  # ingress records not yet taken in, per router worker
        pending_reactions = 0
        while True:
            await asyncio.sleep(POLL_S)
            _check_alive(children, broker, allow_exit={producers.name})
            for e in producers.read():
                if e["event"] == "stats":
                    reports.publish_samples.append((e["t"], e["produced"]))
                    reports.error_samples.append((e["t"], e["retried"]))
                    reports.publish_intervals.append(e)
                    progress.produced = e["produced"]
                elif e["event"] == "error":
                    raise RunFailed(f"producers failed: {e['message']}\n{producers.tail()}")
            for e in consumers.read():
                if e["event"] == "stats":
                    t = time.monotonic() - t0
                    reports.consume_samples.append((t, e["received"]))
                    reports.consume_intervals.append(e)
                    reports.backlog.append(sum(routed.values()))
                    progress.delivered, progress.denied = e["delivered"], e["denied"]
                    progress.dead_lettered, progress.duplicates = e["dead_lettered"], e["duplicates"]
                    reactions, pending_reactions = e.get("reactions_produced", {}), e.get("reactions_pending", 0)
                    progress.consumer_lag = sum(e.get("lag", {}).values())
                    progress.p99_ms = e.get("e2e", {}).get("99pct", progress.p99_ms)
                    progress.conflicts = e.get("conflicts", 0)
            for r in routers:
                for e in r.read():
                    if e["event"] == "stats":
                        routed[r.name] = e.get("lag", 0)
                        progress.router_lag = sum(routed.values())
            progress.elapsed = time.monotonic() - t0
            _progress_metrics(p, progress)
            progress.publish_rate = _last_rate(reports.publish_samples)
            progress.consume_rate = _last_rate(reports.consume_samples)
            final = producers.last("final")
            if final is not None:
                produced = Counter(final["produced"]) + Counter(reactions)
                progress.produced = sum(produced.values())
                progress.expected = sum(expected_outcomes(scenario, produced).values())
                if drain_started is None:
                    drain_started = time.monotonic()
                    # the last, partial interval of publishing
                    if not reports.publish_samples or reports.publish_samples[-1][0] < final["elapsed_s"]:
                        reports.publish_samples.append((final["elapsed_s"], sum(final["produced"].values())))
                        reports.error_samples.append((final["elapsed_s"], final["retried"]))
                    progress.phase = "draining"
                accounted = progress.delivered + progress.denied + progress.dead_lettered
                settled = accounted >= progress.expected and not pending_reactions
                if settled or time.monotonic() - drain_started > options.drain_timeout:
                    break
            elif producers.proc.poll() is not None:
                raise RunFailed(f"producers exited ({producers.proc.returncode}) without a final report\n{producers.tail()}")
            on_progress(progress)
        drain_s = time.monotonic() - drain_started
        reports.producers = final

        progress.phase = "collecting"
        on_progress(progress)
        reports.consumers = await _stop_for_final(consumers)
        reports.routers = [await _stop_for_final(r) for r in routers]
        info = RunInfo(
            scenario=scenario.name,
            run_id=run_id,
            seed=options.seed,
            duration_s=duration,
            started_at=started_at,
            bootstrap=bootstrap,
            embedded_broker=broker is not None,
            router_workers=options.workers,
            router_ready_s=router_ready,
            drain_s=round(drain_s, 3),
            dead_letters_by_reason=_dead_reasons(reports.consumers),
        )
        where = "Tansu (embedded, memory)" if broker is not None else f"Kafka at {bootstrap}"
        result = build_result(scenario, reports, info, driver=f"faust-bulk-router+aiokafka on {where}")
        result.slos = judge(scenario, result, {name: f["e2e"] for name, f in reports.consumers.get("flows", {}).items()})
        for verdict in result.slos:
            metrics.SLO_STATUS.labels(p, verdict.name).set(1 if verdict.passed else 0)
        (run_dir / "result.json").write_text(result.model_dump_json(indent=2, by_alias=True), encoding="utf-8")
        metrics.SLO_STATUS.labels(p, "conservation").set(1 if result.conservation.ok else 0)
        metrics.RUN_UNACCOUNTED_OUTCOMES.labels(p).set(result.counts.unaccounted)
        progress.phase = "done"
        on_progress(progress)
        return result, run_dir
    finally:
        # All at once, and briefly when the broker is gone: a child cannot finish
        # cleanly without it, and nobody should wait on it.
        grace = 5.0 if broker is None or broker.running else 1.0
        await asyncio.gather(*(asyncio.to_thread(terminate, c.proc, grace) for c in children))
        if broker is not None:
            await broker.astop()
        metrics.remove_sd_target(sd_file)


def _router_names(scenario: Scenario, workers: int) -> list[tuple[str, int, str]]:
    """(hub, worker, process name) for every router worker: ``workers`` per hub in use."""
    hubs = scenario.hubs_in_use
    if hubs == (scenario.platform.id,):
        return [(hubs[0], i, f"router-{i}") for i in range(workers)]
    return [(hub, i, f"router-{hub}-{i}") for hub in hubs for i in range(workers)]


def _progress_metrics(platform: str, progress: Progress) -> None:
    accounted = progress.delivered + progress.denied + progress.dead_lettered
    metrics.RUN_ELAPSED_SECONDS.labels(platform).set(progress.elapsed)
    metrics.RUN_PRODUCED_RECORDS.labels(platform).set(progress.produced)
    metrics.RUN_EXPECTED_OUTCOMES.labels(platform).set(progress.expected)
    metrics.RUN_ACCOUNTED_OUTCOMES.labels(platform).set(accounted)
    metrics.RUN_UNACCOUNTED_OUTCOMES.labels(platform).set(max(0, progress.expected - accounted))


def _dead_reasons(consumers: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason, n in consumers.get("dead_letters", []):
        out[reason] = out.get(reason, 0) + n
    return out


def _last_rate(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2:
        return 0.0
    (t0, c0), (t1, c1) = samples[-2], samples[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _check_alive(children: list[_Child], broker: EmbeddedBroker | None, allow_exit: set[str]) -> None:
    if broker is not None and not broker.running:
        raise RunFailed(
            f"the embedded broker died (exit code {broker.returncode}); its storage is memory, so the run's records are gone.\n"
            f"{broker.tail_log()}"
        )
    for child in children:
        code = child.proc.poll()
        if code is not None and (child.name not in allow_exit or code != 0):
            raise RunFailed(f"{child.name} exited with code {code}; last lines of {child.log}:\n{child.tail()}")


async def _wait_ready(children: list[_Child], broker: EmbeddedBroker | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = {c.name for c in children}
    while waiting:
        _check_alive(children, broker, allow_exit=set())
        for c in children:
            c.read()
            if c.last("error"):
                raise RunFailed(f"{c.name} failed: {c.last('error')['message']}\n{c.tail()}")
            if c.last("ready"):
                waiting.discard(c.name)
        if time.monotonic() > deadline:
            raise RunFailed(f"not ready after {timeout:.0f} s: {sorted(waiting)}")
        await asyncio.sleep(0.05)


async def _stop_for_final(child: _Child, timeout: float = 20.0) -> dict[str, Any]:
    """SIGTERM a child and wait for its final report."""
    with contextlib.suppress(ProcessLookupError):
        child.proc.terminate()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.read()
        final = child.last("final")
        if final is not None:
            return final
        if child.proc.poll() is not None:
            child.read()
            final = child.last("final")
            if final is not None:
                return final
            raise RunFailed(f"{child.name} exited ({child.proc.returncode}) without a final report\n{child.tail()}")
        await asyncio.sleep(0.05)
    raise RunFailed(f"{child.name} gave no final report within {timeout:.0f} s")
