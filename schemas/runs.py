"""Runs that span machines: the announcements topic and each run's control topic (issue 18).

A controller started with ``exchange run … --external ROLE=N`` leaves some of the run's
processes (its *slots*) to workers on other machines, which share nothing with it but the
Kafka cluster. Two kinds of topics carry everything between them, like OpenMessaging
Benchmark's HTTP workers but over the broker the run already has:

``exchange.runs`` (:data:`RUNS_TOPIC`, 1 partition, key = run id)
    The runs a controller offers: a :class:`RunAnnouncement` (the run id, the runtime
    scenario, duration, seed, every external slot and its command line, the join
    deadline) when it starts, a :class:`RunEnded` when it is over. ``exchange join
    --next`` takes the latest announced run that has not ended and whose deadline has not
    passed.

``exchange.run.<run_id>`` (:func:`run_topic`, 1 partition, so everything is in order)
    One run's conversation, :data:`RunMessage` s keyed by worker id. Worker → controller:
    :class:`JoinRequest`, :class:`SlotStarted`, :class:`StatusRelay` (a child's status
    line, the bytes of :func:`schemas.status.encode` unchanged), :class:`LogRelay`,
    :class:`Heartbeat`, :class:`FileRelay` (the producers' warm-up schedule, the consumers'
    samples), :class:`SlotExited`. Controller → worker: :class:`SlotGranted` /
    :class:`SlotRefused`, :class:`StartSlot`, :class:`FileRelay` (the schedule, to the
    consumers), :class:`StopSlot`, :class:`RunEnded`.

A slot's command line holds placeholders the worker fills with its own paths and address
(:data:`PLACEHOLDERS`), so the process it starts is exactly the one a local run starts.
Names follow Kafka's conventions for topics (dot-separated, lowercase) and OpenMessaging
Benchmark's for workers. ``exchange schema runs`` prints the JSON Schema of both unions.
This module imports nothing of the project.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

VERSION: Literal[1] = 1
RUNS_TOPIC = "exchange.runs"  #: the announcements topic
RUN_TOPIC_PREFIX = "exchange.run."  #: + run id: one run's control topic
#: what a slot's args may hold, filled by whoever starts the process (the controller locally, ``exchange join`` remotely)
PLACEHOLDERS = {
    "{scenario}": "the runtime scenario file (scenario.runtime.json)",
    "{status}": "the status file the process appends its messages to",
    "{datadir}": "the process's own data directory (a router's Faust tables)",
    "{schedule}": "the warm-up schedule file the producers write and the consumers read",
    "{bootstrap}": "HOST:PORT of the Kafka cluster as this machine reaches it",
}
_RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def run_topic(run_id: str) -> str:
    """``exchange.run.<run_id>``; ValueError for an id that cannot be part of a topic name."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r}: letters, digits, '.', '_' and '-' only (a Kafka topic name)")
    return RUN_TOPIC_PREFIX + run_id


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Slot(_Model):
    """One process of a run that a worker may take: its name (the run directory's
    ``<name>.jsonl``/``.log``), role, hub and command line."""

    name: str = Field(description="producers, consumers, router-0, router-gz-1 …: the child's name in the run")
    role: Literal["producers", "router", "consumers"]
    hub: str | None = Field(None, description="router: the hub (platform id) it routes for")
    module: str = Field(description="python -m MODULE")
    args: list[str] = Field(description="the module's arguments, with placeholders (PLACEHOLDERS) for local paths")
    start: Literal["on-grant", "on-command"] = Field(
        "on-grant", description="on-command: wait for StartSlot (the producers start once routers and consumers are ready)"
    )


# ---------------------------------------------------------------- exchange.runs


class RunAnnouncement(_Model):
    """A run offered to workers (on :data:`RUNS_TOPIC`)."""

    v: Literal[1] = VERSION
    kind: Literal["announced"] = "announced"
    run_id: str
    topic: str = Field(description="the run's control topic (exchange.run.<run_id>)")
    scenario_name: str
    scenario: str = Field(description="the runtime scenario, JSON (what scenario.runtime.json holds)")
    duration_s: float
    seed: int
    slots: list[Slot] = Field(description="the slots left to workers")
    announced_ns: int = Field(description="controller's clock, epoch ns")
    join_deadline_ns: int = Field(description="workers must have joined by then (controller's clock, epoch ns)")
    controller_host: str


class RunEnded(_Model):
    """The run is over (on :data:`RUNS_TOPIC` and on the run's topic); workers stop their child and exit."""

    v: Literal[1] = VERSION
    kind: Literal["ended"] = "ended"
    run_id: str
    ok: bool = Field(description="the run completed (its result was written)")
    reason: str = Field("", description="why it failed, one line")


RunsMessage = Annotated[RunAnnouncement | RunEnded, Field(discriminator="kind")]

# ---------------------------------------------------------------- exchange.run.<run_id>: worker → controller


class JoinRequest(_Model):
    """A worker asks for a free slot of ``role`` (and ``hub``, if given)."""

    v: Literal[1] = VERSION
    kind: Literal["join"] = "join"
    worker_id: str = Field(description="unique per agent: host, pid and a random part")
    host: str
    pid: int = Field(description="the agent's pid")
    role: Literal["producers", "router", "consumers"]
    hub: str | None = None


class SlotStarted(_Model):
    """The worker started its slot's process (its status messages carry this pid)."""

    v: Literal[1] = VERSION
    kind: Literal["started"] = "started"
    worker_id: str
    slot: str
    pid: int


class StatusRelay(_Model):
    """One status line of the slot's process, unchanged (schemas.status.encode's bytes as text)."""

    v: Literal[1] = VERSION
    kind: Literal["status"] = "status"
    worker_id: str
    slot: str
    line: str


class LogRelay(_Model):
    """New output of the slot's process (its log), in order."""

    v: Literal[1] = VERSION
    kind: Literal["log"] = "log"
    worker_id: str
    slot: str
    text: str


class Heartbeat(_Model):
    """The worker lives (about every second); silence fails the run."""

    v: Literal[1] = VERSION
    kind: Literal["heartbeat"] = "heartbeat"
    worker_id: str
    slot: str | None = None


class SlotExited(_Model):
    """The slot's process ended with ``code`` (the worker asked for it, or it died)."""

    v: Literal[1] = VERSION
    kind: Literal["exited"] = "exited"
    worker_id: str
    slot: str
    code: int
    log_tail: str = ""


# ---------------------------------------------------------------- both ways


class FileRelay(_Model):
    """A small file between a slot's directory and the run directory (``schedule.json``, ``samples.jsonl``)."""

    v: Literal[1] = VERSION
    kind: Literal["file"] = "file"
    sender: str = Field(description="a worker id, or 'controller'")
    slot: str | None = Field(None, description="the slot that wrote it (from a worker)")
    name: str = Field(description="file name, no directory")
    content: str


# ---------------------------------------------------------------- controller → worker


class SlotGranted(_Model):
    """The worker got ``slot``; it starts it at once unless ``slot.start`` is on-command."""

    v: Literal[1] = VERSION
    kind: Literal["granted"] = "granted"
    worker_id: str
    slot: Slot


class SlotRefused(_Model):
    """No free slot for the worker; ``reason`` says why."""

    v: Literal[1] = VERSION
    kind: Literal["refused"] = "refused"
    worker_id: str
    reason: str


class StartSlot(_Model):
    """Start the slot's process now (the producers, once everything else is ready)."""

    v: Literal[1] = VERSION
    kind: Literal["start"] = "start"
    slot: str


class StopSlot(_Model):
    """Stop the slot's process (SIGTERM): it sends its final report and exits."""

    v: Literal[1] = VERSION
    kind: Literal["stop"] = "stop"
    slot: str


RunMessage = Annotated[
    JoinRequest
    | SlotStarted
    | StatusRelay
    | LogRelay
    | Heartbeat
    | SlotExited
    | FileRelay
    | SlotGranted
    | SlotRefused
    | StartSlot
    | StopSlot
    | RunEnded,
    Field(discriminator="kind"),
]

_RUNS = TypeAdapter(RunsMessage)
_RUN = TypeAdapter(RunMessage)
_ANY = TypeAdapter(Annotated[RunAnnouncement | RunMessage, Field(discriminator="kind")])


class RunMessageError(ValueError):
    """Bytes that are not a message of these topics; the text names the topic and offset."""


def encode(message: BaseModel) -> bytes:
    """Compact JSON (a Kafka record value)."""
    return message.model_dump_json().encode()


def decode_runs(data: bytes, where: str = RUNS_TOPIC) -> RunAnnouncement | RunEnded:
    """A message of :data:`RUNS_TOPIC`; :class:`RunMessageError` starting with ``where``."""
    try:
        return _RUNS.validate_json(data)
    except ValidationError as exc:
        raise RunMessageError(f"{where}: {_first(exc)}") from None


def decode_run(data: bytes, where: str = "run topic") -> BaseModel:
    """A message of a run's topic (:data:`RunMessage`); :class:`RunMessageError` starting with ``where``."""
    try:
        return _RUN.validate_json(data)
    except ValidationError as exc:
        raise RunMessageError(f"{where}: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "the message"
    return f"{field}: {error['msg']} (version {VERSION}; {exc.error_count()} error(s))"


def json_schema() -> dict:
    """The JSON Schema of both topics' messages (``exchange schema runs``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "exchange.runs and exchange.run.<run_id> messages",
        **_ANY.json_schema(),
    }
