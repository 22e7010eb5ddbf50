"""The warm-up: the first seconds of publishing, reported apart from the measured run.

OpenMessaging Benchmark runs a warm-up phase before the test and keeps it out of the
results; Kafka's ``kafka-producer-perf-test`` does the same with ``--warmup-records``
(KIP-1052). Here the warm-up records are routed, delivered and accounted for like any
other (the conservation check counts them), but their latencies go to histograms of
their own: the aggregated percentiles, per-flow and per-hop figures and the SLO verdicts
read only the records after it. Per-interval (per-second) series keep every second.

A record belongs to the warm-up when its *intended* send time (the producers' rate
schedule, header ``intended-ns``) is before the schedule's start plus the warm-up. The
producer process writes that instant to the run's schedule file before it publishes
anything, so every process decides the same way for every record, whenever and
wherever it arrives (a reaction record's intended time is when it is due).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from exchange.errors import ExchangeError

#: seconds of warm-up when neither ``--warmup`` nor the scenario's ``load.warmup`` says:
#: the issue's measured start-up (no delivery in the first ~5 s of ``dongguan``) ...
DEFAULT_WARMUP_S = 5.0
#: ... but never more than this share of the run, so a short run keeps most of its records
DEFAULT_WARMUP_SHARE = 0.2
#: seconds of warm-up by default when the run starts its own Apache Kafka broker (a cold JVM):
#: its JIT compilers take 0.3-0.5 cores for the first ~15-40 s, and the per-second p99 of full-scale
#: Dongguan is 0.5-1.1 s for its first ~8-10 s against 50-250 ms after (docs/results.md); on a
#: broker already running (``--bootstrap``) or on Tansu (no JIT) the start-up is the 5 s above.
#: OpenMessaging Benchmark's default warm-up is a minute. Capped at the same share of the run.
COLD_KAFKA_WARMUP_S = 20.0

SCHEDULE_FILE = "schedule.json"


class WarmupError(ExchangeError, ValueError):
    """A warm-up that leaves nothing to measure (exit 2: could not check)."""


def warmup_seconds(requested: float | None, scenario_warmup: float | None, duration_s: float, cold_kafka: bool = False) -> float:
    """The run's warm-up in seconds: ``--warmup``, else the scenario's ``load.warmup``, else
    ``min(DEFAULT_WARMUP_S, DEFAULT_WARMUP_SHARE × duration)``; with ``cold_kafka`` (the run
    starts its own Apache Kafka broker) :data:`COLD_KAFKA_WARMUP_S` instead of DEFAULT_WARMUP_S.

    Raises :class:`WarmupError` when it is negative or not shorter than the run (nothing
    would be measured). ``0`` turns the warm-up off.
    """
    if requested is None and scenario_warmup is None:
        return round(min(COLD_KAFKA_WARMUP_S if cold_kafka else DEFAULT_WARMUP_S, DEFAULT_WARMUP_SHARE * duration_s), 3)
    warmup, where = (requested, "--warmup") if requested is not None else (scenario_warmup, "load.warmup")
    if warmup < 0:
        raise WarmupError(f"{where} {warmup:g} s: must be 0 or more")
    if warmup and warmup >= duration_s:
        hint = " (a shorter --warmup, or 0, overrides it)" if where == "load.warmup" else ""
        raise WarmupError(f"{where} {warmup:g} s is not shorter than the run ({duration_s:g} s): nothing would be measured{hint}")
    return float(warmup)


def write_schedule(path: Path, start_ns: int, warmup_s: float) -> None:
    """Write the schedule's start (epoch ns) and warm-up end, atomically (the producers, before publishing)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps({"start_ns": start_ns, "warmup_s": warmup_s, "warmup_end_ns": warmup_end_ns(start_ns, warmup_s)}))
    os.replace(tmp, path)


def read_warmup_end(path: Path) -> int:
    """The warm-up's end, epoch ns, from the schedule file.

    Raises ``FileNotFoundError`` while the producers have not started their schedule
    (no record of the run can have been published yet).
    """
    return int(orjson.loads(path.read_bytes())["warmup_end_ns"])


def read_schedule_start(path: Path) -> int:
    """The schedule's start, epoch ns, from the schedule file (``FileNotFoundError`` until it is written)."""
    return int(orjson.loads(path.read_bytes())["start_ns"])


def warmup_end_ns(start_ns: int, warmup_s: float) -> int:
    """Records with an intended send time before this (epoch ns) are the warm-up's."""
    return start_ns + round(warmup_s * 1e9)
