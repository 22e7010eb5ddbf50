"""Test hosts (tests/hosts.py): a producer on one network namespace and a consumer on another
exchange records through a broker in the root namespace, sharing nothing but its address."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from exchange.kafka import brokers
from exchange.kafka.topics import create_topics

from .harness import broker_kinds
from .hosts import Host, hosts  # noqa: F401 - hosts is a fixture

PRODUCE = textwrap.dedent(
    """
    import asyncio, sys
    from exchange.kafka import clients

    async def main(bootstrap, topic, n):
        async with clients.started(clients.producer("control", bootstrap), bootstrap, "producing") as producer:
            for i in range(n):
                await producer.send_and_wait(topic, b"record-%d" % i, partition=0)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)
CONSUME = textwrap.dedent(
    """
    import asyncio, json, sys
    from aiokafka import TopicPartition
    from exchange.kafka import clients

    async def main(bootstrap, topic, n):
        consumer = clients.consumer("topic_reader", bootstrap, auto_offset_reset="earliest")
        async with clients.started(consumer, bootstrap, "consuming") as c:
            c.assign([TopicPartition(topic, 0)])
            got = []
            while len(got) < n:
                for records in (await c.getmany(timeout_ms=500)).values():
                    got.extend(r.value.decode() for r in records)
            print(json.dumps(got))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def reachable(host: Host, address: str, port: int) -> bool:
    code = f"import socket\ntry:\n socket.create_connection(({address!r}, {port}), timeout=2)\nexcept OSError:\n raise SystemExit(1)"
    return host.run([sys.executable, "-c", code], timeout=30).returncode == 0


@pytest.mark.parametrize("kind", broker_kinds())
def test_a_producer_and_a_consumer_on_two_hosts_meet_at_the_broker(hosts, kind, tmp_path) -> None:  # noqa: F811 - the fixture
    lan = hosts(2)
    a, b = lan.hosts
    assert a.address != b.address and a.workdir != b.workdir
    with brokers.make(kind, host=lan.gateway, log_path=tmp_path / "broker.log") as broker:
        port = int(broker.bootstrap.rsplit(":", 1)[1])
        assert broker.bootstrap.startswith(f"{lan.gateway}:")
        # each host has a network of its own: the broker is not on its loopback, only at the gateway
        assert not reachable(b, "127.0.0.1", port)
        assert reachable(b, lan.gateway, port)
        topic, n = "dx.hosts.test", 50
        asyncio.run(create_topics(broker.bootstrap, {topic: 1}, replication_factor=broker.replication_factor))
        consumer = b.popen(
            [sys.executable, "-c", CONSUME, broker.bootstrap, topic, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        produced = a.run([sys.executable, "-c", PRODUCE, broker.bootstrap, topic, str(n)], capture_output=True, text=True, timeout=120)
        assert produced.returncode == 0, produced.stderr
        out, err = consumer.communicate(timeout=120)
        assert consumer.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == [f"record-{i}" for i in range(n)]
