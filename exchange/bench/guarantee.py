"""``exchange bench --guarantee-cost``: what exactly-once costs against at-least-once.

One invocation, one Apache Kafka broker, the same scenario, seed and rates: runs at-least-once
and exactly-once in turn (``rounds`` times each, alternating, so that a change in the
machine's load falls on both), and reports per guarantee:

- ``records_per_s``: records produced / (publishing time + drain time), the rate at which
  records were taken in and fully accounted for (the offered rate while the exchange keeps
  up, its capacity once it does not);
- ``consume_records_per_s``: the subscribers' mean rate over the run's intervals;
- end-to-end p50/p99 and publish p99 (ms), duplicates, conservation;

and the cost of exactly-once as percentages. Each run's ``result.json`` stays in its own
directory, for ``exchange compare``. Exactly-once needs Kafka: on Tansu this raises
:class:`~exchange.runner.options.GuaranteeError` before anything starts.
"""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any

from exchange.kafka import brokers
from exchange.kafka.topics import create_router_internal_topics
from exchange.runner.controller import RunFailed, run
from exchange.runner.options import RunOptions, resolve_guarantee
from schemas.results import Result
from schemas.scenario import Scenario

GUARANTEES = ("at-least-once", "exactly-once")


def figures_of(result: Result) -> dict[str, Any]:
    """The figures one run contributes (see the module docstring)."""
    run_s = result.run.duration_s + result.run.drain_s
    rates = result.consumeRate or []
    return {
        "records_per_s": round(result.counts.produced / run_s) if run_s else None,
        "consume_records_per_s": round(statistics.fmean(rates)) if rates else None,
        "e2e_p50_ms": result.aggregatedEndToEndLatency50pct,
        "e2e_p99_ms": result.aggregatedEndToEndLatency99pct,
        "publish_p99_ms": result.aggregatedPublishLatency99pct,
        "duplicates": result.counts.duplicates,
        "conservation_ok": result.conservation.ok,
    }


def cost(alo: dict[str, Any], eos: dict[str, Any]) -> dict[str, Any]:
    """Exactly-once against at-least-once, in percent (+: exactly-once is higher)."""
    out = {}
    for key in ("records_per_s", "e2e_p50_ms", "e2e_p99_ms", "publish_p99_ms"):
        a, b = alo.get(key), eos.get(key)
        out[f"{key}_change_pct"] = round((b - a) / a * 100, 1) if a and b is not None else None
    return out


async def guarantee_cost(
    scenario: Scenario,
    duration: float,
    *,
    broker: str = "kafka",
    bootstrap: str | None = None,
    out: Path | None = None,
    rounds: int = 1,
    rate_multiplier: float = 1.0,
    say=lambda text: None,
) -> dict[str, Any]:
    """Run ``scenario`` under each guarantee on one Kafka; returns the figures (module docstring).

    Raises :class:`~exchange.runner.options.GuaranteeError` on Tansu, :class:`RunFailed`
    when the broker does not start or a run fails.
    """
    resolve_guarantee(RunOptions(scenario, bootstrap=bootstrap, broker=broker, guarantee="exactly-once"))
    run_dir = out or Path("runs") / f"guarantee-cost-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    node = None if bootstrap else brokers.make(broker, log_path=run_dir / "broker.log")
    per_run: dict[str, list[dict[str, Any]]] = {g: [] for g in GUARANTEES}
    results: dict[str, list[str]] = {g: [] for g in GUARANTEES}
    try:
        if node is not None:
            try:
                await node.astart()
            except brokers.BrokerError as exc:
                raise RunFailed(f"could not start the broker ({broker}): {exc}") from None
        address = bootstrap or node.bootstrap
        # as a run that starts its own Kafka does: Faust's own topics before the routers ask for them
        await create_router_internal_topics(address, scenario, node.replication_factor if node else 1)
        for n in range(rounds):
            for guarantee in GUARANTEES:
                say(f"round {n + 1}/{rounds}: {scenario.name}, {guarantee}, {duration:g} s…")
                where = run_dir / f"{guarantee}-{n + 1}"
                result, _ = await run(
                    RunOptions(
                        scenario,
                        duration,
                        where,
                        address,
                        rate_multiplier=rate_multiplier,
                        guarantee=guarantee,
                        drain_timeout=60.0,
                        ready_timeout=brokers.KAFKA_READY_TIMEOUT_S,
                    )
                )
                per_run[guarantee].append(figures_of(result))
                results[guarantee].append(str(where / "result.json"))
    finally:
        if node is not None:
            await node.astop()
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "duration_s": duration,
        "rate_multiplier": rate_multiplier,
        "rounds": rounds,
        "broker": node.describe() if node is not None else f"Kafka at {bootstrap}",
    }
    means = {}
    for guarantee, runs in per_run.items():
        means[guarantee] = {key: _mean([r[key] for r in runs]) for key in runs[0]}
        summary[guarantee] = means[guarantee]
    summary["exactly_once_cost"] = cost(means["at-least-once"], means["exactly-once"])
    summary["results"] = {g: ", ".join(paths) for g, paths in results.items()}
    summary["compare"] = f"exchange compare {results['at-least-once'][-1]} {results['exactly-once'][-1]}"
    return summary


def _mean(values: list[Any]) -> Any:
    if all(isinstance(v, bool) for v in values):
        return all(values)
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    mean = statistics.fmean(numbers)
    return round(mean) if all(isinstance(v, int) for v in numbers) else round(mean, 1)
