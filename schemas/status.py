"""Status messages: what every process of a run reports to the run controller.

A child process (the producers, a router worker, the consumers, the benchmark's
pass-through) sends a ``ready`` message once it can work, a ``stats`` message about every
second, a ``final`` report when it stops, an ``error`` when it fails and a ``crashed``
message when something inside it crashed while it lives on. Each message is one
:class:`StatusMessage`: an envelope (format version ``v``, the :class:`Sender` — run id,
role, worker, hub, pid — and the send time) around a :data:`Body`, a union discriminated
on ``kind`` and, for the role-specific bodies, on ``role``.

The messages are self-describing and carry nothing of the transport: today each process
appends them as JSON lines to its file in the run directory
(:class:`exchange.runner.status.StatusWriter`); the same bytes can be a Kafka record's
value. :func:`encode` and :func:`decode` are the one codec; a message that cannot be read
raises :class:`MessageError` naming where it came from (file and line).

Counters keyed by several strings travel as lists of named rows (:class:`DecisionCount`
and the like: JSON object keys can only be single strings); latency histograms travel
encoded as :func:`exchange.results.latency.encode` makes them (HdrHistogram, compressed,
base64), so that the controller merges them before reading any percentile.

``exchange schema status`` prints the JSON Schema of :class:`StatusMessage`.
This module imports nothing of the project.
"""

from __future__ import annotations

import time
from collections import Counter
from enum import StrEnum
from typing import Annotated, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from schemas.clock import ClockOffset

VERSION: Literal[1] = 1  #: the format version every message carries as ``v``; a reader refuses another


class Role(StrEnum):
    """What a process does in a run (the role names of ``exchange run --external``, issue 18)."""

    producers = "producers"  # every publishing department, in one process or each of P workers publishing one record in P
    router = "router"  # one router worker of one hub
    consumers = "consumers"  # every subscribing department and the accountant, in one process or divided between workers
    passthrough = "passthrough"  # the benchmark's plain aiokafka copy (exchange/bench/raw.py)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


EncodedHistogram = Annotated[
    str, Field(description="an HdrHistogram of microseconds, compressed and base64-encoded (exchange.results.latency.encode)")
]
IntervalQuantiles = Annotated[
    dict[str, float],
    Field(
        description="one interval's figures from its raw samples: avg, 50pct … 99999pct and max "
        "(exchange.results.latency.sample_quantiles); empty when the interval had no samples"
    ),
]


# ---------------------------------------------------------------- counters as named rows


class _CountRow(_Model):
    """A counter's entry: the key's parts by name, then ``n``."""

    n: int = Field(ge=0)

    @classmethod
    def rows(cls, counter: Counter | dict) -> list[Self]:
        """One row per ``(key parts…) → n`` entry of ``counter``, keys in the fields' order."""
        names = [name for name in cls.model_fields if name != "n"]
        return [cls(**dict(zip(names, key if isinstance(key, tuple) else (key,), strict=True)), n=n) for key, n in counter.items()]


class DecisionCount(_CountRow):
    """Outcomes of one decision for a subscription (or an entry, where no subscription applies)."""

    scope: str = Field(description="subscription id, or the entry id for a record no subscription applies to")
    decision: str
    reason: str


class DeadLetterCount(_CountRow):
    """Dead letters (or records in them) of one entry for one reason; ``?`` for an entry that cannot be read."""

    entry: str
    reason: str


class QualityEventCount(_CountRow):
    """一数一源 quality events: copies of an item a department sent that disagree with the authority."""

    item: str
    department: str


class VerificationCount(_CountRow):
    """Router checks of copied items against their authoritative source."""

    item: str
    department: str
    outcome: str = Field(description="verified, conflict, unverified or invalid_key")


class ControlActionCount(_CountRow):
    """Control-plane actions a router took or refused."""

    action: str
    outcome: str = Field(description="accepted or refused")


# ---------------------------------------------------------------- bodies: ready

ReadyClock = Annotated[
    ClockOffset | None,
    Field(description="the process's clock offset to the controller, measured at start-up (exchange/kafka/timesync.py); null: not measured"),
]


class ProducersReady(_Model):
    """The producers' clients are started; publishing starts next."""

    kind: Literal["ready"] = "ready"
    role: Literal[Role.producers] = Role.producers
    departments: int = Field(ge=0, description="publishing departments, their clients started")
    clock: ReadyClock = None


class RouterReady(_Model):
    """The router worker joined its group and can route."""

    kind: Literal["ready"] = "ready"
    role: Literal[Role.router] = Role.router
    seconds: float = Field(ge=0, description="from the process's start to ready, s")
    clock: ReadyClock = None


class ConsumersReady(_Model):
    """Every subscriber and the accountant are started."""

    kind: Literal["ready"] = "ready"
    role: Literal[Role.consumers] = Role.consumers
    subscribers: int = Field(ge=0, description="subscribing departments, their clients started")
    clients: int = Field(
        default=0,
        ge=0,
        description="Kafka consumers reading for them (--subscriber-clients: shared, one, and one more for departments "
        "that receive only quiet entries; per-department, one each)",
    )
    restored: bool = Field(description="resumed from a checkpoint (a restart under --chaos)")
    clock: ReadyClock = None


class PassthroughReady(_Model):
    """The benchmark's pass-through is reading."""

    kind: Literal["ready"] = "ready"
    role: Literal[Role.passthrough] = Role.passthrough


# ---------------------------------------------------------------- bodies: stats


class ProducersStats(_Model):
    """The producers' figures so far, and the last interval's latencies."""

    kind: Literal["stats"] = "stats"
    role: Literal[Role.producers] = Role.producers
    t: float = Field(description="seconds since the schedule started")
    produced: int = Field(ge=0, description="records acknowledged so far")
    sent: int = Field(ge=0, description="records handed to the client so far")
    retried: int = Field(ge=0, description="sends retried so far")
    publish_latency: IntervalQuantiles = Field(description="send to acknowledgement, ms")
    publish_delay_us: IntervalQuantiles = Field(description="intended send time to actual send, µs")


class RouterStats(_Model):
    """A router worker's figures so far; a killed worker's last one stands in for its final report."""

    kind: Literal["stats"] = "stats"
    role: Literal[Role.router] = Role.router
    records: int = Field(ge=0, description="ingress records taken in")
    lag: int = Field(ge=0, description="ingress records behind the end offsets, at the last batch")
    acked: int = Field(ge=0, description="records whose output the broker acknowledged")
    batches: int = Field(ge=0)
    first_ns: int = Field(description="first batch taken in, epoch ns (0: none yet)")
    last_ack_ns: int = Field(description="last batch's output acknowledged, epoch ns")
    peak_rss_bytes: int = Field(ge=0)
    dead_lettered: int = Field(ge=0)
    handling_s: float = Field(description="time spent routing, s")
    committing_s: float = Field(description="time spent committing offsets, s")
    verifications: list[VerificationCount]
    control_actions: list[ControlActionCount]


class ClockSkewCount(_Model):
    """Deliveries from one source whose latency cannot be true (exchange/results/latency.py ClockSkew)."""

    records: int = Field(ge=0)
    min_ms: float
    max_ms: float


class ConsumersTotals(_Model):
    """The consumer process's counts so far (in ``stats`` and ``final`` alike)."""

    received: int = Field(ge=0)
    first_ns: int = Field(description="first record received, epoch ns (0: none yet)")
    last_ns: int = Field(description="last record received, epoch ns")
    delivered: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    unlabelled: int = Field(ge=0)
    foreign: int = Field(ge=0, description="records of another run")
    denied: int = Field(ge=0)
    dead_lettered: int = Field(ge=0, description="outcomes the dead letters account for")
    dead_letter_records: int = Field(ge=0)
    audited_deliveries: int = Field(ge=0)
    conflicts: int = Field(ge=0, description="一数一源 quality events")
    lag: dict[str, int] = Field(description="department → records behind on its delivery topic")
    clock_skew: dict[str, ClockSkewCount] = Field(description="by source department")
    reactions_produced: dict[str, int] = Field(description="entry → records the reactions published")
    reactions_pending: int = Field(ge=0, description="reactions not yet acknowledged")


class FlowInterval(_Model):
    """One flow's end-to-end latency in one interval, ms."""

    p50_ms: float
    p99_ms: float
    n: int = Field(ge=0, description="deliveries in the interval")


class ConsumersStats(ConsumersTotals):
    """The consumers' counts so far, and the last interval's end-to-end latencies."""

    kind: Literal["stats"] = "stats"
    role: Literal[Role.consumers] = Role.consumers
    e2e: IntervalQuantiles = Field(description="end to end over every flow, ms")
    flow_latency: dict[str, FlowInterval] = Field(description="by subscription; flows without deliveries left out")
    lag_known: bool = Field(description="every subscriber knows its end offsets")


# ---------------------------------------------------------------- bodies: final


class ProducersFinal(_Model):
    """The producers' report once the schedule is over: what was published, and its latency histograms."""

    kind: Literal["final"] = "final"
    role: Literal[Role.producers] = Role.producers
    elapsed_s: float = Field(description="from the schedule's start to the last acknowledgement, s")
    produced: dict[str, int] = Field(description="entry → records acknowledged")
    sent: int = Field(ge=0)
    retried: int = Field(ge=0)
    publish_delay: EncodedHistogram
    publish_latency: EncodedHistogram
    warmup_published: int = Field(ge=0)
    warmup_publish_delay: EncodedHistogram
    warmup_publish_latency: EncodedHistogram


class RouterFinal(_Model):
    """A router worker's report when it stops."""

    kind: Literal["final"] = "final"
    role: Literal[Role.router] = Role.router
    records: int = Field(ge=0)
    batches: int = Field(ge=0)
    decisions: list[DecisionCount]
    verifications: list[VerificationCount]
    control_actions: list[ControlActionCount]
    dead_letters: dict[str, int] = Field(description="reason → dead letters this worker wrote")


class FlowReport(_Model):
    """One subscription's deliveries; the warm-up's apart (exchange/runner/warmup.py)."""

    within_cycle: int = Field(ge=0, description="batch entries: deliveries within their cycle")
    delivered: int = Field(ge=0, description="including the warm-up's")
    duplicates: int = Field(ge=0)
    e2e: EncodedHistogram
    e2e_intended: EncodedHistogram
    warmup_delivered: int = Field(ge=0)
    warmup_e2e: EncodedHistogram
    warmup_e2e_intended: EncodedHistogram


class PathReport(_Model):
    """Deliveries that went one way through the hubs of a cascade."""

    hubs: list[str] = Field(description="the hubs a record went through, in order")
    e2e: EncodedHistogram
    warmup: int = Field(ge=0, description="deliveries in the warm-up (not in the histogram)")


class WorkflowReport(_Model):
    """Cases of a workflow (a chain of reactions): completed, still open, and their times."""

    completed: int = Field(ge=0)
    incomplete: int = Field(ge=0)
    times: EncodedHistogram


class SamplesReport(_Model):
    """What became of the delivery samples (consumers/samples.py)."""

    written: int = Field(ge=0)
    without_source: int = Field(ge=0)
    lookup_s: float
    records_read: int = Field(ge=0)
    seek_by_time: bool
    ended: str


class ConsumersFinal(ConsumersTotals):
    """The consumers' report when they stop: counts per flow, hop and path, encoded histograms, the accountant's counters."""

    kind: Literal["final"] = "final"
    role: Literal[Role.consumers] = Role.consumers
    flows: dict[str, FlowReport] = Field(description="by subscription id")
    hops: dict[str, EncodedHistogram] = Field(description="segment → latency, past the warm-up")
    warmup_hops: dict[str, int] = Field(description="segment → deliveries in the warm-up")
    paths: dict[str, PathReport]
    decisions: list[DecisionCount]
    dead_letters: list[DeadLetterCount]
    undecodable: list[DeadLetterCount] = Field(description="records in ingress batches that could not be decoded")
    foreign_dead_letters: list[DeadLetterCount] = Field(description="dead letters of records of another run")
    quality_events: list[QualityEventCount]
    samples: SamplesReport | None = Field(description="None: no samples were taken")
    workflows: dict[str, WorkflowReport]


class PassthroughFinal(_Model):
    """The pass-through copied every record it was asked to."""

    kind: Literal["final"] = "final"
    role: Literal[Role.passthrough] = Role.passthrough
    records: int = Field(ge=0)
    first_ns: int
    last_ns: int


# ---------------------------------------------------------------- bodies: failures


class Error(_Model):
    """The process failed and is exiting; ``message`` is the exception, one line."""

    kind: Literal["error"] = "error"
    message: str


class Crashed(_Model):
    """Something inside the process crashed (an agent, task, timer or thread) while it lives on
    (exchange/runner/processes.py report_crashes); the run fails with ``message``."""

    kind: Literal["crashed"] = "crashed"
    message: str


ReadyBody = Annotated[ProducersReady | RouterReady | ConsumersReady | PassthroughReady, Field(discriminator="role")]
StatsBody = Annotated[ProducersStats | RouterStats | ConsumersStats, Field(discriminator="role")]
FinalBody = Annotated[ProducersFinal | RouterFinal | ConsumersFinal | PassthroughFinal, Field(discriminator="role")]
#: what a message says: told apart by ``kind``, then by ``role`` for ready, stats and final
Body = Annotated[ReadyBody | StatsBody | FinalBody | Error | Crashed, Field(discriminator="kind")]
#: any body model, for annotations (what a writer takes)
AnyBody = (
    ProducersReady
    | RouterReady
    | ConsumersReady
    | PassthroughReady
    | ProducersStats
    | RouterStats
    | ConsumersStats
    | ProducersFinal
    | RouterFinal
    | ConsumersFinal
    | PassthroughFinal
    | Error
    | Crashed
)

# ---------------------------------------------------------------- the envelope


class Sender(_Model):
    """Who sent a message: which run, which role, which worker of it, which process."""

    run_id: str = Field(description="the run's id (exchange run), empty outside a run")
    role: Role
    worker: str = Field("0", description="the worker's number within its role (router: within its hub)")
    hub: str | None = Field(None, description="router: the hub (platform id) the worker routes for")
    pid: int = Field(description="the process id: a restarted worker (--chaos) keeps its name, not its pid")


class StatusMessage(_Model):
    """One message from a process to the run controller: an envelope (format version, send time,
    sender) around its body. The unit the codec (``encode``, ``decode``) handles."""

    v: Literal[1] = Field(VERSION, description="format version")
    sent_ns: int = Field(description="the sender's clock when it sent the message, epoch ns")
    sender: Sender = Field(description="who sent it")
    body: Body = Field(description="what it says: told apart by kind, and for ready, stats and final by role too")

    @model_validator(mode="after")
    def _role_matches(self) -> StatusMessage:
        role = getattr(self.body, "role", None)
        if role is not None and role != self.sender.role:
            raise ValueError(f"a {role} {self.body.kind} body in a message from a {self.sender.role} process")
        return self

    @property
    def kind(self) -> str:
        return self.body.kind

    @property
    def pid(self) -> int:
        return self.sender.pid


def message(sender: Sender, body: AnyBody, sent_ns: int | None = None) -> StatusMessage:
    """Wrap ``body`` for sending now (``sent_ns``: the wall clock by default)."""
    return StatusMessage(sent_ns=time.time_ns() if sent_ns is None else sent_ns, sender=sender, body=body)


# ---------------------------------------------------------------- the codec


class MessageError(ValueError):
    """Bytes that are not a status message of this version; the text names where they came from."""


_ADAPTER = TypeAdapter(StatusMessage)


def encode(message: StatusMessage) -> bytes:
    """One message as compact JSON (UTF-8, no newline inside: a file line or a Kafka value)."""
    return message.model_dump_json().encode()


def decode(data: bytes, where: str = "status message") -> StatusMessage:
    """The message in ``data``; raises :class:`MessageError` starting with ``where``
    (``run/router-0.jsonl:12``) and saying what is wrong: not JSON, another version, or
    the first field that does not fit."""
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise MessageError(f"{where}: {_what_is_wrong(data, exc)}") from None


def _what_is_wrong(data: bytes, exc: ValidationError) -> str:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as bad:
        return f"not JSON ({bad})"
    if not isinstance(doc, dict):
        return f"not a JSON object but {type(doc).__name__}"
    if "v" not in doc:
        return f"no format version (v): not a status message of version {VERSION}"
    if doc["v"] != VERSION:
        return f"a status message of version {doc['v']!r}; this reader knows version {VERSION}"
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "the message"
    return f"{field}: {error['msg']} (status message version {VERSION}; {exc.error_count()} error(s))"


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of :class:`StatusMessage` (``exchange schema status``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **StatusMessage.model_json_schema()}
