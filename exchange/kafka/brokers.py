"""Which broker a run, a bench or ``exchange broker`` starts: ``tansu``, ``kafka`` or ``kafka:N``.

``tansu`` is the embedded Tansu broker (exchange/kafka/tansu.py: zero install, memory storage,
one node); ``kafka`` one Apache Kafka KRaft node and ``kafka:3`` three, each a controller
and a broker (exchange/kafka/apache.py: needs Java 17+ and ``exchange kafka fetch``, see
exchange/kafka/distribution.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from exchange.errors import ExchangeError
from exchange.kafka.apache import KafkaBroker
from exchange.kafka.clients import KAFKA_FETCH_WAIT_MS, fetch_wait_ms
from exchange.kafka.tansu import BrokerError, EmbeddedBroker

KINDS = ("tansu", "kafka", "kafka:3")
MAX_NODES = 5


class BrokerSpecError(ExchangeError, ValueError):
    """A --broker value that names no broker; the message says what is accepted."""


def parse(spec: str) -> tuple[str, int]:
    """``"tansu"`` → ("tansu", 1); ``"kafka"`` → ("kafka", 1); ``"kafka:3"`` → ("kafka", 3)."""
    m = re.fullmatch(r"(tansu|kafka)(?::(\d+))?", spec.strip().lower())
    if not m or (m.group(1) == "tansu" and m.group(2) not in (None, "1")):
        raise BrokerSpecError(f"--broker {spec!r}: expected tansu, kafka or kafka:NODES (e.g. kafka:3)")
    nodes = int(m.group(2) or 1)
    if not 1 <= nodes <= MAX_NODES:
        raise BrokerSpecError(f"--broker {spec!r}: 1 to {MAX_NODES} Kafka nodes")
    return m.group(1), nodes


def make(spec: str, *, log_path: Path | None = None, port: int | None = None, host: str = "127.0.0.1") -> EmbeddedBroker | KafkaBroker:
    """An unstarted broker of the kind ``spec`` names (see :func:`parse`), listening on and
    advertising ``host`` (an address of this machine its clients reach it at)."""
    kind, nodes = parse(spec)
    if kind == "tansu":
        return EmbeddedBroker(port=port, log_path=log_path, host=host)
    return KafkaBroker(nodes=nodes, port=port, log_path=log_path, host=host)


#: Seconds a run waits for its routers and subscribers on Kafka at least: the JVM creates
#: each partition's log on disk (measured 0.1-0.3 s a partition on a loaded 2-core machine),
#: and Faust creates its changelog topics after that.
KAFKA_READY_TIMEOUT_S = 180.0


def ready_timeout(kind: str | None, requested: float) -> float:
    """The processes' ready timeout of a run on this broker kind (``requested`` or more)."""
    return max(requested, KAFKA_READY_TIMEOUT_S) if kind == "kafka" else requested


__all__ = [
    "KAFKA_FETCH_WAIT_MS",
    "KINDS",
    "BrokerError",
    "BrokerSpecError",
    "ExistingCluster",
    "describe",
    "fetch_wait_ms",
    "make",
    "parse",
    "ready_timeout",
]


@dataclass(frozen=True)
class ExistingCluster:
    """What a run learns of a cluster named by ``--bootstrap`` (it did not start it)."""

    kind: str  # "tansu" or "kafka" (any other Kafka-compatible broker is taken for Kafka: it long-polls)
    brokers: int
    cluster_id: str

    @property
    def replication_factor(self) -> int:
        """Replicas for the run's topics: as ``kafka:3`` (3) where the cluster has three brokers or more, else one per broker."""
        return min(3, self.brokers)


async def describe(bootstrap: str) -> ExistingCluster:
    """Ask an existing cluster what it is: Tansu answers with its default cluster id ``tansu_cluster``.

    Raises :class:`~exchange.errors.BrokerUnreachable` (an :class:`ExchangeError`) when no
    broker answers at ``bootstrap``.
    """
    from exchange.kafka import clients

    async with clients.started(clients.admin("topology", bootstrap), bootstrap, "describing the cluster") as admin:
        found = await admin.describe_cluster()
    cluster_id = str(found.get("cluster_id") or "")
    kind = "tansu" if cluster_id.startswith("tansu") else "kafka"
    return ExistingCluster(kind=kind, brokers=max(1, len(found.get("brokers") or ())), cluster_id=cluster_id)
