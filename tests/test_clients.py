"""The client factory (exchange/kafka/clients.py): profiles, per-broker-kind settings,
overrides, the exactly-once pass-through, and real clients built from it against Tansu."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from exchange.errors import BrokerUnreachable, ExchangeError
from exchange.kafka import clients
from exchange.kafka.tansu import EmbeddedBroker


def test_profile_settings_and_overrides():
    s = clients.settings("producer", "publisher", client_id="dept-DG")
    assert s["acks"] == "all" and s["max_batch_size"] == 512 * 1024 and s["client_id"] == "dept-DG"
    # an override wins over the profile, the rest of the profile stays
    assert clients.settings("consumer", "subscriber", max_poll_records=7)["max_poll_records"] == 7
    assert clients.settings("consumer", "subscriber")["fetch_max_bytes"] == 16 * 1024 * 1024


def test_fetch_wait_follows_the_broker_kind_for_following_consumers_only():
    assert clients.settings("consumer", "subscriber")["fetch_max_wait_ms"] == clients.TANSU_FETCH_WAIT_MS
    assert clients.settings("consumer", "subscriber", broker_kind="tansu")["fetch_max_wait_ms"] == clients.TANSU_FETCH_WAIT_MS
    assert clients.settings("consumer", "subscriber", broker_kind="kafka")["fetch_max_wait_ms"] == clients.KAFKA_FETCH_WAIT_MS
    # a reader that stops at the end offsets keeps its short wait on Kafka too
    assert clients.settings("consumer", "topic_reader", broker_kind="kafka")["fetch_max_wait_ms"] == clients.TANSU_FETCH_WAIT_MS
    # an explicit wait beats the kind's
    assert clients.settings("consumer", "subscriber", broker_kind="kafka", fetch_max_wait_ms=30)["fetch_max_wait_ms"] == 30
    # the router's quiet lane: its fetch routine wakes once a second while its long fetch is out
    assert clients.settings("consumer", "router_quiet")["consumer_timeout_ms"] == clients.QUIET_WAKE_MS == 1000


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(clients.UnknownProfile, match=r"no producer profile 'nope'; known: .*publisher") as err:
        clients.producer("nope", "127.0.0.1:9092")
    assert isinstance(err.value, ExchangeError)
    with pytest.raises(clients.UnknownProfile, match="no consumer profile 'publisher'"):
        clients.settings("consumer", "publisher")


async def test_idempotent_and_transactional_pass_through():
    plain = clients.producer("publisher", "127.0.0.1:1")
    idem = clients.producer("publisher", "127.0.0.1:1", idempotent=True)
    tx = clients.producer("router_sink", "127.0.0.1:1", transactional_id="dx-dg-router-0")
    try:
        assert plain._txn_manager is None and idem._txn_manager is not None
        assert tx._txn_manager.transactional_id == "dx-dg-router-0"
    finally:
        for p in (plain, idem, tx):
            await p.stop()
    # Kafka refuses idempotence with fewer acks than all: an explicit acks=1 is not hidden
    with pytest.raises(ValueError, match="acks"):
        clients.producer("publisher", "127.0.0.1:1", idempotent=True, acks=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_started_turns_no_broker_into_one_line_error():
    bootstrap = f"127.0.0.1:{_free_port()}"
    with pytest.raises(BrokerUnreachable, match=f"no Kafka broker answered at {bootstrap} while reading x"):
        async with clients.started(clients.consumer("topic_reader", bootstrap, request_timeout_ms=1000), bootstrap, "reading x"):
            pass


async def test_roundtrip_with_clients_from_profiles(tmp_path):
    async with EmbeddedBroker(log_path=tmp_path / "broker.log") as b:
        async with clients.started(clients.admin("topology", b.bootstrap), b.bootstrap, "creating topics") as admin:
            await admin.create_topics([NewTopic("profiles", num_partitions=1, replication_factor=1)])
        async with clients.started(clients.producer("control", b.bootstrap), b.bootstrap, "publishing") as p:
            await p.send_and_wait("profiles", b"hello", key=b"k1")
        async with clients.started(clients.consumer("topic_reader", b.bootstrap), b.bootstrap, "reading") as c:
            tp = TopicPartition("profiles", 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            msg = await asyncio.wait_for(c.getone(), 10)
        assert (msg.key, msg.value) == (b"k1", b"hello")


@pytest.mark.parametrize("good", ["127.0.0.1:9092", "a:1,b:2", "[::1]:9092", "localhost"])
def test_bootstrap_addresses_kafka_accepts(good):
    assert clients.check_bootstrap(good) == good


@pytest.mark.parametrize(
    "bad, part", [("127.0.0.1:99999", "127.0.0.1:99999"), ("a:0", "a:0"), ("a:b", "a:b"), (":9092", ":9092"), ("a:1,,b:2", ""), ("", "")]
)
def test_a_malformed_bootstrap_is_refused_before_any_client_is_made(bad, part):
    with pytest.raises(clients.BadBootstrap, match=f"{part!r} is not HOST:PORT") as err:
        clients.admin("topology", bad)
    assert isinstance(err.value, ExchangeError)


def test_the_router_app_settings_name_every_bootstrap_host():
    s = clients.faust_router_settings("h1:1, h2:2", partitions=4)
    assert s["broker"] == ["kafka://h1:1", "kafka://h2:2"] and s["topic_partitions"] == 4
    assert s["broker_session_timeout"] == clients.ROUTER_SESSION_TIMEOUT_S and s["producer_acks"] == -1


async def test_a_batch_refused_by_aiokafkas_shrinking_timeout_is_asked_again():
    """aiokafka's add_batch gives up long before request_timeout_ms when batches queue for one
    partition (it subtracts the time waited cumulatively); the batch was not appended, so
    send_batches asks again until the producer's own timeout (seen: guizhou-cascade's gateways)."""
    import asyncio

    from aiokafka.errors import KafkaTimeoutError

    from exchange.kafka.batching import send_batches

    class Producer:  # only the accumulator's answer is stubbed: what it does is aiokafka's bug
        _request_timeout_ms = 30_000

        def __init__(self, refusals: int) -> None:
            self.refusals, self.sent = refusals, []

        def create_batch(self):
            from aiokafka.producer.message_accumulator import BatchBuilder

            return BatchBuilder(16384, 0)

        async def send_batch(self, batch, topic, *, partition):
            if self.refusals:
                self.refusals -= 1
                raise KafkaTimeoutError()
            self.sent.append((topic, partition))
            return asyncio.get_running_loop().create_future()

    producer = Producer(refusals=3)
    sent = await send_batches(producer, "t", 0, [(None, b"v", [])] * 5)
    assert len(sent) == 1 and producer.sent == [("t", 0)] and len(sent[0][1]) == 5
    producer = Producer(refusals=10**9)
    producer._request_timeout_ms = 50
    with pytest.raises(KafkaTimeoutError):
        await send_batches(producer, "t", 0, [(None, b"v", [])])
