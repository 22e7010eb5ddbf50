"""Measuring a worker's clock offset to the controller over Kafka (NTP-style round trips).

The controller runs a :class:`ClockServer` on the run's clock topic (:func:`clock_topic`,
one partition); a worker calls :func:`measure_offset` at start-up: it sends a few dozen
:class:`~schemas.clock.ClockProbe` s one after another, the server answers each with a
:class:`~schemas.clock.ClockReply` carrying its receive and send times, and the round trips
go to the estimator (``exchange/runner/clock.py``: the median of the minimum-delay quarter,
with an error bound). Both sides read the wall clock raw (``time.time_ns``): the offset is
between the uncorrected clocks.

The broker is in both paths, so each round trip's delay includes two produce requests and
two fetches. Tansu holds an empty fetch for the whole fetch wait instead of answering when
data arrives, so both sides fetch with a short wait (2 ms: the client profile ``clock``); the
minimum-delay filter keeps the round trips where no fetch was kept waiting. Works on
Tansu and on Apache Kafka alike.

Typical figures on one machine (2 cores, loaded): 32 probes in 0.2-0.5 s, minimum delay
3-10 ms, estimate within a millisecond of 0.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from types import TracebackType
from typing import Self

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from exchange.errors import ExchangeError, kafka_errors
from exchange.kafka import clients
from exchange.kafka.fetch_sessions import closing_fetches
from exchange.kafka.topics import create_topics
from exchange.runner.clock import ClockError, Sample, estimate, set_offset
from schemas.clock import CLOCK_MESSAGE, ClockOffset, ClockProbe, ClockReply

__all__ = ["DEFAULT_SAMPLES", "ClockProbeFailed", "ClockServer", "add_clock_arguments", "clock_at_start", "clock_topic", "measure_offset"]

log = logging.getLogger(__name__)

#: Round trips a measurement makes by default (a few dozen: < 1 s on a loaded machine).
DEFAULT_SAMPLES = 32
#: The fewest answered probes an estimate is made from.
MIN_SAMPLES = 4
#: How long a worker waits for the clock topic's partition to have a live leader, s: more than
#: Kafka's ``broker.session.timeout.ms`` (9 s by default), after which a dead node's
#: leaderships move to the live replicas.
LEADER_WAIT_S = 30.0


class ClockProbeFailed(ExchangeError, RuntimeError):
    """Too few probes answered to estimate a clock offset: the message names the topic and the broker."""


def clock_topic(run_id: str) -> str:
    """The clock topic of run ``run_id``: ``dx.clock.<run id>``."""
    return f"dx.clock.{run_id}"


async def _stop(client) -> None:  # type: ignore[no-untyped-def]
    """Stop an aiokafka client; with the broker gone, a consumer's own fetch cancellation is
    swallowed (:func:`~exchange.kafka.fetch_sessions.closing_fetches`)."""
    await closing_fetches(client.stop())


async def _at_end(consumer, topic: str) -> TopicPartition:  # type: ignore[no-untyped-def]
    """Assign the topic's one partition and resolve the position at its end (before anything is sent)."""
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    return tp


class ClockServer:
    """Answers the clock probes of a run's workers on ``topic``, in the running event loop.

    ``async with ClockServer(bootstrap=…, topic=…)`` (or :meth:`start` / :meth:`stop`).
    :meth:`start` creates the topic (one partition, ``replication_factor`` replicas) when
    it does not exist and returns once probes sent from then on will be answered;
    :meth:`stop` deletes it again with ``delete_topic`` (a cluster that outlives the run:
    one topic per run would pile up), giving up after 5 s. ``answered`` counts the probes
    answered so far.
    """

    def __init__(
        self, *, bootstrap: str, topic: str, replication_factor: int = 1, delete_topic: bool = False, broker_kind: str | None = None
    ) -> None:
        self.bootstrap, self.topic, self.replication_factor = bootstrap, topic, replication_factor
        self.delete_topic = delete_topic
        self.answered = 0
        # it waits for probes the whole run: on Kafka a fetch ends when a probe arrives, so a long
        # wait costs a probe nothing, where the profile's 2 ms (for Tansu, which holds an empty
        # fetch for the whole wait) cost 500 fetches a second, ~0.05 cores of the controller's
        # and more of the broker's on Dongguan (docs/performance.md)
        wait = {"fetch_max_wait_ms": clients.KAFKA_FETCH_WAIT_MS} if broker_kind == "kafka" else {}
        self._consumer = clients.consumer("clock", bootstrap, **wait)
        self._producer = clients.producer("clock", bootstrap)
        self._task: asyncio.Task | None = None

    async def start(self) -> Self:
        await create_topics(self.bootstrap, {self.topic: 1}, replication_factor=self.replication_factor)
        with kafka_errors(self.bootstrap, f"starting the clock server on {self.topic}"):
            try:
                await self._producer.start()
                await self._consumer.start()
                await _at_end(self._consumer, self.topic)
            except BaseException:
                await self._close()
                raise
        self._task = asyncio.create_task(self._serve(), name=f"clock-server {self.topic}")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()
        if self.delete_topic:
            try:
                await asyncio.wait_for(self._delete(), 5.0)
            except (TimeoutError, ExchangeError) as exc:
                log.warning("could not delete the clock topic %s: %s", self.topic, exc or "no answer in 5 s")

    async def _delete(self) -> None:
        async with clients.started(clients.admin("topology", self.bootstrap), self.bootstrap, f"deleting {self.topic}") as admin:
            await admin.delete_topics([self.topic])

    async def _close(self) -> None:
        await _stop(self._consumer)
        await _stop(self._producer)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _serve(self) -> None:
        """Answer probes until cancelled; a Kafka error (a broker paused or restarting under
        ``--chaos``) is logged and the serving goes on: a worker started later still needs it."""
        while True:
            try:
                await self._answer()
            except KafkaError as exc:
                log.warning("clock server on %s: %r; going on", self.topic, exc)
                await asyncio.sleep(0.5)

    async def _answer(self) -> None:
        consumer, producer, topic = self._consumer, self._producer, self.topic
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            t1 = time.time_ns()
            for records in batches.values():
                for record in records:
                    try:
                        probe = CLOCK_MESSAGE.validate_json(record.value or b"")
                    except ValidationError:
                        log.warning("%s offset %d: not a clock probe or reply; skipped", topic, record.offset)
                        continue
                    if not isinstance(probe, ClockProbe):
                        continue
                    reply = ClockReply(worker=probe.worker, nonce=probe.nonce, seq=probe.seq, t0_ns=probe.t0_ns, t1_ns=t1, t2_ns=time.time_ns())
                    await producer.send(topic, reply.model_dump_json().encode(), partition=0)
                    self.answered += 1


async def measure_offset(
    *,
    bootstrap: str,
    topic: str,
    worker: str,
    samples: int = DEFAULT_SAMPLES,
    timeout_s: float = 10.0,
    probe_timeout_s: float = 1.0,
    leader_wait_s: float = LEADER_WAIT_S,
) -> ClockOffset:
    """This machine's clock offset to the :class:`ClockServer` on ``topic`` (server − local, ns).

    Sends ``samples`` probes one after another (the next when the last was answered, or
    after ``probe_timeout_s``) and estimates from those answered
    (:func:`exchange.runner.clock.estimate`). ``worker`` names the asker in the probes.

    ``timeout_s`` is the controller's time to answer: it counts from the moment the broker
    has taken the first probe. Before that, when the topic exists, the worker waits up to
    ``leader_wait_s`` for its partition to have a live leader: a worker (re)started just
    after the leader's node died (``--chaos kill-broker:N,kill-router:0``) finds it there
    until Kafka's controller fences the node, ``broker.session.timeout.ms`` (9 s by default)
    later. A topic that does not exist gets ``timeout_s`` only.

    Raises :class:`ClockProbeFailed` when fewer than :data:`MIN_SAMPLES` were answered
    (no clock server on the topic) or the partition had no live leader in time, and the
    :class:`~exchange.errors.BrokerUnreachable` of a broker that does not answer.
    """
    nonce = secrets.token_hex(4)
    got: list[Sample] = []
    deadline = time.monotonic() + timeout_s
    taken = False  # the broker has the first probe: the answers' window has started
    wait, exists = timeout_s, False
    consumer = clients.consumer("clock", bootstrap, client_id=f"dx-clock-{worker}")
    producer = clients.producer("clock", bootstrap, client_id=f"dx-clock-{worker}")
    with kafka_errors(bootstrap, f"measuring the clock offset on {topic}"):
        try:
            await producer.start()
            await consumer.start()
            exists = topic in await consumer.topics()
            wait = leader_wait_s if exists else timeout_s
            leader_by = time.monotonic() + wait  # one wait for the partition's end offset and the first probe
            await asyncio.wait_for(_at_end(consumer, topic), wait)
            for seq in range(samples):
                if taken and time.monotonic() >= deadline:
                    break
                t0 = time.time_ns()
                sent = await producer.send(topic, ClockProbe(worker=worker, nonce=nonce, seq=seq, t0_ns=t0).model_dump_json().encode(), partition=0)
                if not taken:
                    await asyncio.wait_for(sent, max(0.0, leader_by - time.monotonic()))
                    taken, deadline = True, time.monotonic() + timeout_s
                sample = await _reply(consumer, worker, nonce, seq, min(deadline, time.monotonic() + probe_timeout_s))
                if sample is not None:
                    got.append(sample)
        except TimeoutError:
            pass  # the topic's partition never had a live leader: too few samples below
        finally:
            await _stop(consumer)
            await _stop(producer)
    if not taken:
        why = f"its partition had no live leader within {wait:g} s" if exists else "the broker does not list the topic"
        raise ClockProbeFailed(f"0 of {samples} clock probes answered on {topic} at {bootstrap}: {why}; is the run's controller up?")
    if len(got) < MIN_SAMPLES:
        raise ClockProbeFailed(
            f"{len(got)} of {samples} clock probes answered on {topic} at {bootstrap} within {timeout_s:g} s "
            f"(at least {MIN_SAMPLES} needed): is the run's controller up?"
        )
    try:
        return estimate(got)
    except ClockError as exc:
        raise ClockProbeFailed(f"clock probes on {topic} at {bootstrap}: {exc}") from None


async def _reply(consumer, worker: str, nonce: str, seq: int, until: float) -> Sample | None:  # type: ignore[no-untyped-def]
    """The round trip of probe ``seq`` once its reply is read (stamped ``t3`` then); None at ``until``."""
    while (left := until - time.monotonic()) > 0:
        batches = await consumer.getmany(timeout_ms=max(1, int(left * 1000)))
        t3 = time.time_ns()
        for records in batches.values():
            for record in records:
                try:
                    msg = CLOCK_MESSAGE.validate_json(record.value or b"")
                except ValidationError:
                    continue
                if isinstance(msg, ClockReply) and msg.worker == worker and msg.nonce == nonce and msg.seq == seq:
                    return Sample(msg.t0_ns, msg.t1_ns, msg.t2_ns, t3)
    return None


# ---------------------------------------------------------------- the role processes' side


def add_clock_arguments(parser: argparse.ArgumentParser) -> None:
    """The clock options every role process takes (``python -m producers|consumers|exchange.router``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--clock-offset-ns",
        type=int,
        default=0,
        help="this machine's clock offset to the controller's (controller minus local, ns), added to every wall-clock time read",
    )
    group.add_argument("--clock-topic", help="measure the clock offset against the controller's clock server on this topic at start-up, and apply it")
    parser.add_argument(
        "--no-clock-correction",
        dest="clock_correction",
        action="store_false",
        help="with --clock-topic: measure and report the offset, but read the local clock uncorrected",
    )


def clock_at_start(args: argparse.Namespace, bootstrap: str, worker: str) -> ClockOffset | None:
    """Set this process's clock offset (:func:`exchange.runner.clock.set_offset`) from the
    options of :func:`add_clock_arguments`; returns the measurement (for the ``ready``
    message), None when the offset was given rather than measured.

    Measures on a thread of its own, so that no event loop is left behind in the main
    thread for Faust to trip over. Raises :class:`ClockProbeFailed`.
    """
    if not args.clock_topic:
        set_offset(args.clock_offset_ns)
        return None
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clock") as pool:
        got = pool.submit(asyncio.run, measure_offset(bootstrap=bootstrap, topic=args.clock_topic, worker=worker)).result()
    set_offset(got.offset_ns if args.clock_correction else 0)
    log.info(
        "clock offset to the controller: %+.3f ms ± %.3f ms (%s)",
        got.offset_ns / 1e6,
        got.error_ns / 1e6,
        "applied" if args.clock_correction else "not applied",
    )
    return got
