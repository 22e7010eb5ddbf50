"""The ``exchange`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from exchange.errors import EXIT_COULD_NOT_CHECK, EXIT_INTERRUPTED, ExchangeError
from exchange.scenarios import loader as scenario_file
from exchange.scenarios.loader import ScenarioError
from schemas.scenario import Scenario

# Piped output (CI logs, files) gets room for the summary table instead of rich's 80 columns,
# unless COLUMNS says how wide it should be (rich then reads it, as it does on a terminal).
_WIDTH_SET = os.environ.get("COLUMNS", "").isdigit()
console = Console(width=None if sys.stdout.isatty() or _WIDTH_SET else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() or _WIDTH_SET else 140)


class SubscriberClients(str, Enum):
    """``exchange run --subscriber-clients``: how the consumer workers read (consumers/shared.py)."""

    auto = "auto"
    shared = "shared"
    per_department = "per-department"


# the click that parses the command line: typer 0.29+ carries its own copy (typer._click)
_click = getattr(typer.core, "_click", click)
_UsageError, _NoArgsIsHelp = _click.exceptions.UsageError, _click.exceptions.NoArgsIsHelpError


def _usage_error(exc: Any, path: str) -> typer.Exit:
    """A bad option or argument as one line on stderr, not click's box; the exit to raise."""
    err.print(f"[red]error:[/red] {escape(exc.format_message())} (see '{path} --help')", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


class _Commands(TyperGroup):
    """Every command's expected failures (:class:`ExchangeError`), caught in this one place:
    one line on stderr, the error's exit code (see ``exchange/errors.py``)."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except _NoArgsIsHelp:  # `exchange` alone: the help
            raise
        except _UsageError as exc:  # an option of `exchange` itself, before any command
            raise _usage_error(exc, ctx.command_path) from None

    def invoke(self, ctx):
        # aiokafka logs each failed connection attempt; the error that ends the command says it once
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            return super().invoke(ctx)
        except ExchangeError as exc:
            err.print(f"[red]{escape(exc.label)}:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except _UsageError as exc:
            # the option parser's errors carry no context: the command is the one being invoked
            path = exc.ctx.command_path if exc.ctx is not None else " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
            raise _usage_error(exc, path) from None


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="Simulate government data-sharing exchange platforms (政务数据共享交换平台) on Kafka. "
    "Exit codes: 0 ok, 1 the check failed (a run, a conservation check, an audit chain, a refused action), "
    "2 could not check (bad input, no broker, unknown topic, no answer in time), 130 interrupted.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"exchange {version('data-exchange-sim')}", highlight=False, soft_wrap=True)
        except PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
            console.print("exchange (not installed)", soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")] = False) -> None:
    """Simulate government data-sharing exchange platforms (政务数据共享交换平台) on Kafka."""


BrokerOption = Annotated[
    str,
    typer.Option(
        "--broker",
        help="the broker the run starts (without --bootstrap): tansu (embedded, zero install), "
        "kafka (Apache Kafka, one KRaft node) or kafka:3 (three nodes, RF 3, min ISR 2); Kafka needs Java 17+ "
        "and `exchange kafka fetch`",
    ),
]


def _n(count: int, one: str, many: str = "") -> str:
    """``3 entries``, ``1 entry``: a count with its noun."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _check_broker(spec: str, bootstrap: str | None = None) -> str:
    """A --broker value that can start here; else :class:`~exchange.errors.ExchangeError`
    (``BrokerSpecError``, ``KafkaUnavailable``: one line, exit 2)."""
    from exchange.kafka.apache import locate
    from exchange.kafka.brokers import parse

    kind, _ = parse(spec)
    if kind == "kafka" and bootstrap is None:
        locate()
    return spec


def _load(name_or_path: str, seed: int = 1) -> Scenario:
    try:
        return scenario_file.load(name_or_path, seed)
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _check_duration(value: float | None) -> float | None:
    """``--duration`` obeys the rule of ``load.duration`` in a scenario (0 < seconds <= 86,400,
    finite), checked before anything starts."""
    if value is None:
        return value
    from pydantic import ValidationError

    from schemas.scenario import Load

    try:
        Load(duration=value)
    except ValidationError as exc:
        raise typer.BadParameter(f"{value:g} seconds: {exc.errors()[0]['msg']} (as load.duration in a scenario)") from None
    return value


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="YAML path or preset name (see `exchange scenarios`)")],
    duration: Annotated[float | None, typer.Option(callback=_check_duration, help="seconds of publishing (default: the scenario's)")] = None,
    out: Annotated[Path | None, typer.Option(help="directory for result.json and logs (default: runs/NAME-TIME)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="HOST:PORT of an existing Kafka; default starts the embedded broker")] = None,
    seed: Annotated[int, typer.Option(help="seed for the synthetic data")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="router worker processes")] = 1,
    producer_workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="producer processes: each publishes one record in N of every entry's schedule at its intended time, "
            "so every rate is divided between them and the records are the one-process run's",
        ),
    ] = 1,
    consumer_workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="consumer processes: the subscribing departments divided between them (departments receiving a workflow's steps "
            "stay together; the first also reads the audit trail); at most one per department, one with --chaos",
        ),
    ] = 1,
    drain_timeout: Annotated[float, typer.Option(min=0, help="seconds to wait after publishing for every record to be accounted for")] = 30.0,
    fail_on_slo: Annotated[bool, typer.Option("--fail-on-slo", help="exit 1 when any of the scenario's SLOs fails")] = False,
    rate_multiplier: Annotated[float, typer.Option(min=0.0001, help="scale every rate of the scenario")] = 1.0,
    fetch_wait_ms: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=5000,
            help=(
                "how long a router's fetch waits for data; the embedded broker answers an empty fetch only when the wait ends, "
                "so this is the latency an idle hop adds, against the CPU each hub spends polling "
                "(default: 500 on Apache Kafka, which answers a fetch as soon as data is there; on Tansu 10 ms per three "
                "router processes, at most 50)"
            ),
        ),
    ] = None,
    quiet_fetch_wait_ms: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=5000,
            help=(
                "fetch wait of the quiet lanes, for daily, monthly and batch entries: the routers' second consumer, and the "
                "consumer workers' shared client for departments that receive only those (docs/performance.md); "
                "0: no quiet lane, one consumer for every topic (default 500)"
            ),
        ),
    ] = None,
    find_max_rate: Annotated[
        bool, typer.Option("--find-max-rate", help="search the highest multiple of the rates that holds (trials of --duration s, default 10)")
    ] = False,
    slo_p99: Annotated[
        float | None,
        typer.Option(min=0.001, help="p99 end-to-end objective (ms) for --find-max-rate; default: the scenario's e2e_p99_ms SLO, else 1000"),
    ] = None,
    chaos: Annotated[
        str | None,
        typer.Option(
            help="faults to inject, comma-separated KIND[:TARGET]@TIME[+DURATION], times after publishing starts "
            "(20s, 1.5s, 500ms): kill-router[:WORKER]@T, pause-router[:WORKER]@T+D, kill-consumers@T, "
            "pause-consumer:DEPT@T+D, pause-broker@T+D (the broker the run starts); on --broker kafka:3 also "
            "kill-broker[:NODE]@T[+restart|+D] and pause-broker[:NODE]@T+D (default node: the one leading the most ingress partitions). "
            "E.g. --chaos kill-router@5s,pause-broker@10s+3s"
        ),
    ] = None,
    broker_kind: BrokerOption = "tansu",
    warmup: Annotated[
        float | None,
        typer.Option(
            help=(
                "seconds at the start of publishing whose records are routed and counted but kept out of the aggregated "
                "latency and SLO verdicts, reported apart (default: the scenario's load.warmup, else min(5 s, a fifth of the run); "
                "min(20 s, a fifth) on an Apache Kafka broker the run starts, a cold JVM)"
            )
        ),
    ] = None,
    guarantee: Annotated[
        str | None,
        typer.Option(
            help=(
                "delivery guarantee: at-least-once (subscribers drop redeliveries by trace id) or exactly-once (Apache Kafka only: "
                "idempotent producers, the router's consume-transform-produce in transactions, read_committed subscribers); "
                "default: the scenario's `guarantee`, else at-least-once"
            )
        ),
    ] = None,
    clock_correction: Annotated[
        bool,
        typer.Option(
            "--clock-correction/--no-clock-correction",
            help="every process measures its clock offset to the controller's at its start (NTP-style, over Kafka) and reads its "
            "clock corrected by it; --no-clock-correction measures and reports the offsets but leaves the clocks alone",
        ),
    ] = True,
    clock_offset_limit_ms: Annotated[
        float, typer.Option(min=0, help="warn loudly (summary and result.json warnings) of a process whose clock is further off, ms")
    ] = 50.0,
    child_env: Annotated[
        list[str] | None,
        typer.Option(
            help="ROLE:VAR=VALUE: a variable added to the environment of a role's processes (producers, router, consumers) or of one "
            "process (router-1); repeatable. E.g. consumers:PYTHONASYNCIODEBUG=1, or a clock shifted by libfaketime"
        ),
    ] = None,
    external: Annotated[
        str | None,
        typer.Option(
            help=(
                "processes left to `exchange join` workers on other machines, ROLE=N,…: producers=N, consumers=N "
                "(the run's producer or consumer workers, all of them), router=N "
                "(N router workers of every hub), router:HUB=N (of one hub); needs --bootstrap. See docs/distributed.md"
            )
        ),
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option(min=1.0, help="seconds to wait for the processes to be ready, and for --external workers to join")
    ] = 60.0,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535, help="the controller's Prometheus port (0: a free one)")] = 0,
    write_report: Annotated[bool, typer.Option("--report", help="also write report.html into the run directory (exchange report)")] = False,
    subscriber_clients: Annotated[
        SubscriberClients,
        typer.Option(
            help=(
                "how the subscribing departments read: shared (one Kafka consumer per consumer worker reads them all, and a "
                "second the departments that receive only daily, monthly and batch entries (see --quiet-fetch-wait-ms), so the "
                "simulator's side costs little; departments with a consume rate or gateway read alone) or per-department "
                "(each its own consumer and group, the fetch load their systems would put on the broker); "
                "auto: per-department on the embedded broker (Tansu), shared on Apache Kafka"
            )
        ),
    ] = SubscriberClients.auto,
    topics: Annotated[
        str | None,
        typer.Option(
            help=(
                "ingress topic layout: per-entry (a topic per catalogue entry), per-department, per-mode (exchange mode) or "
                "per-class (sensitivity class); shared topics carry the entry in the entry-id header. "
                "Default: the scenario's `topics`, else per-entry"
            )
        ),
    ] = None,
) -> None:
    """Run a scenario end to end and check that every record is accounted for."""
    from exchange.runner.controller import run as run_scenario
    from exchange.runner.display import LiveProgress, fault_table, summary_table
    from exchange.runner.options import RunOptions, check_external, check_workers, parse_chaos, resolve_guarantee, resolve_topics
    from exchange.runner.warmup import warmup_seconds

    loaded = _load(scenario, seed)
    options = RunOptions(
        loaded,
        duration,
        out,
        bootstrap,
        seed,
        workers,
        drain_timeout,
        rate_multiplier=rate_multiplier,
        chaos=chaos,
        fetch_wait_ms=fetch_wait_ms,
        quiet_fetch_wait_ms=quiet_fetch_wait_ms,
        broker=_check_broker(broker_kind, bootstrap),
        warmup=warmup,
        guarantee=guarantee,
        clock_correction=clock_correction,
        clock_offset_limit_ms=clock_offset_limit_ms,
        child_env=_child_env(child_env or []),
        external=external,
        ready_timeout=ready_timeout,
        metrics_port=metrics_port,
        producer_workers=producer_workers,
        consumer_workers=consumer_workers,
        topics=topics,
        subscriber_clients=subscriber_clients.value,
    )
    check_external(options, loaded)  # ExternalError: exit 2
    resolve_guarantee(options)  # GuaranteeError (exactly-once on Tansu): exit 2
    check_workers(options)  # WorkersError (more consumer workers than departments, --chaos with several): exit 2
    resolve_topics(options)  # TopicLayoutError (unknown layout, colliding names): exit 2
    parse_chaos(options, duration if duration is not None else loaded.load.duration)  # ChaosError: exit 2
    warmup_seconds(warmup, loaded.load.warmup, duration if duration is not None else loaded.load.duration)  # WarmupError: exit 2
    if find_max_rate:
        if external:
            err.print("[red]error:[/red] --external cannot be combined with --find-max-rate", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        if chaos:
            err.print("[red]error:[/red] --chaos cannot be combined with --find-max-rate", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        _find_max_rate(options, slo_p99)
        return
    with LiveProgress(console) as live:
        # printed above the live view while it shows (rich keeps console output above a Live)
        say = (
            (lambda text: console.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True))
            if console.is_terminal
            else (lambda text: err.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True))
        )
        result, run_dir = _run_async(run_scenario(options, live.update, say))
    console.print(summary_table(result))
    if result.faults:
        console.print(fault_table(result))
    ok = result.conservation.ok
    console.print(("[green]conservation check passed:[/green] " if ok else "[red]conservation check FAILED:[/red] ") + result.conservation.message)
    if not ok and result.run.drain_s >= drain_timeout:
        console.print(f"  the drain stopped at --drain-timeout ({drain_timeout:g} s) with outcomes still to come: a longer one waits for them")
    for v in result.slos:
        mark = "[green]pass[/green]" if v.passed else "[red]FAIL[/red]"
        unit = " ms" if v.metric.endswith("_ms") else " records/s" if v.metric.endswith("_per_s") else ""
        measured = "nothing measured" if v.measured is None else f"{v.measured:,.1f}{unit}" if unit else f"{v.measured:g}"
        scope = "" if not v.entries else f" ({', '.join(v.entries[:3])}{f' and {len(v.entries) - 3} more' if len(v.entries) > 3 else ''})"
        console.print(
            f"SLO {mark} {escape(v.name)}{escape(scope)}: {v.metric} {v.target}{unit}, measured {measured}", highlight=False, soft_wrap=True
        )
    for warning in result.warnings:
        console.print(f"[red]warning:[/red] {escape(warning)}", highlight=False, soft_wrap=True)
    ingress = f"{result.run.topic_layout}, {result.run.ingress_topics or 0:,} ingress topics, {result.run.ingress_partitions or 0:,} partitions"
    ingress += f"; subscriber clients: {result.run.subscriber_clients}"
    console.print(
        f"router ready in {', '.join(f'{s:.1f} s' for s in result.run.router_ready_s)}; {ingress}; result: {run_dir / 'result.json'}", soft_wrap=True
    )
    if write_report:
        from exchange.results.report import write_report as write_html

        console.print(f"report: {write_html(run_dir / 'result.json', None)}", soft_wrap=True)
    slo_failed = fail_on_slo and not all(v.passed for v in result.slos)
    raise typer.Exit(0 if ok and not slo_failed else 1)


CHILD_ROLES = ("producers", "router", "consumers")


def _child_env(specs: list[str]) -> dict[str, dict[str, str]]:
    """``--child-env ROLE:VAR=VALUE`` options as role (or process name) → variables; a bad one is a usage error naming it."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        target, _, assignment = spec.partition(":")
        var, eq, value = assignment.partition("=")
        role_ok = target in CHILD_ROLES or re.fullmatch(r"router-[\w.-]+", target) is not None
        if not role_ok or not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise typer.BadParameter(
                f"{spec!r}: expected ROLE:VAR=VALUE with ROLE one of {', '.join(CHILD_ROLES)} or a router process (router-1)",
                param_hint="--child-env",
            )
        out.setdefault(target, {})[var] = value
    return out


@app.command()
def join(
    bootstrap: Annotated[str, typer.Option(help="HOST:PORT of the run's Kafka, as this machine reaches it")],
    role: Annotated[str, typer.Option(help="producers, router, router:HUB (a hub of a cascade) or consumers")],
    run_id: Annotated[str | None, typer.Option("--run", help="the run to join (its id); default: --next")] = None,
    next_run: Annotated[bool, typer.Option("--next", help="the latest open run with a slot of the role, else the next one announced")] = False,
    workdir: Annotated[Path, typer.Option(help="this worker's own directory: WORKDIR/RUN_ID/SLOT/ holds the scenario, status file and log")] = Path(
        "runs/join"
    ),
    wait: Annotated[float, typer.Option(min=1.0, help="seconds to wait for a run to be announced")] = 600.0,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="the Prometheus port of the process this worker runs (default: a free one)")
    ] = None,
) -> None:
    """Run one process of a run whose controller is elsewhere (exchange run --external): exit 0 when the run ended
    with it, 1 when its process died, 2 when there was no run or slot to join."""
    from exchange.kafka.clients import check_bootstrap
    from exchange.runner.join import JoinFailed, JoinOptions
    from exchange.runner.join import join as join_run

    if run_id is not None and next_run:
        raise JoinFailed("--run and --next: give one")
    options = JoinOptions(check_bootstrap(bootstrap), role, run_id, workdir, wait, metrics_port)
    code = _run_async(join_run(options, say=lambda text: err.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True)))
    raise typer.Exit(code)


def _find_max_rate(options, slo_p99: float | None) -> None:
    from rich.table import Table

    from exchange.runner.controller import default_run_dir
    from exchange.runner.maxrate import find_max_rate

    objective = slo_p99 or next((s.max for s in options.scenario.slos if s.metric == "e2e_p99_ms" and s.max), 1000.0)
    out = options.out or default_run_dir(options.scenario).with_name(f"{options.scenario.name}-maxrate")
    out.mkdir(parents=True, exist_ok=True)
    options.out = None
    found = _run_async(
        find_max_rate(options, out, objective, options.duration or 10.0, say=lambda text: err.print(f"[dim]{text}[/dim]", soft_wrap=True))
    )
    table = Table(title=f"{options.scenario.name}: maximum sustainable rate (p99 ≤ {objective:g} ms, no backlog)")
    for col in ("×", "offered/s", "held", "p99 ms", "drain s", "publish delay p99 ms", "why"):
        table.add_column(col)
    for t in found.trials:
        table.add_row(
            f"{t.multiplier:g}",
            f"{t.offered_per_s:,.0f}",
            "yes" if t.held else "no",
            f"{t.e2e_p99_ms:.0f}",
            f"{t.drain_s:.1f}",
            f"{t.publish_delay_p99_ms:.0f}",
            t.why,
        )
    console.print(table)
    console.print(f"maximum sustainable: {found.max_multiplier:g}× the scenario's rates = {found.max_rate_per_s:,.0f} records/s", soft_wrap=True)
    (out / "max-rate.json").write_text(json.dumps(found.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(f"trials and figures: {out / 'max-rate.json'}", soft_wrap=True)


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
        err.print("[yellow]interrupted: stopped every process of the run[/yellow]", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command()
def bench(
    records: Annotated[int, typer.Option(min=1000, help="records through every path")] = 200_000,
    record_size: Annotated[int, typer.Option(min=1, help="bytes per record value")] = 1024,
    workers: Annotated[int, typer.Option(min=1, help="router worker processes")] = 1,
    latency_seconds: Annotated[float, typer.Option(min=1.0, help="seconds of the half-rate latency run")] = 10.0,
    bootstrap: Annotated[str | None, typer.Option(help="HOST:PORT of an existing Kafka; default: embedded broker")] = None,
    out: Annotated[Path | None, typer.Option(help="directory for logs (default: runs/bench-TIME)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    policy: Annotated[bool, typer.Option("--policy", help="only the decision cost: a 10-item vs the 14,722-item catalogue, no Kafka")] = False,
    find_max: Annotated[bool, typer.Option("--find-max-rate", help="latency at half the live maximum rate, found by search (minutes)")] = False,
    broker_floor: Annotated[
        bool, typer.Option("--broker-floor", help="only the broker: one aiokafka hop at --floor-rate for --latency-seconds, latency per 5 s window")
    ] = False,
    floor_rate: Annotated[float, typer.Option(min=1, help="records/s of --broker-floor")] = 2000.0,
    broker_kind: BrokerOption = "tansu",
    guarantee_cost: Annotated[
        str | None,
        typer.Option(
            "--guarantee-cost",
            metavar="SCENARIO",
            help="only the delivery guarantee: SCENARIO (e.g. demo) run at-least-once and exactly-once in turn on one Kafka "
            "(needs --broker kafka/kafka:3 or --bootstrap), each for --latency-seconds; records/s, p50/p99 and the cost",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, max=10, help="--guarantee-cost: runs of each guarantee, alternating")] = 1,
    rate_multiplier: Annotated[float, typer.Option(min=0.0001, help="--guarantee-cost: scale every rate of the scenario")] = 1.0,
) -> None:
    """Measure the simulator itself: raw pass-through vs the router, producer, consumer."""
    from rich.table import Table

    from exchange.bench.run import BenchOptions, run_bench

    say = (lambda text: None) if as_json else (lambda text: err.print(f"[dim]{text}[/dim]", soft_wrap=True))
    broker_kind = _check_broker(broker_kind, bootstrap) if not policy else broker_kind
    if policy:
        from exchange.bench.policy import run as run_policy_bench

        figures = run_policy_bench()
    elif guarantee_cost:
        from exchange.bench.guarantee import guarantee_cost as run_guarantee_cost

        figures = _run_async(
            run_guarantee_cost(
                _load(guarantee_cost),
                latency_seconds,
                broker=broker_kind,
                bootstrap=bootstrap,
                out=out,
                rounds=rounds,
                rate_multiplier=rate_multiplier,
                say=say,
            )
        )
    elif broker_floor:
        from exchange.bench.broker_floor import broker_floor as run_broker_floor

        figures = _run_async(run_broker_floor(floor_rate, latency_seconds, record_size, bootstrap, broker_kind))
    else:
        figures = _run_async(
            run_bench(BenchOptions(records, record_size, workers, bootstrap, out, latency_seconds, find_max, broker=broker_kind), say)
        )
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title="exchange bench", show_header=False, title_justify="left")
    for key, value in _figure_rows(figures):
        table.add_row(key, value)
    console.print(table)


def _figure(value) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def _window_ms(key: str, value) -> str:
    return f"{key.removesuffix('_ms')} {'—' if value is None else f'{value:,.1f}'} ms"


def _figure_rows(figures: dict) -> list[tuple[str, str]]:
    """Bench figures as (name, text) rows: per-window figures (``--broker-floor``) one row
    per window, other lists and dicts spelled out, never as a Python literal."""
    rows: list[tuple[str, str]] = []
    for key, value in figures.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) and "from_s" in v for v in value):
            for w in value:
                rest = ", ".join(
                    f"{_figure(v)} {k}" if k == "received" else _window_ms(k, v) if k.endswith("_ms") else f"{k} {_figure(v)}"
                    for k, v in w.items()
                    if k not in ("from_s", "to_s")
                )
                rows.append((f"{key.removesuffix('s')} {w['from_s']:g}–{w['to_s']:g} s", rest))
        elif isinstance(value, dict):
            rows.extend((f"{key} {k}", _figure(v)) for k, v in value.items())
        elif isinstance(value, list):
            rows.append((key, ", ".join(_figure(v) for v in value)))
        else:
            rows.append((key, _figure(value)))
    return rows


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail (全程留痕).")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    bootstrap: Annotated[str, typer.Option(help="HOST:PORT of the Kafka holding the audit topic")],
    scenario: Annotated[str | None, typer.Argument(help="scenario (for its platform id)")] = None,
    platform: Annotated[str | None, typer.Option(help="platform id (instead of a scenario)")] = None,
    topic: Annotated[str | None, typer.Option(help="audit topic name (default dx.<platform>.audit)")] = None,
) -> None:
    """Check every hash chain of a platform's audit topic; exit 1 at any broken link, 2 when it cannot be read."""
    from exchange.kafka.topics import read_topic
    from exchange.policy.audit import verify
    from schemas.envelope import Topics

    if topic is None:
        platform_id = platform or (_load(scenario).platform.id if scenario else None)
        if platform_id is None:
            err.print("[red]error:[/red] give a scenario, --platform or --topic", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_COULD_NOT_CHECK)
        topic = Topics(platform_id).audit
    result = verify(_run_async(read_topic(bootstrap, topic)))
    console.print(f"{topic}: {result.blocks:,} blocks, {result.rows:,} audit records, {len(result.chains)} chains", highlight=False, soft_wrap=True)
    if result.ok:
        console.print("[green]every chain intact[/green]", soft_wrap=True)
        return
    console.print(f"[red]broken:[/red] {result.broken[0]}", highlight=False, soft_wrap=True)
    if len(result.broken) > 1:
        console.print(f"({len(result.broken) - 1} more broken links)", soft_wrap=True)
    raise typer.Exit(1)


def _control(
    action: str,
    scenario: str,
    consumer: str,
    entry: str,
    bootstrap: str,
    actor: str | None,
    wait: bool,
    timeout: float,
    items: str | None = None,
    purpose: str = "",
    valid_for: float | None = None,
    reason: str = "",
) -> None:
    """Publish one control event to the platform's control topic and print the router's verdict.

    The scenario's topics are created first, as a run creates them (so a command given
    before any run does not leave a control topic auto-created with the broker's default
    partitions). Exit 0 when accepted (or sent, with ``--no-wait``), 1 when refused, 2 when
    no verdict came in time or the broker is not there.
    """
    from exchange.kafka.topics import changelog_plan, create_topics, topic_plan
    from exchange.workflow import new_request_id, publish_control, request_control
    from schemas.applications import PROVIDER_ACTIONS, ControlEvent
    from schemas.envelope import Topics

    s = _load(scenario)
    if entry not in s.entries:
        err.print(f"[red]error:[/red] entry {escape(repr(entry))} is not in {escape(s.name)}'s catalogue", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_COULD_NOT_CHECK)
    if consumer not in s.department_ids:
        err.print(f"[red]error:[/red] {escape(repr(consumer))} is not a department of {escape(s.name)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_COULD_NOT_CHECK)
    who = actor or (s.entries[entry].provider if action in PROVIDER_ACTIONS else consumer)
    event = ControlEvent(
        action=action,
        actor=who,
        consumer=consumer,
        entry=entry,
        items=[i.strip() for i in items.split(",")] if items else None,
        purpose=purpose,
        valid_for_s=valid_for,
        reason=reason,
        at_ns=time.time_ns(),
        request_id=new_request_id(),
    )
    topics = Topics(s.platform_of(s.entries[entry].provider))  # the hub the entry is published on

    async def send():
        await create_topics(bootstrap, topic_plan(s), check=changelog_plan(s))
        if not wait:
            await publish_control(bootstrap, topics.control, event)
            return None
        return await request_control(bootstrap, topics.control, topics.verdicts, event, timeout)

    verdict = _run_async(send())  # Refused: exit 1; no verdict in time, no broker: exit 2
    if verdict is None:
        console.print(
            f"sent {action}: {event.application} by {who} → {topics.control} (request {event.request_id}; not waiting for the verdict)",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"{action}: {event.application} by {who}: accepted, now {verdict.state} (router worker {verdict.worker} on {topics.control})",
        highlight=False,
        soft_wrap=True,
    )


Bootstrap = Annotated[str, typer.Option(help="HOST:PORT of the exchange's Kafka")]
Consumer = Annotated[str, typer.Option(help="the applying (subscribing) department")]
Entry = Annotated[str, typer.Option(help="the catalogue entry")]
Actor = Annotated[str | None, typer.Option("--as", help="department acting (default: the consumer for apply, the provider otherwise)")]
ScenarioArg = Annotated[str, typer.Argument(help="scenario (YAML path or preset)")]
Wait = Annotated[
    bool, typer.Option("--wait/--no-wait", help="wait for the router's verdict (exit 1 when refused); --no-wait only publishes the event")
]
Timeout = Annotated[float, typer.Option(min=0.1, help="seconds to wait for the verdict (exit 2 when none comes)")]


@app.command()
def apply(
    scenario: ScenarioArg,
    consumer: Consumer,
    entry: Entry,
    bootstrap: Bootstrap,
    purpose: Annotated[str, typer.Option(help="用途: what the data is for")],
    items: Annotated[str | None, typer.Option(help="comma-separated items (default: all)")] = None,
    actor: Actor = None,
    wait: Wait = True,
    timeout: Timeout = 15.0,
) -> None:
    """File an application (申请) for a conditional entry; prints the router's verdict."""
    _control("apply", scenario, consumer, entry, bootstrap, actor, wait, timeout, items=items, purpose=purpose)


@app.command()
def review(
    scenario: ScenarioArg, consumer: Consumer, entry: Entry, bootstrap: Bootstrap, actor: Actor = None, wait: Wait = True, timeout: Timeout = 15.0
) -> None:
    """Take an application under review (the provider); prints the router's verdict."""
    _control("review", scenario, consumer, entry, bootstrap, actor, wait, timeout)


@app.command()
def approve(
    scenario: ScenarioArg,
    consumer: Consumer,
    entry: Entry,
    bootstrap: Bootstrap,
    valid_for: Annotated[float | None, typer.Option(min=0.001, help="seconds the approval lasts (default: no end)")] = None,
    actor: Actor = None,
    wait: Wait = True,
    timeout: Timeout = 15.0,
) -> None:
    """Approve an application under review (审批; only the entry's provider may); prints the router's verdict."""
    _control("approve", scenario, consumer, entry, bootstrap, actor, wait, timeout, valid_for=valid_for)


@app.command()
def reject(
    scenario: ScenarioArg,
    consumer: Consumer,
    entry: Entry,
    bootstrap: Bootstrap,
    reason: Annotated[str, typer.Option(help="why")] = "",
    actor: Actor = None,
    wait: Wait = True,
    timeout: Timeout = 15.0,
) -> None:
    """Reject an application; prints the router's verdict."""
    _control("reject", scenario, consumer, entry, bootstrap, actor, wait, timeout, reason=reason)


@app.command()
def revoke(
    scenario: ScenarioArg,
    consumer: Consumer,
    entry: Entry,
    bootstrap: Bootstrap,
    reason: Annotated[str, typer.Option(help="why")] = "",
    actor: Actor = None,
    wait: Wait = True,
    timeout: Timeout = 15.0,
) -> None:
    """Revoke an approval: delivery stops on the live stream; prints the router's verdict."""
    _control("revoke", scenario, consumer, entry, bootstrap, actor, wait, timeout, reason=reason)


def _result_path(path: Path) -> Path:
    """A run's result.json, given the file or its run directory (:class:`ReportError` for a run
    directory without one: a run writes it when it ends, so an interrupted or failed one has none)."""
    if not path.is_dir():
        return path
    if not (path / "result.json").is_file() and (path / "scenario.json").is_file():
        from exchange.results.report import ReportError

        raise ReportError(f"{path}: a run directory without result.json: the run did not end (interrupted, or it failed); nothing to report")
    return path / "result.json"


@app.command()
def report(
    result: Annotated[
        Path, typer.Argument(metavar="RUN", help="a run's directory or its result.json (scenario.json beside it adds department names)")
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write (default: report.html in the run's directory)")] = None,
) -> None:
    """One self-contained HTML page of a run (opens offline): rates, latency, outcomes, flows between departments, SLOs."""
    from exchange.results.report import write_report

    path = write_report(_result_path(result), output)
    console.print(f"report: {path}", soft_wrap=True)


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="design A: a run's directory or its result.json")],
    b: Annotated[Path, typer.Argument(metavar="B", help="design B: a run's directory or its result.json")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write")] = Path("compare.html"),
) -> None:
    """Two runs side by side: a table here, and an HTML page with the same table and overlaid charts."""
    from exchange.results.compare import run_compare

    table, path = run_compare(_result_path(a), _result_path(b), output)
    console.print(table)
    console.print(f"comparison: {path}", soft_wrap=True)


@app.command()
def scenarios() -> None:
    """List the built-in scenario presets."""
    for name in scenario_file.preset_names():
        s = scenario_file.load(name)
        console.print(f"[bold]{name}[/bold]  {s.description}", highlight=False, soft_wrap=True)


@app.command()
def validate(file: Annotated[str, typer.Argument(help="scenario YAML path or preset name")]) -> None:
    """Check a scenario and list every problem with line, column and field."""
    try:
        s = scenario_file.load(file)
    except ScenarioError as exc:
        only = exc.problems[0] if len(exc.problems) == 1 else None
        if only is not None and only.line == 0 and ("no such file" in only.message or "cannot read" in only.message):
            err.print(f"error: {exc.problems[0]}", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(2) from None  # could not check: nothing to read (missing, a directory, unreadable)
        for problem in exc.problems:
            console.print(str(problem), highlight=False, soft_wrap=True, markup=False)
        err.print(f"{len(exc.problems)} problem(s)", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(
        f"ok: {escape(s.name)}: {_n(len(s.departments), 'department')}, {_n(len(s.catalogue), 'entry', 'entries')}, "
        f"{_n(sum(len(e.items) for e in s.catalogue), 'item')}, {_n(len(s.subscriptions), 'subscription')}"
    )
    from schemas.scenario import Sharing

    unsaid = [sub.id for sub in s.subscriptions if s.entries[sub.entry].sharing is Sharing.conditional and "status" not in sub.model_fields_set]
    if unsaid:  # pending by default (nothing flows until approved): say so, in case approved was meant
        console.print(
            f"note: {len(unsaid)} conditional subscription(s) without status are pending, nothing flows to them "
            f"until approved: {', '.join(unsaid[:5])}{', …' if len(unsaid) > 5 else ''}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@app.command()
def schema(
    of: Annotated[
        str,
        typer.Argument(
            metavar="[scenario|status|runs]",
            help=(
                "scenario: the scenario format (for editors; it accepts the Chinese terms too); "
                "status: the messages every process of a run sends the run controller (schemas/status.py); "
                "runs: the messages of exchange.runs and exchange.run.<run_id> (schemas/runs.py)"
            ),
        ),
    ] = "scenario",
) -> None:
    """Print a JSON Schema: of the scenario format (for editors), or of the processes' status messages."""
    if of == "scenario":
        from schemas.scenario import json_schema
    elif of == "status":
        from schemas.status import json_schema
    elif of == "runs":
        from schemas.runs import json_schema
    else:
        raise typer.BadParameter(f"{of!r} is not one of scenario, status or runs", param_hint="SCHEMA")
    console.print_json(json.dumps(json_schema()))


@app.command()
def broker(
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on (0: a free one); on several Kafka nodes, node 1's")] = 0,
    kind: Annotated[str, typer.Option(help="tansu (embedded, memory storage) or kafka (Apache Kafka, KRaft)")] = "tansu",
    nodes: Annotated[int, typer.Option(min=1, max=5, help="Kafka nodes, each a controller and a broker (3: RF 3, min ISR 2)")] = 1,
    log: Annotated[Path | None, typer.Option(help="broker log file (several Kafka nodes: one per node, -N before the suffix)")] = None,
    host: Annotated[
        str,
        typer.Option(
            help="the address of this machine to listen on and advertise: 127.0.0.1 (default) reaches it from this machine only; "
            "for `exchange join` workers on other machines, an address they reach it at (docs/distributed.md)"
        ),
    ] = "127.0.0.1",
) -> None:
    """Run a broker in the foreground until Ctrl-C; prints its bootstrap address."""
    from exchange.kafka import brokers

    if kind not in ("tansu", "kafka") or (kind == "tansu" and nodes != 1):
        err.print("[red]error[/red] --kind tansu runs one node; --kind kafka runs --nodes N", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    spec = _check_broker(f"{kind}:{nodes}")
    try:  # BrokerError (port in use, no Java…) is an ExchangeError: one line, exit 2
        b = brokers.make(spec, port=port or None, log_path=log, host=host).start()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    with b:
        console.print(b.bootstrap, highlight=False, soft_wrap=True)
        sys.stdout.flush()
        err.print(f"[dim]{escape(b.describe())}, ready in {b.start_seconds:.1f} s; Ctrl-C stops it[/dim]", highlight=False, soft_wrap=True)
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"] and b.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        if not b.running and not stop["now"]:
            err.print(f"the broker exited with code {b.returncode}", soft_wrap=True)
            raise typer.Exit(1)


kafka_app = typer.Typer(no_args_is_help=True, help="Apache Kafka for --broker kafka (Java 17+, Maven for fetch).")
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the pinned Apache Kafka (deploy/kafka/pom.xml) from Maven Central into the cache."""
    from exchange.kafka.apache import KafkaUnavailable, fetch, java_binary

    try:
        lib = fetch(lambda text: err.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True))
        java_binary()
    except KafkaUnavailable as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(str(lib), highlight=False, soft_wrap=True)


@kafka_app.command("where")
def kafka_where() -> None:
    """Which Java and which Kafka `--broker kafka` would run (exit 1 with how to get what is missing)."""
    from exchange.kafka.apache import KafkaUnavailable, locate

    try:
        rt = locate()
    except KafkaUnavailable as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"Apache Kafka {rt.version} from {rt.source}; java: {rt.java}", highlight=False, soft_wrap=True)


def main() -> None:
    """The ``exchange`` console script: run the command line (exit codes in :mod:`exchange.errors`)."""
    app(prog_name="exchange")
