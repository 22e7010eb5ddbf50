"""Publishing control events (applications, approvals…) to a platform's control topic."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas.applications import ControlEvent


async def publish_control(bootstrap: str, topic: str, event: ControlEvent) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.model_dump_json().encode(), key=event.application.encode())
    finally:
        await producer.stop()
