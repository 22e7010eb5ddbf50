"""The run controller: broker, topics, router workers, consumers, producers, result.

It starts every process itself, watches them through their status files, and ends the
run only when every produced record is accounted for (or the drain time runs out), so
the conservation check speaks about the whole run. Any child or broker death, and any
crash a child reports from inside while it lives on (a Faust agent, a task, a thread:
``exchange/runner/processes.py``), fails the run at once with the reason, except the deaths a
``--chaos`` schedule causes: those processes are restarted (``exchange/runner/faults.py``). No
process outlives the controller.
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

import orjson

from schemas.results import FaultResult, Result, RunInfo
from schemas.scenario import Scenario

from exchange.kafka import brokers

from exchange.runner import chaos

from exchange import metrics
from exchange.kafka.tansu import EmbeddedBroker
from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.router.faust_bulk import FETCH_MAX_WAIT_MS
from exchange.runner.faults import FaultInjector
from exchange.runner.processes import CRASHED, spawn, terminate
from exchange.results.build import Reports, build_result, expected_outcomes
from exchange.results.slos import judge
from exchange.runner.status import StatusReader
from exchange.kafka.topics import changelog_plan, create_router_internal_topics, create_topics, ingress_topics, topic_plan
from exchange.runner.warmup import SCHEDULE_FILE, warmup_seconds

POLL_S = 0.2


class RunFailed(ExchangeError, RuntimeError):
    """The run could not complete; the message says what died, crashed or timed out (exit code 1)."""

    exit_code = EXIT_FAILED
    label = "run failed"


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
    fetch_wait_ms: int | None = None  # routers' fetch wait; None: see default_fetch_wait
    chaos: str | None = None  # a --chaos spec (exchange/runner/chaos.py); checked before anything starts
    broker: str = "tansu"  # the broker the run starts without --bootstrap: tansu, kafka, kafka:3 (exchange/kafka/brokers.py)
    warmup: float | None = None  # seconds; None: the scenario's load.warmup, else the default (exchange/runner/warmup.py)
    broker_instance: Any = None  # a broker of kind ``broker`` the caller started: the run uses it and leaves it running


def parse_chaos(options: RunOptions, duration: float) -> list[chaos.Fault]:
    """The run's faults; raises :class:`chaos.ChaosError` for a spec that cannot run."""
    if not options.chaos:
        return []
    scenario = options.scenario
    return chaos.parse(
        options.chaos, duration=duration, workers=options.workers,
        departments={s.consumer for s in scenario.subscriptions},
        broker=None if options.bootstrap else chaos.BrokerHandle(*brokers.parse(options.broker)),
        restartable_consumers=not scenario.reactions and not scenario.workflows,
    )


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
    faults: list[str] = field(default_factory=list)  # what the chaos schedule did so far


@dataclass
class _Child:
    """A child process; after a restart (``--chaos``) the same name, files and reader go on
    with a new process, and status lines tell the incarnations apart by their pid."""

    name: str
    proc: subprocess.Popen
    status: StatusReader
    log: Path
    argv: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # every incarnation, in order
    last_stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # by pid

    @classmethod
    def spawn(cls, run_dir: Path, name: str, module_args: list[str]) -> _Child:
        """``python -m <module_args…> --status RUN_DIR/NAME.jsonl``, logging to RUN_DIR/NAME.log."""
        status, log = run_dir / f"{name}.jsonl", run_dir / f"{name}.log"
        argv = [sys.executable, "-m", *module_args, "--status", str(status)]
        proc = spawn(argv, log_path=log)
        return cls(name, proc, StatusReader(status), log, argv, pids=[proc.pid])

    def restart(self) -> None:
        """Start the same command again (the old process must be gone); files are appended to."""
        self.proc = spawn(self.argv, log_path=self.log)
        self.pids.append(self.proc.pid)

    def read(self) -> list[dict[str, Any]]:
        new = self.status.read()
        for e in new:
            if e["event"] == "stats":
                self.last_stats[e.get("pid", 0)] = e
            else:
                self.events.append(e)
        return new

    def current(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events of the running incarnation (an old one's last lines may come late)."""
        return [e for e in events if e.get("pid", self.proc.pid) == self.proc.pid]

    def last(self, event: str) -> dict[str, Any] | None:
        pid = self.proc.pid
        return next((e for e in reversed(self.events) if e["event"] == event and e.get("pid", pid) == pid), None)

    def reports(self) -> list[dict[str, Any]]:
        """Per incarnation, its final report, or its last stats line if it was killed first."""
        out = []
        for pid in self.pids:
            final = next((e for e in reversed(self.events) if e["event"] == "final" and e.get("pid") == pid), None)
            if final is not None or pid in self.last_stats:
                out.append(final or self.last_stats[pid])
        return out

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


async def run(options: RunOptions, on_progress: Callable[[Progress], None] = lambda p: None,
              say: Callable[[str], None] | None = None) -> tuple[Result, Path]:
    """Run a scenario end to end; returns the result and the run directory.

    ``say`` takes the controller's informational lines (its metrics port; default stderr),
    so a live view can print them above itself. Raises :class:`RunFailed` when a process
    dies or crashes, and the :class:`~exchange.errors.ExchangeError` of what could not be
    set up (no broker, topics with other partitions) before anything starts.
    """
    scenario = options.scenario
    duration = options.duration if options.duration is not None else scenario.load.duration
    faults = parse_chaos(options, duration)
    warmup_s = warmup_seconds(options.warmup, scenario.load.warmup, duration)  # WarmupError before anything starts
    run_dir = options.out or default_run_dir(scenario)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scenario.json").write_text(scenario.model_dump_json(indent=2), encoding="utf-8")  # the record of the run
    scenario_json = run_dir / "scenario.runtime.json"  # what the processes read: live entries only
    scenario_json.write_text(scenario.runtime_json(), encoding="utf-8")
    progress = Progress(duration=duration)
    broker = None if options.bootstrap else options.broker_instance or brokers.make(options.broker, log_path=run_dir / "broker.log")
    kind = broker.kind if broker is not None else None
    children: list[_Child] = []
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run_id = secrets.token_hex(4)
    sd_file = None
    injector: FaultInjector | None = None
    stack = contextlib.ExitStack()
    try:
        if broker is not None:
            try:
                await broker.astart()
            except brokers.BrokerError as exc:
                raise RunFailed(f"could not start the broker ({options.broker}): {exc}") from None
        bootstrap = options.bootstrap or broker.bootstrap
        progress.phase = "creating topics"
        on_progress(progress)
        await create_topics(bootstrap, topic_plan(scenario), check=changelog_plan(scenario),
                            replication_factor=broker.replication_factor if broker else 1)
        if kind == "kafka":  # Faust's own topics too: a router racing Kafka's metadata for them can hang
            await create_router_internal_topics(bootstrap, scenario, broker.replication_factor)
        sd_file = metrics.expose("controller", "0", scenario, run_dir, 0, run_id, say=say)
        p = scenario.platform.id
        metrics.RUN_DURATION_SECONDS.labels(p).set(duration)

        def start(name: str, module: str, *args: str) -> _Child:
            child = _Child.spawn(run_dir, name, [module, "--scenario", str(scenario_json), "--bootstrap", bootstrap,
                                                 "--run-id", run_id, *args])
            children.append(child)
            return child

        progress.phase = "starting router"
        on_progress(progress)
        names = _router_names(scenario, options.workers)
        fetch_wait_ms = options.fetch_wait_ms or brokers.fetch_wait_ms(kind) or default_fetch_wait(len(names))
        routers = [
            start(name, "exchange.router", "--worker", str(i), "--platform", hub, "--datadir", str(run_dir / f"{name}-data"),
                  "--fetch-wait-ms", str(fetch_wait_ms), *(["--no-declare-topics"] if kind == "kafka" else []))
            for hub, i, name in names
        ]
        # --chaos addresses router workers by number: those of the first hub (the main one in a cascade)
        workers_by_id = {str(i): r for (hub, i, _), r in zip(names, routers) if hub == names[0][0]}
        chaos_args: list[str] = []
        if faults:  # resumable after a kill, and pausable per department
            chaos_args = ["--checkpoint", str(run_dir / "consumers.checkpoint"), "--pause-file", str(run_dir / "consumers.paused")]
        # long-poll on Kafka (the consumers' own default is tuned for Tansu)
        long_poll = ["--fetch-wait-ms", str(brokers.fetch_wait_ms(kind))] if brokers.fetch_wait_ms(kind) else []
        schedule = ["--schedule-file", str(run_dir / SCHEDULE_FILE)]  # the warm-up's end, written by the producers
        (run_dir / SCHEDULE_FILE).unlink(missing_ok=True)
        consumers = start("consumers", "consumers", "--seed", str(options.seed), *chaos_args, *long_poll, *schedule)
        await _wait_ready([*routers, consumers], broker, brokers.ready_timeout(kind, options.ready_timeout))
        router_ready = [r.last("ready")["seconds"] for r in routers]

        progress.phase = "publishing"
        producers = start("producers", "producers", "--duration", str(duration), "--seed", str(options.seed),
                          "--rate-multiplier", str(options.rate_multiplier), "--warmup", str(warmup_s), *schedule)
        reports = Reports(producers={}, consumers={})
        # counts start at zero when publishing starts
        reports.publish_samples.append((0.0, 0))
        reports.error_samples.append((0.0, 0))
        reports.consume_samples.append((0.0, 0))
        t0 = time.monotonic()
        if faults:
            # what was done when, and every lag sample the recovery times come from
            chaos_log = stack.enter_context(open(run_dir / "chaos.jsonl", "ab", buffering=0))
            injector = FaultInjector(faults, workers_by_id, consumers, broker, run_dir / "consumers.paused",
                                     ingress_topics=ingress_topics(scenario))
        lag_samples: list[chaos.LagSample] = []
        lag_known = True
        interval_p99: float | None = None
        drain_started: float | None = None
        reactions: dict[str, int] = {}
        routed: dict[str, int] = {}  # ingress records not yet taken in, per router worker
        pending_reactions = 0
        while True:
            await asyncio.sleep(POLL_S)
            if injector is not None:
                for said in injector.step(time.monotonic() - t0):
                    progress.faults.append(f"{time.monotonic() - t0:5.1f} s {said}")
                    chaos_log.write(orjson.dumps({"t": round(time.monotonic() - t0, 3), "action": said}) + b"\n")
            _check_alive(children, broker, allow_exit={producers.name})
            for e in producers.read():
                if e["event"] == "stats":
                    reports.publish_samples.append((e["t"], e["produced"]))
                    reports.error_samples.append((e["t"], e["retried"]))
                    reports.publish_intervals.append(e)
                    progress.produced = e["produced"]
                elif e["event"] == "error":
                    raise RunFailed(f"producers failed: {e['message']}\n{producers.tail()}")
            for e in consumers.current(consumers.read()):
                if e["event"] == "stats":
                    t = time.monotonic() - t0
                    if injector is not None:
                        injector.reported(consumers.name, t, e["pid"])
                    lag_known = e.get("lag_known", True)
                    # a restarted process goes on from its checkpoint, a little behind its last line
                    reports.consume_samples.append((t, max(e["received"], reports.consume_samples[-1][1])))
                    reports.consume_intervals.append(e)
                    reports.backlog.append(sum(routed.values()))
                    progress.delivered, progress.denied = e["delivered"], e["denied"]
                    progress.dead_lettered, progress.duplicates = e["dead_lettered"], e["duplicates"]
                    reactions, pending_reactions = e.get("reactions_produced", {}), e.get("reactions_pending", 0)
                    progress.consumer_lag = sum(e.get("lag", {}).values())
                    progress.p99_ms = e.get("e2e", {}).get("99pct", progress.p99_ms)
                    interval_p99 = e.get("e2e", {}).get("99pct")  # None: nothing delivered in the interval
                    progress.conflicts = e.get("conflicts", 0)
            for r in routers:
                for e in r.current(r.read()):
                    if e["event"] == "stats":
                        routed[r.name] = e.get("lag", 0)
                        progress.router_lag = sum(routed.values())
                        if injector is not None:
                            injector.reported(r.name, time.monotonic() - t0, e["pid"], e.get("batches", 0))
            progress.elapsed = time.monotonic() - t0
            if injector is not None:
                pids = {c.name: c.proc.pid for c in [*routers, consumers]}
                complete = lag_known and injector.complete(progress.elapsed, pids)
                lag_samples.append(chaos.LagSample(progress.elapsed, progress.router_lag + progress.consumer_lag, complete,
                                                   interval_p99))
                chaos_log.write(orjson.dumps({"t": round(progress.elapsed, 3), "router_lag": progress.router_lag,
                                              "consumer_lag": progress.consumer_lag, "complete": complete,
                                              "p99_ms": interval_p99}) + b"\n")
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
                if injector is not None:  # every fault over, and counts from the running consumers
                    settled = settled and injector.done and consumers.last_stats.get(consumers.proc.pid) is not None
                if settled and injector is not None:
                    # everything accounted for: nothing is left anywhere, whatever the last reports said
                    lag_samples.append(chaos.LagSample(time.monotonic() - t0, 0, True))
                if settled or time.monotonic() - drain_started > options.drain_timeout:
                    break
            elif producers.proc.poll() is not None:
                raise RunFailed(f"producers exited ({producers.proc.returncode}) without a final report\n{producers.tail()}")
            on_progress(progress)
        drain_s = time.monotonic() - drain_started
        end_s = time.monotonic() - t0
        reports.producers = final
        if injector is not None:
            injector.release()

        progress.phase = "collecting"
        on_progress(progress)
        reports.consumers = await _stop_for_final(consumers)
        for r in routers:
            await _stop_for_final(r)
        _check_crashed([consumers, producers, *routers])  # a crash logged since the last look fails the run too
        # every incarnation's figures: a killed worker's last stats stand in for its final report
        reports.routers = [report for r in routers for report in r.reports()]
        info = RunInfo(
            scenario=scenario.name,
            run_id=run_id,
            seed=options.seed,
            duration_s=duration,
            started_at=started_at,
            bootstrap=bootstrap,
            embedded_broker=broker is not None,
            router_workers=options.workers,
            hubs=list(scenario.hubs_in_use),
            fetch_wait_ms=fetch_wait_ms,
            warmup_s=warmup_s,
            router_ready_s=router_ready,
            drain_s=round(drain_s, 3),
            dead_letters_by_reason=_dead_reasons(reports.consumers),
            broker=broker.describe() if broker is not None else None,
            broker_start_s=broker.start_seconds if broker is not None else None,
        )
        where = broker.describe() if broker is not None else f"Kafka at {bootstrap}"
        result = build_result(scenario, reports, info, driver=f"faust-bulk-router+aiokafka on {where}")
        if injector is not None:
            result.faults = _fault_results(injector, lag_samples, reports.publish_intervals, end_s)
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
        stack.close()
        if injector is not None:
            injector.release()  # a stopped process cannot even take its SIGTERM
        grace = 5.0 if broker is None or broker.running else 1.0
        await asyncio.gather(*(asyncio.to_thread(terminate, c.proc, grace) for c in children))
        if broker is not None and broker is not options.broker_instance:
            await broker.astop()
        metrics.remove_sd_target(sd_file)


def default_fetch_wait(routers: int) -> int:
    """10 ms per three router processes, at most 50 ms.

    The embedded broker answers an empty fetch only when its wait ends, so every router
    polls ~1000/wait times a second whatever the load, and each poll costs the router
    and the broker CPU. Measured on 2 cores: 13 hubs at 10 ms spent ~75 % of a core in
    their routers and ~80 % in the broker, starving the producers; at 50 ms they kept
    up. Scaling the wait with the routers bounds their polling at ~300 fetches/s.
    """
    return min(50, FETCH_MAX_WAIT_MS * -(-routers // 3))


def _router_names(scenario: Scenario, workers: int) -> list[tuple[str, int, str]]:
    """(hub, worker, process name) for every router worker: ``workers`` per hub in use."""
    hubs = scenario.hubs_in_use
    if hubs == (scenario.platform.id,):
        return [(hubs[0], i, f"router-{i}") for i in range(workers)]
    return [(hub, i, f"router-{hub}-{i}") for hub in hubs for i in range(workers)]


def _fault_results(injector: FaultInjector, samples: list[chaos.LagSample], publish_intervals: list[dict[str, Any]],
                   end_s: float) -> list[FaultResult]:
    out = []
    for entry in injector.injected:
        f = entry.fault
        rec = chaos.recovery(f, samples, until_s=end_s)
        window_end = f.end_s + rec.recovered_after_s if rec.recovered_after_s is not None else end_s
        # producer intervals overlapping the fault: does publishing show the stall?
        delays = [i["publish_delay_us"]["max"] / 1000 for i in publish_intervals
                  if f.at_s <= i["t"] <= window_end + 1 and i.get("publish_delay_us")]
        out.append(FaultResult(
            spec=f.label, kind=f.kind, target=f.target, at_s=f.at_s, duration_s=f.duration_s,
            injected_at_s=entry.at_s, baseline_lag=rec.baseline_lag, peak_lag=rec.peak_lag,
            recovered_after_s=rec.recovered_after_s, node=entry.node, node_chosen=entry.chosen,
            lag_recovered_after_s=rec.lag_recovered_after_s, latency_recovered_after_s=rec.latency_recovered_after_s,
            baseline_p99_ms=rec.baseline_p99_ms, peak_p99_ms=rec.peak_p99_ms, publish_delay_max_ms=round(max(delays), 1) if delays else None,
        ))
    return out


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
    """RunFailed when the broker or a child died, or a child reported a crash inside it
    (read from the status lines read so far)."""
    _check_crashed(children)
    if broker is not None and not broker.running:
        what = ("the embedded broker died", "its storage is memory, so the run's records are gone") if broker.kind == "tansu" \
            else (f"{broker.describe()}: a node died", "the run cannot go on without it")
        raise RunFailed(f"{what[0]} (exit code {broker.returncode}); {what[1]}.\n{broker.tail_log()}")
    for child in children:
        code = child.proc.poll()
        if code is not None and (child.name not in allow_exit or code != 0):
            raise RunFailed(f"{child.name} exited with code {code}; last lines of {child.log}:\n{child.tail()}")


def _check_crashed(children: list[_Child]) -> None:
    """RunFailed for the first crash a child reported (an agent, task or thread of a process
    that lives on: ``exchange/runner/processes.py``'s :func:`report_crashes`)."""
    for child in children:
        crash = next((e for e in child.events if e["event"] == CRASHED), None)
        if crash is not None:
            raise RunFailed(f"{child.name} (pid {crash.get('pid', '?')}): {crash.get('message', 'crashed')}; "
                            f"see {child.log}")


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
