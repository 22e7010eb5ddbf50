"""What a run is asked to do (:class:`RunOptions`), and the checks that refuse it before anything starts.

Each check raises an :class:`~exchange.errors.ExchangeError` whose message names the option
(exit code 2: nothing started, nothing to clean up); :func:`exchange.runner.controller.run`
calls them all before the broker starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.assignment import assign_departments
from consumers.shared import subscriber_clients  # noqa: F401 - the run resolves --subscriber-clients with it
from exchange.errors import ExchangeError
from exchange.kafka import brokers
from exchange.runner import chaos, remote
from schemas.scenario import DeliveryGuarantee, IngressTopics, Scenario, TopicLayout, template_problem, topic_errors


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
    quiet_fetch_wait_ms: int | None = None  # the quiet lanes' (routers' and shared subscribers', exchange/router/lanes.py); 0: none; None: default
    chaos: str | None = None  # a --chaos spec (exchange/runner/chaos.py); checked before anything starts
    broker: str = "tansu"  # the broker the run starts without --bootstrap: tansu, kafka, kafka:3 (exchange/kafka/brokers.py)
    warmup: float | None = None  # seconds; None: the scenario's load.warmup, else the default (exchange/runner/warmup.py)
    broker_instance: Any = None  # a broker of kind ``broker`` the caller started: the run uses it and leaves it running
    guarantee: str | None = None  # at-least-once | exactly-once; None: the scenario's (see resolve_guarantee)
    clock_correction: bool = True  # children read their clocks corrected by the offset they measure at start-up
    clock_offset_limit_ms: float = 50.0  # offsets beyond it are warned of (summary line, result.warnings)
    child_env: dict[str, dict[str, str]] = field(default_factory=dict)  # role or process name → variables added to its environment
    metrics_port: int = 0  # the controller's Prometheus port; 0: a free one
    external: str | None = None  # --external ROLE=N,…: slots left to `exchange join` workers (exchange/runner/remote.py)
    producer_workers: int = 1  # producer processes, each publishing one record in P of every schedule (producers/publisher.py WorkerShare)
    consumer_workers: int = 1  # consumer processes, the subscribing departments divided between them (consumers/assignment.py)
    subscriber_clients: str = "auto"  # auto | shared | per-department: how the consumer workers read (see subscriber_clients)
    topics: str | None = None  # ingress topic layout (per-entry, per-department, …); None: the scenario's (see resolve_topics)


class WorkersError(ExchangeError, ValueError):
    """Worker counts the run cannot use (exit code 2, before anything starts)."""


def check_workers(options: RunOptions) -> None:
    """Raises :class:`WorkersError` for a producer or consumer worker count below 1, more
    consumer workers than the scenario has units of subscribing departments, or ``--chaos``
    with several consumer workers (its faults and recovery times are the single consumer
    process's: ``kill-consumers`` kills it, its checkpoint resumes it)."""
    if options.producer_workers < 1:
        raise WorkersError(f"--producer-workers {options.producer_workers}: must be 1 or more")
    try:
        assign_departments(options.scenario, options.consumer_workers)
    except ValueError as exc:
        raise WorkersError(str(exc)) from None
    if options.chaos and options.consumer_workers > 1:
        raise WorkersError(
            f"--chaos needs one consumer worker (--consumer-workers {options.consumer_workers}): its faults act on one consumer process"
        )


class GuaranteeError(ExchangeError, ValueError):
    """A delivery guarantee the run's broker cannot give (exit code 2, before anything starts)."""


def resolve_guarantee(options: RunOptions) -> DeliveryGuarantee:
    """The run's delivery guarantee: ``options.guarantee``, else the scenario's ``guarantee``.

    Raises :class:`GuaranteeError` for exactly-once on the embedded Tansu broker: it rejects
    idempotent and transactional producers (InitProducerId), which exactly-once is made of.
    With ``--bootstrap`` the broker is taken to be Kafka.
    """
    try:
        chosen = DeliveryGuarantee(options.guarantee) if options.guarantee else options.scenario.guarantee
    except ValueError:
        raise GuaranteeError(f"--guarantee {options.guarantee!r}: expected at-least-once or exactly-once") from None
    if chosen is DeliveryGuarantee.exactly_once and options.bootstrap is None and brokers.parse(options.broker)[0] == "tansu":
        named = "--guarantee exactly-once" if options.guarantee else f"{options.scenario.name}: guarantee exactly-once"
        raise GuaranteeError(
            f"{named} needs Apache Kafka (--broker kafka, kafka:3 or --bootstrap): "
            "the embedded Tansu broker rejects idempotent and transactional producers"
        )
    return chosen


class TopicLayoutError(ExchangeError, ValueError):
    """A ``--topics`` layout the scenario cannot take (exit code 2, before anything starts)."""


def resolve_topics(options: RunOptions) -> IngressTopics:
    """The run's ingress topic layout: ``options.topics`` (``exchange run --topics``), else the scenario's ``topics``.

    A layout given on the command line keeps the scenario's ``partitions`` and its name template
    when the template suits the new layout, else takes the layout's default names. Raises
    :class:`TopicLayoutError` for an unknown layout or names that collide (schemas/scenario.py ``topic_errors``).
    """
    setting = options.scenario.topics
    if options.topics is None:
        return setting
    from pydantic import ValidationError

    try:
        layout = IngressTopics.model_validate({"layout": options.topics}).layout
    except ValidationError:
        raise TopicLayoutError(f"--topics {options.topics!r}: expected {', '.join(t.value for t in TopicLayout)}") from None
    name = setting.name if setting.name is not None and template_problem(setting.name, layout) is None else None
    chosen = IngressTopics(layout=layout, name=name, partitions=setting.partitions)
    problems = topic_errors(options.scenario.model_copy(update={"topics": chosen}))
    if problems:
        raise TopicLayoutError(f"--topics {layout.value}: {problems[0][1]}")
    return chosen


def parse_chaos(options: RunOptions, duration: float) -> list[chaos.Fault]:
    """The run's faults; raises :class:`chaos.ChaosError` for a spec that cannot run."""
    if not options.chaos:
        return []
    scenario = options.scenario
    return chaos.parse(
        options.chaos,
        duration=duration,
        workers=options.workers,
        departments={s.consumer for s in scenario.subscriptions},
        broker=None if options.bootstrap else chaos.BrokerHandle(*brokers.parse(options.broker)),
        restartable_consumers=not scenario.reactions and not scenario.workflows,
    )


def check_external(options: RunOptions, scenario: Scenario) -> dict[tuple[str, str | None], int]:
    """The run's ``--external`` slots by (role, hub); :class:`remote.ExternalError` for a spec
    that cannot run: a bad part, no ``--bootstrap``, ``--chaos`` beside it."""
    if not options.external:
        return {}
    counts = remote.parse_external(options.external, scenario.hubs_in_use)
    if not options.bootstrap:
        raise remote.ExternalError(
            "--external needs --bootstrap HOST:PORT: workers on other machines must reach the run's Kafka, and the embedded broker listens here only"
        )
    if options.chaos:
        raise remote.ExternalError("--chaos cannot be combined with --external: its faults act on processes this machine started")
    for role, workers in (("producers", options.producer_workers), ("consumers", options.consumer_workers)):
        n = counts.get((role, None))
        if n is not None and workers > 1 and workers != n:
            raise remote.ExternalError(
                f"--external {role}={n} and --{role[:-1]}-workers {workers}: every {role[:-1]} worker of a run is external or none is; give one count"
            )
    return counts
