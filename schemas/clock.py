"""Clock offsets between a run's processes and its controller, and the probes that measure them.

A worker's clock offset is the controller's wall clock minus the worker's (ns): a worker
corrects a time it reads into the controller's time base by adding it. It is estimated
NTP-style (RFC 5905, section 8) from timestamped round trips over Kafka: the worker sends a
:class:`ClockProbe` stamped ``t0`` on the run's clock topic, the controller answers with a
:class:`ClockReply` stamped ``t1`` (probe taken in) and ``t2`` (reply sent), and the worker
stamps ``t3`` when the reply arrives (``exchange/kafka/timesync.py``; the estimator is
``exchange/runner/clock.py``).

This module imports nothing of the project.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockOffset(BaseModel):
    """One worker's estimated clock offset to the controller (controller − worker, ns)."""

    model_config = ConfigDict(extra="forbid")

    offset_ns: int = Field(description="controller's wall clock minus the worker's, ns: add it to a worker's time to get the controller's")
    error_ns: int = Field(ge=0, description="bound on the estimate's error, ns: the true offset lies within offset_ns ± error_ns")
    samples: int = Field(ge=0, description="round trips the estimate is made from (0: an offset given, not measured)")
    min_delay_ns: int = Field(ge=0, description="the shortest round trip's delay, less the controller's time between receiving and answering, ns")


class ClockProbe(_Model):
    """A worker's probe: its clock when it sent it."""

    kind: Literal["probe"] = "probe"
    worker: str = Field(description="who asks (a process name, unique within the run)")
    nonce: str = Field(description="tells a measurement's probes apart from a restarted worker's")
    seq: int = Field(ge=0)
    t0_ns: int = Field(description="the worker's wall clock when it sent the probe, epoch ns")


class ClockReply(_Model):
    """The controller's answer to one probe."""

    kind: Literal["reply"] = "reply"
    worker: str
    nonce: str
    seq: int = Field(ge=0)
    t0_ns: int = Field(description="the probe's t0, echoed")
    t1_ns: int = Field(description="the controller's wall clock when it took the probe in, epoch ns")
    t2_ns: int = Field(description="the controller's wall clock when it sent this reply, epoch ns")


ClockMessage = Annotated[ClockProbe | ClockReply, Field(discriminator="kind")]
CLOCK_MESSAGE: TypeAdapter[ClockProbe | ClockReply] = TypeAdapter(ClockMessage)
