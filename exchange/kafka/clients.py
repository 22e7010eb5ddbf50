"""Every Kafka client of the project, built from a named profile.

A *profile* is the set of aiokafka settings one job needs (a department's publisher, the
router's output producer, a department's subscriber, the accountant's audit reader…).
Each used to be spelled out where the client was made; now a client is asked for by job::

    producer("publisher", bootstrap, client_id="dept-DG-RS")
    consumer("subscriber", bootstrap, "dx.dg.deliver.x", group_id="...", broker_kind="kafka")
    admin("topology", bootstrap)

Keyword ``overrides`` win over the profile (any aiokafka constructor argument), so a
caller states only what is its own (a client id, a group, a timeout).

Per broker kind (``broker_kind``: ``"tansu"``, ``"kafka"`` or None when unknown): Tansu
holds an empty fetch for the whole ``fetch_max_wait_ms``, so consumers that follow a
topic poll with short waits (10 ms); Apache Kafka answers a fetch as soon as
``fetch_min_bytes`` (1) is there, so those consumers wait :data:`KAFKA_FETCH_WAIT_MS`
(an idle consumer polls twice a second instead of a hundred times, at no latency cost).

Exactly-once: ``producer(..., idempotent=True)`` sets ``enable_idempotence``;
``transactional_id=...`` makes a transactional producer (which implies idempotence and
``acks="all"``, as Kafka requires). The embedded Tansu broker answers the producer-id
request of an idempotent producer with ``UnknownError``: exactly-once needs Apache Kafka.

Sizes are bytes, times milliseconds, as aiokafka names them. A malformed bootstrap address
raises :class:`BadBootstrap` (an ``ExchangeError``: one line) before any client is made.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from exchange.errors import ExchangeError, kafka_errors
from exchange.kafka.fetch_sessions import SessionConsumer

MiB = 1024 * 1024

#: Consumers' fetch wait on Apache Kafka (ms). Kafka answers a fetch as soon as
#: ``fetch_min_bytes`` (1) is there, so a long wait costs no latency and an idle consumer
#: polls twice a second instead of a hundred times (Tansu holds an empty fetch for the
#: whole wait: it needs ~10 ms).
KAFKA_FETCH_WAIT_MS = 500
#: Consumers' fetch wait on Tansu, where a profile gives none (ms).
TANSU_FETCH_WAIT_MS = 10
#: How often the fetch routine of a consumer of quiet topics wakes while a fetch is out (ms;
#: aiokafka's ``consumer_timeout_ms``, 200 by default). A fetch's answer, a rebalance and a
#: consumed batch wake it at once; each timed wake only walks every assigned partition to
#: find that the fetch is still out.
QUIET_WAKE_MS = 1000

Kind = Literal["producer", "consumer", "admin"]


class BadBootstrap(ExchangeError, ValueError):
    """A bootstrap address that is not ``HOST[:PORT][,HOST[:PORT]…]`` with ports 1-65535."""


def check_bootstrap(bootstrap: str) -> str:
    """``bootstrap`` unchanged when it is ``HOST[:PORT][,HOST[:PORT]…]`` (``[IPv6]:PORT`` too,
    port 1-65535, Kafka's 9092 when left out); else :class:`BadBootstrap` naming the part."""
    parts = [p.strip() for p in bootstrap.split(",")]
    for part in parts:
        host, port = part, "9092"
        if not part.endswith("]") and ":" in part:
            host, _, port = part.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise BadBootstrap(f"bootstrap address {bootstrap!r}: {part!r} is not HOST:PORT with a port from 1 to 65535")
    return bootstrap


class UnknownProfile(ExchangeError, KeyError):
    """A client profile name that :data:`PROFILES` does not hold; the message lists them."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Profile:
    """The settings of one job's client.

    ``settings`` are aiokafka constructor arguments; ``follows`` marks consumers that keep
    polling a topic (their fetch wait follows the broker kind, see the module docstring);
    ``fetch_sessions``, consumers that fetch in incremental fetch sessions (KIP-227,
    :mod:`exchange.kafka.fetch_sessions`): many partitions, few of them with records.
    """

    name: str
    kind: Kind
    settings: dict[str, Any] = field(default_factory=dict)
    follows: bool = False
    fetch_sessions: bool = False
    doc: str = ""


def _profiles(*profiles: Profile) -> dict[tuple[Kind, str], Profile]:
    return {(p.kind, p.name): p for p in profiles}


#: Every profile, by (kind, name).
PROFILES: dict[tuple[Kind, str], Profile] = _profiles(
    # --- producers ---------------------------------------------------------------------
    Profile(
        "publisher",
        "producer",
        dict(
            client_id="dx-publisher", acks="all", max_batch_size=512 * 1024, max_request_size=4 * MiB, request_timeout_ms=30_000, retry_backoff_ms=200
        ),
        doc="a department publishing its catalogued datasets (producers/publisher.py)",
    ),
    Profile(
        "router_sink",
        "producer",
        dict(client_id="dx-router", acks="all", max_batch_size=1 * MiB, max_request_size=8 * MiB, linger_ms=0),
        doc="the router's output: deliveries, audit blocks, dead letters, quality events",
    ),
    Profile(
        "reactions",
        "producer",
        dict(client_id="reactions", acks="all", max_batch_size=1 * MiB),
        doc="departments' systems publishing in reaction to what they received (consumers/reactions.py)",
    ),
    Profile(
        "control",
        "producer",
        dict(client_id="dx-control", acks="all"),
        doc="one-off writes acknowledged by every replica: control events, test records",
    ),
    Profile(
        "clock",
        "producer",
        dict(client_id="dx-clock", acks=1, linger_ms=0),
        doc="clock probes and their replies (exchange/kafka/timesync.py): the leader's ack is enough",
    ),
    Profile(
        "run_control",
        "producer",
        dict(client_id="dx-run-control", acks="all", linger_ms=0, max_request_size=16 * MiB),
        doc="a run's announcements and control messages between controller and workers (exchange/runner/remote.py)",
    ),
    Profile(
        "bench_raw",
        "producer",
        dict(client_id="dx-bench-raw", acks="all", max_batch_size=1 * MiB, max_request_size=8 * MiB),
        doc="the raw pass-through bench (exchange/bench/raw.py)",
    ),
    Profile(
        "broker_floor",
        "producer",
        dict(client_id="dx-broker-floor", acks="all", linger_ms=5, max_batch_size=512 * 1024),
        doc="the broker-floor bench (exchange/bench/broker_floor.py)",
    ),
    # --- consumers ---------------------------------------------------------------------
    Profile(
        "subscriber",
        "consumer",
        dict(
            auto_offset_reset="earliest",
            auto_commit_interval_ms=1000,
            max_poll_records=5000,
            fetch_max_wait_ms=TANSU_FETCH_WAIT_MS,
            fetch_max_bytes=16 * MiB,
            max_partition_fetch_bytes=8 * MiB,
        ),
        follows=True,
        doc="a department's system reading its deliveries (consumers/subscriber.py)",
    ),
    Profile(
        "audit_reader",
        "consumer",
        dict(
            client_id="dx-accountant",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=10_000,
            fetch_max_bytes=32 * MiB,
            max_partition_fetch_bytes=16 * MiB,
        ),
        doc="the accountant following the audit, dead-letter and quality topics (consumers/accountant.py)",
    ),
    Profile(
        "topic_reader",
        "consumer",
        dict(enable_auto_commit=False, fetch_max_wait_ms=TANSU_FETCH_WAIT_MS),
        doc="reading a topic to its end offsets, without a group (audit verification, tests)",
    ),
    Profile(
        "control",
        "consumer",
        dict(client_id="dx-control", enable_auto_commit=False, fetch_max_wait_ms=100),
        doc="waiting for the router's verdict on a control event (exchange/workflow.py)",
    ),
    Profile(
        "clock",
        "consumer",
        dict(client_id="dx-clock", enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=2),
        doc="clock probes and replies (exchange/kafka/timesync.py): a 2 ms wait, Tansu holds an empty fetch for all of it "
        "(the controller's clock server long-polls on Kafka instead)",
    ),
    Profile(
        "run_control",
        "consumer",
        dict(
            client_id="dx-run-control",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=16 * MiB,
        ),
        doc="following exchange.runs and a run's control topic, without a group (exchange/runner/remote.py)",
    ),
    Profile(
        "samples",
        "consumer",
        dict(client_id="samples", enable_auto_commit=False, fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * MiB),
        doc="reading back sampled source records after a run (consumers/samples.py)",
    ),
    Profile(
        "bench_raw",
        "consumer",
        dict(
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            max_poll_records=5000,
            fetch_max_wait_ms=TANSU_FETCH_WAIT_MS,
            fetch_max_bytes=32 * MiB,
            max_partition_fetch_bytes=8 * MiB,
        ),
        follows=True,
        doc="the raw pass-through bench (exchange/bench/raw.py)",
    ),
    Profile(
        "broker_floor",
        "consumer",
        dict(auto_offset_reset="earliest", fetch_max_wait_ms=TANSU_FETCH_WAIT_MS),
        follows=True,
        doc="the broker-floor bench (exchange/bench/broker_floor.py)",
    ),
    Profile(
        "router_quiet",
        "consumer",
        dict(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=500,
            # Kafka answers a fetch once this much is there or the wait is over: without it a
            # quiet record (one every ~15 ms over Dongguan's 1,319 daily tables) ended each wait at
            # once: ~66 fetches/s instead of 2 (docs/performance.md)
            fetch_min_bytes=1 * MiB,
            max_partition_fetch_bytes=1 * MiB,
            fetch_max_bytes=8 * MiB,
            max_poll_records=1000,
            # aiokafka's fetch routine wakes this often while a fetch is out, and each wake walks
            # every assigned partition (200 ms by default: 2-3 walks of 1,319 per fetch)
            consumer_timeout_ms=QUIET_WAKE_MS,
            # its heartbeats run on the worker's event loop, beside the routing (Faust's run on
            # their own thread): a longer session than the main group's, so a long batch does not
            # evict it; Tansu completes a join after half of it (quiet records can wait 3 s)
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            rebalance_timeout_ms=12000,
        ),
        # a fetch names only the partitions whose offset moved (KIP-227), not all 1,319
        fetch_sessions=True,
        doc="the router's quiet lane: daily, monthly and batch entries' ingress, long fetch wait (exchange/router/quiet.py)",
    ),
    # --- admin -------------------------------------------------------------------------
    Profile("topology", "admin", dict(client_id="dx-topology"), doc="creating and checking a scenario's topics (exchange/kafka/topics.py)"),
    Profile("prepare", "admin", dict(client_id="dx-prepare"), doc="creating topics on a cluster before a deployment (deploy/prepare.py)"),
)


def profile(kind: Kind, name: str) -> Profile:
    """The profile ``name`` of ``kind``; raises :class:`UnknownProfile` naming the known ones."""
    try:
        return PROFILES[(kind, name)]
    except KeyError:
        known = ", ".join(sorted(n for k, n in PROFILES if k == kind))
        raise UnknownProfile(f"no {kind} profile {name!r}; known: {known}") from None


def fetch_wait_ms(broker_kind: str | None) -> int | None:
    """The fetch wait (ms) of consumers that follow a topic on ``broker_kind``; None: the
    profile's own (Tansu-tuned) wait."""
    return KAFKA_FETCH_WAIT_MS if broker_kind == "kafka" else None


def settings(kind: Kind, name: str, *, broker_kind: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The aiokafka keyword arguments a client of profile ``name`` is made with."""
    p = profile(kind, name)
    out = dict(p.settings)
    if p.follows and fetch_wait_ms(broker_kind) is not None:
        out["fetch_max_wait_ms"] = fetch_wait_ms(broker_kind)
    out.update(overrides)
    return out


def producer(
    name: str, bootstrap: str, *, broker_kind: str | None = None, idempotent: bool = False, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An unstarted :class:`~aiokafka.AIOKafkaProducer` of profile ``name``.

    ``idempotent`` sets ``enable_idempotence`` (and ``acks="all"``); ``transactional_id``
    makes it transactional (idempotent too). ``overrides`` are aiokafka arguments; an
    explicit ``acks`` other than ``"all"`` with idempotence raises aiokafka's ValueError.
    """
    kwargs = settings("producer", name, broker_kind=broker_kind, **overrides)
    if idempotent or transactional_id is not None:
        kwargs["enable_idempotence"] = True
        if "acks" not in overrides:  # an explicit acks=1 is refused by aiokafka (ValueError)
            kwargs["acks"] = "all"
    if transactional_id is not None:
        kwargs["transactional_id"] = transactional_id
    return AIOKafkaProducer(bootstrap_servers=check_bootstrap(bootstrap), **kwargs)


def consumer(
    name: str, bootstrap: str, *topics: str, broker_kind: str | None = None, fetch_sessions: bool | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """An unstarted :class:`~aiokafka.AIOKafkaConsumer` of profile ``name``, subscribed to
    ``topics`` when given (else assign partitions yourself). With ``fetch_sessions`` (default:
    the profile's), a :class:`~exchange.kafka.fetch_sessions.SessionConsumer`."""
    kwargs = settings("consumer", name, broker_kind=broker_kind, **overrides)
    if fetch_sessions is None:
        fetch_sessions = profile("consumer", name).fetch_sessions
    cls = SessionConsumer if fetch_sessions else AIOKafkaConsumer
    return cls(*topics, bootstrap_servers=check_bootstrap(bootstrap), **kwargs)


def admin(name: str, bootstrap: str, **overrides: Any) -> AIOKafkaAdminClient:
    """An unstarted :class:`~aiokafka.admin.AIOKafkaAdminClient` of profile ``name``."""
    return AIOKafkaAdminClient(bootstrap_servers=check_bootstrap(bootstrap), **settings("admin", name, **overrides))


#: The router's consumer group session timeout (s). Tansu completes a group join after half
#: the session timeout; Faust's default (60 s) makes a new worker wait 30 s. Heartbeats run on
#: Faust's consumer thread, so a short session timeout does not evict a worker busy routing.
ROUTER_SESSION_TIMEOUT_S = 2.0
ROUTER_HEARTBEAT_S = 0.25


def faust_router_settings(bootstrap: str, partitions: int) -> dict[str, Any]:
    """The Kafka settings of the router's Faust app (:class:`faust.App` keyword arguments):
    its consumer of the ingress, transit and control topics and its producer of table
    changelogs. ``bootstrap`` is ``HOST:PORT[,HOST:PORT…]``; ``partitions`` those of the
    tables' changelog topics. The router's own output producer is profile ``router_sink``."""
    return dict(
        broker=[f"kafka://{host.strip()}" for host in check_bootstrap(bootstrap).split(",")],
        topic_replication_factor=1,
        topic_partitions=partitions,
        broker_session_timeout=ROUTER_SESSION_TIMEOUT_S,
        broker_heartbeat_interval=ROUTER_HEARTBEAT_S,
        broker_rebalance_timeout=ROUTER_SESSION_TIMEOUT_S * 2,
        broker_max_poll_records=1000,  # bounds a batch's latency and the memory in flight
        consumer_max_fetch_size=8 * MiB,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )


@contextlib.asynccontextmanager
async def started(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient, bootstrap: str, doing: str) -> AsyncIterator[Any]:
    """Start ``client``, yield it, stop it; aiokafka errors inside become
    :class:`~exchange.errors.BrokerUnreachable` / :class:`~exchange.errors.KafkaRequestFailed`
    naming ``bootstrap`` and ``doing`` (``"reading dx.dg.audit"``).

    A client whose start failed is closed too: it still holds its connections.
    """
    stop = client.close if isinstance(client, AIOKafkaAdminClient) else client.stop
    with kafka_errors(bootstrap, doing):
        try:
            await client.start()
            yield client
        finally:
            await stop()


__all__ = [
    "KAFKA_FETCH_WAIT_MS",
    "PROFILES",
    "BadBootstrap",
    "Profile",
    "UnknownProfile",
    "check_bootstrap",
    "admin",
    "consumer",
    "faust_router_settings",
    "fetch_wait_ms",
    "producer",
    "profile",
    "settings",
    "started",
]
