"""Publishing control events (applications, approvals…) to a platform's control topic,
and waiting for the router's verdict on them.

The router answers every control event on the platform's verdict topic
(``dx.<platform>.verdicts``, one partition) with a :class:`ControlVerdict` carrying the
event's ``request_id``: accepted with the application's new state, or refused with the
reason. :func:`request_control` reads that topic from its end *before* publishing, so the
answer cannot be missed, and returns the verdict with its own request id.
"""

from __future__ import annotations

import asyncio
import secrets

from aiokafka import AIOKafkaConsumer, TopicPartition

from exchange.errors import EXIT_FAILED, ExchangeError
from exchange.kafka import clients
from exchange.kafka.topics import topic_partitions
from schemas.applications import ControlEvent, ControlVerdict

DEFAULT_TIMEOUT_S = 15.0


class Refused(ExchangeError):
    """The router refused a control event; the message is its reason (exit code 1)."""

    exit_code = EXIT_FAILED
    label = "refused"

    def __init__(self, verdict: ControlVerdict) -> None:
        super().__init__(f"{verdict.action} of {verdict.application} by {verdict.actor}: {verdict.reason}")
        self.verdict = verdict


class NoVerdict(ExchangeError):
    """No router answered within the timeout (none running for the platform?)."""


def new_request_id() -> str:
    return secrets.token_hex(8)


async def publish_control(bootstrap: str, topic: str, event: ControlEvent) -> None:
    """Publish ``event`` (keyed by its application) and wait for the broker's ack."""
    async with clients.started(clients.producer("control", bootstrap), bootstrap, f"publishing to {topic}") as producer:
        await producer.send_and_wait(topic, event.model_dump_json().encode(), key=event.application.encode())


async def request_control(bootstrap: str, topic: str, verdicts: str, event: ControlEvent, timeout_s: float = DEFAULT_TIMEOUT_S) -> ControlVerdict:
    """Publish ``event`` to ``topic`` and return the router's verdict on it from ``verdicts``.

    The event gets a request id when it has none. Raises :class:`Refused` when the router
    refused it, :class:`NoVerdict` when no verdict came within ``timeout_s`` seconds (the
    event stays on the control topic: a router that starts later applies it), and
    :class:`~exchange.errors.BrokerUnreachable` / :class:`~exchange.errors.TopicNotFound`
    when the broker or the verdict topic is not there.
    """
    if not event.request_id:
        event = event.model_copy(update={"request_id": new_request_id()})
    async with clients.started(clients.consumer("control", bootstrap), bootstrap, f"reading {verdicts}") as consumer:
        parts = await topic_partitions(consumer, verdicts, bootstrap)
        tps = [TopicPartition(verdicts, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # fix the start before publishing: the answer comes after it
            await consumer.position(tp)
        await publish_control(bootstrap, topic, event)
        try:
            return await asyncio.wait_for(_verdict_for(consumer, event.request_id), timeout_s)
        except TimeoutError:
            raise NoVerdict(
                f"no verdict on {verdicts} within {timeout_s:g} s for {event.action} of {event.application}: "
                f"is a run going on for this platform? The event stays on {topic} and a router that starts applies it"
            ) from None


async def _verdict_for(consumer: AIOKafkaConsumer, request_id: str) -> ControlVerdict:
    while True:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for r in records:
                try:
                    verdict = ControlVerdict.model_validate_json(r.value)
                except ValueError:
                    continue  # not a verdict: someone else's message on the topic
                if verdict.request_id == request_id:
                    if not verdict.accepted:
                        raise Refused(verdict)
                    return verdict
