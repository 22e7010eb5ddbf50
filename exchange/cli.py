"""The ``exchange`` command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from schemas.scenario import Scenario

from . import scenario_file
from .scenario_file import ScenarioError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulate government data-sharing exchange platforms (政务数据共享交换平台) on Kafka.",
)
# Piped output (CI logs, files) gets room for the summary table instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


BrokerOption = Annotated[str, typer.Option(
    "--broker", help="the broker the run starts (without --bootstrap): tansu (embedded, zero install), "
                     "kafka (Apache Kafka, one KRaft node) or kafka:3 (three nodes, RF 3, min ISR 2); Kafka needs Java 17+ "
                     "and `exchange kafka fetch`")]


def _check_broker(spec: str, bootstrap: Optional[str] = None) -> str:
    """A --broker value that can start here, else one line on stderr and exit 2."""
    from .brokers import BrokerSpecError, parse
    from .kafka_broker import KafkaUnavailable, locate

    try:
        kind, _ = parse(spec)
        if kind == "kafka" and bootstrap is None:
            locate()
    except (BrokerSpecError, KafkaUnavailable) as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return spec


def _load(name_or_path: str, seed: int = 1) -> Scenario:
    try:
        return scenario_file.load(name_or_path, seed)
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="YAML path or preset name (see `exchange scenarios`)")],
    duration: Annotated[Optional[float], typer.Option(help="seconds of publishing (default: the scenario's)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="directory for result.json and logs (default: runs/NAME-TIME)")] = None,
    bootstrap: Annotated[Optional[str], typer.Option(help="HOST:PORT of an existing Kafka; default starts the embedded broker")] = None,
    seed: Annotated[int, typer.Option(help="seed for the synthetic data")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="router worker processes")] = 1,
    drain_timeout: Annotated[float, typer.Option(help="seconds to wait after publishing for every record to be accounted for")] = 30.0,
    fail_on_slo: Annotated[bool, typer.Option("--fail-on-slo", help="exit 1 when any of the scenario's SLOs fails")] = False,
    rate_multiplier: Annotated[float, typer.Option(min=0.0001, help="scale every rate of the scenario")] = 1.0,
    fetch_wait_ms: Annotated[Optional[int], typer.Option(min=1, max=5000, help=(
        "how long a router's fetch waits for data; the embedded broker answers an empty fetch only when the wait ends, "
        "so this is the latency an idle hop adds, against the CPU each hub spends polling "
        "(default: 10 ms per three router processes, at most 50)"))] = None,
    find_max_rate: Annotated[bool, typer.Option("--find-max-rate", help="search the highest multiple of the rates that holds (trials of --duration s, default 10)")] = False,
    slo_p99: Annotated[Optional[float], typer.Option(help="p99 end-to-end objective (ms) for --find-max-rate; default: the scenario's e2e_p99_ms SLO, else 1000")] = None,
    chaos: Annotated[Optional[str], typer.Option(
        help="faults to inject, comma-separated KIND[:TARGET]@TIME[+DURATION], times after publishing starts "
             "(20s, 1.5s, 500ms): kill-router[:WORKER]@T, pause-router[:WORKER]@T+D, kill-consumers@T, "
             "pause-consumer:DEPT@T+D, pause-broker@T+D (embedded broker only). "
             "E.g. --chaos kill-router@5s,pause-broker@10s+3s")] = None,
    broker_kind: BrokerOption = "tansu",
) -> None:
    """Run a scenario end to end and check that every record is accounted for."""
    from .chaos import ChaosError
    from .display import LiveProgress, fault_table, summary_table
    from .run import RunFailed, RunOptions, parse_chaos
    from .run import run as run_scenario

    loaded = _load(scenario, seed)
    options = RunOptions(loaded, duration, out, bootstrap, seed, workers, drain_timeout, rate_multiplier=rate_multiplier,
                         chaos=chaos, fetch_wait_ms=fetch_wait_ms, broker=_check_broker(broker_kind, bootstrap))
    try:
        parse_chaos(options, duration if duration is not None else loaded.load.duration)
    except ChaosError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if find_max_rate:
        if chaos:
            err.print("[red]error[/red] --chaos cannot be combined with --find-max-rate", highlight=False)
            raise typer.Exit(2)
        _find_max_rate(options, slo_p99)
        return
    try:
        with LiveProgress(console) as live:
            result, run_dir = _run_async(run_scenario(options, live.update))
    except RunFailed as exc:
        err.print(f"[red]run failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(summary_table(result))
    if result.faults:
        console.print(fault_table(result))
    ok = result.conservation.ok
    console.print(("[green]conservation check passed:[/green] " if ok else "[red]conservation check FAILED:[/red] ") + result.conservation.message)
    for v in result.slos:
        mark = "[green]pass[/green]" if v.passed else "[red]FAIL[/red]"
        measured = "nothing measured" if v.measured is None else f"{v.measured:g}"
        console.print(f"SLO {mark} {v.name}: {v.metric} {v.target}, measured {measured}", highlight=False)
    console.print(f"router ready in {', '.join(f'{s:.1f} s' for s in result.run.router_ready_s)}; result: {run_dir / 'result.json'}")
    slo_failed = fail_on_slo and not all(v.passed for v in result.slos)
    raise typer.Exit(0 if ok and not slo_failed else 1)


def _find_max_rate(options, slo_p99: Optional[float]) -> None:
    from rich.table import Table

    from .maxrate import find_max_rate
    from .run import RunFailed, default_run_dir

    objective = slo_p99 or next((s.max for s in options.scenario.slos if s.metric == "e2e_p99_ms" and s.max), 1000.0)
    out = options.out or default_run_dir(options.scenario).with_name(f"{options.scenario.name}-maxrate")
    out.mkdir(parents=True, exist_ok=True)
    options.out = None
    try:
        found = _run_async(find_max_rate(options, out, objective, options.duration or 10.0,
                                         say=lambda text: err.print(f"[dim]{text}[/dim]")))
    except RunFailed as exc:
        err.print(f"[red]run failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table(title=f"{options.scenario.name}: maximum sustainable rate (p99 ≤ {objective:g} ms, no backlog)")
    for col in ("×", "offered/s", "held", "p99 ms", "drain s", "publish delay p99 ms", "why"):
        table.add_column(col)
    for t in found.trials:
        table.add_row(f"{t.multiplier:g}", f"{t.offered_per_s:,.0f}", "yes" if t.held else "no", f"{t.e2e_p99_ms:.0f}",
                      f"{t.drain_s:.1f}", f"{t.publish_delay_p99_ms:.0f}", t.why)
    console.print(table)
    console.print(f"maximum sustainable: {found.max_multiplier:g}× the scenario's rates = {found.max_rate_per_s:,.0f} records/s")
    (out / "max-rate.json").write_text(json.dumps(found.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(f"trials and figures: {out / 'max-rate.json'}")


def _run_async(coro):
    """asyncio.run, with SIGTERM treated like Ctrl-C so every child is stopped."""

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("[yellow]interrupted: stopped every process of the run[/yellow]")
        raise typer.Exit(130) from None


@app.command()
def bench(
    records: Annotated[int, typer.Option(min=1000, help="records through every path")] = 200_000,
    record_size: Annotated[int, typer.Option(help="bytes per record value")] = 1024,
    workers: Annotated[int, typer.Option(min=1, help="router worker processes")] = 1,
    latency_seconds: Annotated[float, typer.Option(help="seconds of the half-rate latency run")] = 10.0,
    bootstrap: Annotated[Optional[str], typer.Option(help="HOST:PORT of an existing Kafka; default: embedded broker")] = None,
    out: Annotated[Optional[Path], typer.Option(help="directory for logs (default: runs/bench-TIME)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    policy: Annotated[bool, typer.Option("--policy", help="only the decision cost: a 10-item vs the 14,722-item catalogue, no Kafka")] = False,
    find_max: Annotated[bool, typer.Option("--find-max-rate", help="latency at half the live maximum rate, found by search (minutes)")] = False,
    broker_floor: Annotated[bool, typer.Option("--broker-floor", help="only the broker: one aiokafka hop at --floor-rate for --latency-seconds, latency per 5 s window")] = False,
    floor_rate: Annotated[float, typer.Option(min=1, help="records/s of --broker-floor")] = 2000.0,
    broker_kind: BrokerOption = "tansu",
) -> None:
    """Measure the simulator itself: raw pass-through vs the router, producer, consumer."""
    from rich.table import Table

    from .bench import BenchFailed, BenchOptions, run_bench
    from .broker import BrokerError

    say = (lambda text: None) if as_json else (lambda text: err.print(f"[dim]{text}[/dim]"))
    broker_kind = _check_broker(broker_kind, bootstrap) if not policy else broker_kind
    try:
        if policy:
            from .policy_bench import run as run_policy_bench

            figures = run_policy_bench()
        elif broker_floor:
            from .broker_floor import broker_floor as run_broker_floor

            figures = _run_async(run_broker_floor(floor_rate, latency_seconds, record_size, bootstrap, broker_kind))
        else:
            figures = _run_async(run_bench(BenchOptions(records, record_size, workers, bootstrap, out, latency_seconds, find_max,
                                                            broker=broker_kind), say))
    except (BenchFailed, BrokerError) as exc:
        err.print(f"[red]bench failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title="exchange bench", show_header=False, title_justify="left")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail (全程留痕).")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    bootstrap: Annotated[str, typer.Option(help="HOST:PORT of the Kafka holding the audit topic")],
    scenario: Annotated[Optional[str], typer.Argument(help="scenario (for its platform id)")] = None,
    platform: Annotated[Optional[str], typer.Option(help="platform id (instead of a scenario)")] = None,
    topic: Annotated[Optional[str], typer.Option(help="audit topic name (default dx.<platform>.audit)")] = None,
) -> None:
    """Check every hash chain of a platform's audit topic; exit 1 at any broken link."""
    from schemas.envelope import Topics

    from .audit import read_topic, verify

    if topic is None:
        platform_id = platform or (_load(scenario).platform.id if scenario else None)
        if platform_id is None:
            err.print("give a scenario, --platform or --topic")
            raise typer.Exit(2)
        topic = Topics(platform_id).audit
    result = verify(_run_async(read_topic(bootstrap, topic)))
    console.print(f"{topic}: {result.blocks:,} blocks, {result.rows:,} audit records, {len(result.chains)} chains", highlight=False)
    if result.ok:
        console.print("[green]every chain intact[/green]")
        return
    console.print(f"[red]broken:[/red] {result.broken[0]}", highlight=False)
    if len(result.broken) > 1:
        console.print(f"({len(result.broken) - 1} more broken links)")
    raise typer.Exit(1)


def _control(action: str, scenario: str, consumer: str, entry: str, bootstrap: str, actor: Optional[str],
             items: Optional[str] = None, purpose: str = "", valid_for: Optional[float] = None, reason: str = "") -> None:
    """Publish one control event to the platform's control topic."""
    from schemas.applications import PROVIDER_ACTIONS, ControlEvent
    from schemas.envelope import Topics

    from .controlplane import publish_control

    s = _load(scenario)
    if entry not in s.entries:
        err.print(f"entry {entry!r} is not in {s.name}'s catalogue")
        raise typer.Exit(2)
    if consumer not in s.department_ids:
        err.print(f"{consumer!r} is not a department of {s.name}")
        raise typer.Exit(2)
    who = actor or (s.entries[entry].provider if action in PROVIDER_ACTIONS else consumer)
    event = ControlEvent(
        action=action, actor=who, consumer=consumer, entry=entry,
        items=[i.strip() for i in items.split(",")] if items else None,
        purpose=purpose, valid_for_s=valid_for, reason=reason, at_ns=time.time_ns(),
    )
    control = Topics(s.platform_of(s.entries[entry].provider)).control  # the hub the entry is published on
    _run_async(publish_control(bootstrap, control, event))
    console.print(f"{action}: {event.application} by {who} → {control}", highlight=False)


Bootstrap = Annotated[str, typer.Option(help="HOST:PORT of the exchange's Kafka")]
Consumer = Annotated[str, typer.Option(help="the applying (subscribing) department")]
Entry = Annotated[str, typer.Option(help="the catalogue entry")]
Actor = Annotated[Optional[str], typer.Option("--as", help="department acting (default: the consumer for apply, the provider otherwise)")]
ScenarioArg = Annotated[str, typer.Argument(help="scenario (YAML path or preset)")]


@app.command()
def apply(scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap,
          purpose: Annotated[str, typer.Option(help="用途: what the data is for")],
          items: Annotated[Optional[str], typer.Option(help="comma-separated items (default: all)")] = None,
          actor: Actor = None) -> None:
    """File an application (申请) for a conditional entry."""
    _control("apply", scenario, consumer, entry, bootstrap, actor, items=items, purpose=purpose)


@app.command()
def review(scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap, actor: Actor = None) -> None:
    """Take an application under review (the provider)."""
    _control("review", scenario, consumer, entry, bootstrap, actor)


@app.command()
def approve(scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap,
            valid_for: Annotated[Optional[float], typer.Option(help="seconds the approval lasts (default: no end)")] = None,
            actor: Actor = None) -> None:
    """Approve an application under review (审批; only the entry's provider may)."""
    _control("approve", scenario, consumer, entry, bootstrap, actor, valid_for=valid_for)


@app.command()
def reject(scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap,
           reason: Annotated[str, typer.Option(help="why")] = "", actor: Actor = None) -> None:
    """Reject an application."""
    _control("reject", scenario, consumer, entry, bootstrap, actor, reason=reason)


@app.command()
def revoke(scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap,
           reason: Annotated[str, typer.Option(help="why")] = "", actor: Actor = None) -> None:
    """Revoke an approval: delivery stops on the live stream."""
    _control("revoke", scenario, consumer, entry, bootstrap, actor, reason=reason)


@app.command()
def report(
    result: Annotated[Path, typer.Argument(help="a run's result.json (scenario.json beside it adds department names)")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HTML file to write (default: report.html beside RESULT)")] = None,
) -> None:
    """One self-contained HTML page of a run (opens offline): rates, latency, outcomes, flows between departments, SLOs."""
    from .report import ReportError, write_report

    try:
        path = write_report(result, output)
    except ReportError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"report: {path}")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="result.json of design A")],
    b: Annotated[Path, typer.Argument(help="result.json of design B")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write")] = Path("compare.html"),
) -> None:
    """Two runs side by side: a table here, and an HTML page with the same table and overlaid charts."""
    from .compare import run_compare
    from .report import ReportError

    try:
        table, path = run_compare(a, b, output)
    except ReportError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    console.print(table)
    console.print(f"comparison: {path}")


@app.command()
def scenarios() -> None:
    """List the built-in scenario presets."""
    for name in scenario_file.preset_names():
        s = scenario_file.load(name)
        console.print(f"[bold]{name}[/bold]  {s.description}", highlight=False)


@app.command()
def validate(file: Annotated[str, typer.Argument(help="scenario YAML path or preset name")]) -> None:
    """Check a scenario and list every problem with line, column and field."""
    try:
        s = scenario_file.load(file)
    except ScenarioError as exc:
        for problem in exc.problems:
            console.print(str(problem), highlight=False, soft_wrap=True, markup=False)
        err.print(f"{len(exc.problems)} problem(s)")
        raise typer.Exit(1) from None
    console.print(
        f"ok: {escape(s.name)}: {len(s.departments)} departments, {len(s.catalogue)} entries, "
        f"{sum(len(e.items) for e in s.catalogue)} items, {len(s.subscriptions)} subscriptions"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for editors)."""
    console.print_json(json.dumps(Scenario.model_json_schema()))


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="port to listen on (0: a free one); on several Kafka nodes, node 1's")] = 0,
    kind: Annotated[str, typer.Option(help="tansu (embedded, memory storage) or kafka (Apache Kafka, KRaft)")] = "tansu",
    nodes: Annotated[int, typer.Option(min=1, max=5, help="Kafka nodes, each a controller and a broker (3: RF 3, min ISR 2)")] = 1,
    log: Annotated[Optional[Path], typer.Option(help="broker log file (several Kafka nodes: one per node, -N before the suffix)")] = None,
) -> None:
    """Run a broker in the foreground until Ctrl-C; prints its bootstrap address."""
    from . import brokers
    from .broker import BrokerError

    if kind not in ("tansu", "kafka") or (kind == "tansu" and nodes != 1):
        err.print("[red]error[/red] --kind tansu runs one node; --kind kafka runs --nodes N", highlight=False)
        raise typer.Exit(2)
    spec = _check_broker(f"{kind}:{nodes}")
    try:
        b = brokers.make(spec, port=port or None, log_path=log).start()
    except BrokerError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    with b:
        console.print(b.bootstrap, highlight=False, soft_wrap=True)
        sys.stdout.flush()
        err.print(f"[dim]{escape(b.describe())}, ready in {b.start_seconds:.1f} s; Ctrl-C stops it[/dim]", highlight=False)
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"] and b.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        if not b.running and not stop["now"]:
            err.print(f"the broker exited with code {b.returncode}")
            raise typer.Exit(1)


kafka_app = typer.Typer(no_args_is_help=True, help="Apache Kafka for --broker kafka (Java 17+, Maven for fetch).")
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the pinned Apache Kafka (deploy/kafka/pom.xml) from Maven Central into the cache."""
    from .kafka_broker import KafkaUnavailable, fetch, java_binary

    try:
        lib = fetch(lambda text: err.print(f"[dim]{escape(text)}[/dim]", highlight=False))
        java_binary()
    except KafkaUnavailable as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(str(lib), highlight=False, soft_wrap=True)


@kafka_app.command("where")
def kafka_where() -> None:
    """Which Java and which Kafka `--broker kafka` would run (exit 1 with how to get what is missing)."""
    from .kafka_broker import KafkaUnavailable, locate

    try:
        rt = locate()
    except KafkaUnavailable as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"Apache Kafka {rt.version} from {rt.source}; java: {rt.java}", highlight=False, soft_wrap=True)


def main() -> None:
    app(prog_name="exchange")
