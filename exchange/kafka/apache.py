"""Apache Kafka in the loop: one KRaft node, or three, on loopback, whose whole lifecycle we own.

Where Kafka and Java come from (:func:`locate`, :func:`fetch`, :class:`KafkaUnavailable`)
is exchange/kafka/distribution.py; its names are importable from here too.

Each node is a combined controller and broker (``process.roles=broker,controller``) on a
free loopback port, its storage formatted by ``kafka.tools.StorageTool`` in a fresh
temporary directory that is removed on stop. The broker settings are those of
``deploy/kafka/cluster.env``, the file ``deploy/compose.yaml`` gives its brokers too (with
replication factors and minimum ISR capped at the number of nodes), plus a few local ones
for a small machine (:data:`LOCAL_SETTINGS`). Every node's log goes to ``log_path`` (one
node) or ``<log_path stem>-<node><suffix>`` (several).

The same guarantees as the embedded Tansu broker (exchange/kafka/tansu.py): every JVM runs in
its own session with ``PR_SET_PDEATHSIG=SIGKILL`` (forked from a long-lived thread), an
``atexit`` hook stops it, ``stop()`` is idempotent and SIGKILLs what SIGTERM did not end,
and a start that fails or is interrupted stops everything it started before raising.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from exchange.kafka.distribution import (  # noqa: F401 - importable from here, as before
    FETCH_HINT,
    JAVA_HINT,
    POM,
    KafkaRuntime,
    KafkaUnavailable,
    cache_dir,
    fetch,
    java_binary,
    locate,
    pinned_version,
)
from exchange.kafka.tansu import BrokerError, BrokerLifecycle, free_port
from exchange.runner.processes import in_long_lived_thread, pdeathsig_preexec

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_ENV = ROOT / "deploy" / "kafka" / "cluster.env"

#: Settings of a local broker on a small machine, beside those of cluster.env. Thread
#: pools sized for 2 cores (defaults: 3 network, 8 I/O, 10 background threads); internal
#: topics with one partition per node instead of 50, so the first consumer group does not
#: wait for 50 partitions to be created.
LOCAL_SETTINGS = {
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "offsets.topic.num.partitions": "{nodes}",
    "transaction.state.log.num.partitions": "{nodes}",
    "share.coordinator.state.topic.num.partitions": "{nodes}",
    "share.coordinator.state.topic.replication.factor": "{rf}",
    "share.coordinator.state.topic.min.isr": "{isr}",
    "log.cleaner.threads": "1",
}
#: Settings that name a replication factor or a minimum ISR: capped at the number of nodes.
_RF_KEYS = ("default.replication.factor", "offsets.topic.replication.factor", "transaction.state.log.replication.factor")
_ISR_KEYS = ("min.insync.replicas", "transaction.state.log.min.isr")

_POLL = 0.1  # readiness poll interval (s)


# Settings -------------------------------------------------------------------------------------
def env_to_property(name: str) -> str:
    """The apache/kafka image's rule: ``KAFKA_A_B`` → ``a.b`` (``__`` → ``_``, ``___`` → ``-``)."""
    body = name.removeprefix("KAFKA_").lower()
    return body.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")


@cache
def cluster_env() -> dict[str, str]:
    """deploy/kafka/cluster.env as a dict (``KAFKA_…`` name → value)."""
    out = {}
    for n, line in enumerate(CLUSTER_ENV.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise KafkaUnavailable(f"{CLUSTER_ENV}:{n}: expected NAME=VALUE, got {line!r}")
        out[key.strip()] = value.strip()
    return out


def broker_settings(nodes: int) -> dict[str, str]:
    """cluster.env as broker properties for ``nodes`` nodes, plus :data:`LOCAL_SETTINGS`."""
    props = {env_to_property(k): v for k, v in cluster_env().items()}
    for key in _RF_KEYS:
        props[key] = str(min(int(props.get(key, 1)), nodes))
    for key in _ISR_KEYS:
        props[key] = str(max(1, min(int(props.get(key, 1)), nodes - 1 if nodes > 1 else 1)))
    fill = {"nodes": nodes, "rf": props["default.replication.factor"], "isr": props["min.insync.replicas"]}
    props.update({k: v.format(**fill) for k, v in LOCAL_SETTINGS.items()})
    return props


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in URL-safe base64, as ``kafka-storage random-uuid``,
    and like Kafka's ``Uuid.randomUuid`` never starting with ``-`` (a command line would take
    it for an option: StorageTool then fails, one start in 64)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# Probing ------------------------------------------------------------------------------------------
def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int | None:
    """How many live brokers a MetadataRequest v0 to host:port lists; None if no answer."""
    corr = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    client = b"exchange-probe"
    req = struct.pack(">hhih", 3, 0, corr, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(req)) + req)
            head = _recv(s, 12)
    except OSError:
        return None
    if head is None:
        return None
    _size, got, count = struct.unpack(">iii", head)
    return count if got == corr else None


def metadata_leaders(host: str, port: int, topics: list[str], timeout: float = 1.0) -> dict[tuple[str, int], int] | None:
    """(topic, partition) → leader node id of ``topics``, as host:port's metadata cache knows
    them (MetadataRequest v0; -1: no leader); None if no answer. Topics it does not know are left out."""
    corr = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    client = b"exchange-probe"
    body = struct.pack(">i", len(topics)) + b"".join(struct.pack(">h", len(t.encode())) + t.encode() for t in topics)
    req = struct.pack(">hhih", 3, 0, corr, len(client)) + client + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(req)) + req)
            head = _recv(s, 4)
            data = _recv(s, struct.unpack(">i", head)[0]) if head is not None else None
    except OSError:
        return None
    if data is None:
        return None
    try:
        got, pos = struct.unpack_from(">i", data)[0], 4
        if got != corr:
            return None
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        for _ in range(n):  # brokers: node_id, host, port
            (hlen,) = struct.unpack_from(">h", data, pos + 4)
            pos += 4 + 2 + hlen + 4
        out: dict[tuple[str, int], int] = {}
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        for _ in range(n):  # topics: error, name, partitions
            err, nlen = struct.unpack_from(">hh", data, pos)
            name = data[pos + 4 : pos + 4 + nlen].decode()
            pos += 4 + nlen
            (parts,) = struct.unpack_from(">i", data, pos)
            pos += 4
            for _ in range(parts):  # error, partition, leader, replicas, isr
                _perr, partition, leader, replicas = struct.unpack_from(">hiii", data, pos)
                pos += 14 + 4 * replicas
                (isr,) = struct.unpack_from(">i", data, pos)
                pos += 4 + 4 * isr
                if err == 0:
                    out[(name, partition)] = leader
        return out
    except struct.error:
        return None


def _recv(s: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# The broker -----------------------------------------------------------------------------------------
@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    log_path: Path | None
    proc: subprocess.Popen | None = None


class KafkaBroker(BrokerLifecycle):
    """Apache Kafka on loopback: ``nodes`` KRaft nodes, each a controller and a broker.

    The same interface as :class:`exchange.kafka.tansu.EmbeddedBroker`; ``port`` and ``pid`` are
    node 1's, ``bootstrap`` lists every node.
    """

    stop_timeout_s = 10.0

    kind = "kafka"

    def __init__(
        self,
        *,
        nodes: int = 1,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        ready_timeout: float = 120.0,
        heap_mb: int | None = None,
        runtime: KafkaRuntime | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.nodes, self.host, self.port = nodes, host, port
        self._explicit_port = port is not None
        self.log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout = ready_timeout
        self.heap_mb = heap_mb or (512 if nodes == 1 else 384)
        self.runtime = runtime
        self.start_seconds: float | None = None  # spawn to ready, of the last start()
        self._nodes: list[_Node] = []
        self._data: Path | None = None
        self._lock = threading.Lock()
        self._cds_pending: list[list] = []  # [being written, final, its JVM] of class-data archives
        # stop() from another thread (a cancelled astart(): its thread runs on) aborts a start
        self._cancel = threading.Event()
        self._down: set[int] = set()  # nodes killed on purpose (kill_node) and not restarted
        self._paused: set[int] = set()  # nodes pause_node stopped and resume_node has not continued

    # the EmbeddedBroker interface
    @property
    def version(self) -> str:
        return (self.runtime or locate()).version

    @property
    def replication_factor(self) -> int:
        """What topics get here: cluster.env's default replication factor, capped at the nodes."""
        return int(broker_settings(self.nodes)["default.replication.factor"])

    def describe(self) -> str:
        """E.g. ``Apache Kafka 4.1.1 (KRaft, 3 nodes, RF 3, min ISR 2)``, for results and reports."""
        s = broker_settings(self.nodes)
        return (
            f"Apache Kafka {self.version} (KRaft, {self.nodes} node{'s' if self.nodes > 1 else ''}, "
            f"RF {s['default.replication.factor']}, min ISR {s['min.insync.replicas']})"
        )

    @property
    def bootstrap(self) -> str:
        if not self._nodes:
            raise BrokerError("broker has no port yet; call start() first")
        return ",".join(f"{self.host}:{n.port}" for n in self._nodes)

    @property
    def pid(self) -> int | None:
        return self.pids[0] if self.pids else None

    @property
    def pids(self) -> list[int]:
        """Every node's JVM pid, in node order (empty when stopped)."""
        return [n.proc.pid for n in self._nodes if n.proc is not None]

    @property
    def returncode(self) -> int | None:
        """The exit code of the first node that ended by itself (not by :meth:`kill_node`), else None."""
        for n in self._nodes:
            if n.node_id not in self._down and n.proc is not None and n.proc.poll() is not None:
                return n.proc.returncode
        return None

    @property
    def running(self) -> bool:
        """Started, not stopped, and every node's JVM is alive (but those :meth:`kill_node` killed)."""
        procs = [n.proc for n in self._nodes if n.node_id not in self._down]
        return bool(procs) and all(p is not None and p.poll() is None for p in procs)

    # Faults of one node (exchange/runner/faults.py: --chaos kill-broker, pause-broker) ----------------
    @property
    def node_ids(self) -> list[int]:
        """The nodes' ids, 1…nodes (empty when stopped)."""
        return [n.node_id for n in self._nodes]

    @property
    def down(self) -> set[int]:
        """Nodes :meth:`kill_node` killed and :meth:`restart_node` has not restarted."""
        return set(self._down)

    def node_pid(self, node_id: int) -> int | None:
        """Node ``node_id``'s JVM pid; None while it is down."""
        proc = self._node(node_id).proc
        return proc.pid if proc is not None and node_id not in self._down else None

    def kill_node(self, node_id: int) -> int:
        """SIGKILL node ``node_id``'s JVM (no controlled shutdown: its leaderships move only once
        the controller notices, after ``broker.session.timeout.ms``) and reap it; returns its pid.

        The node counts as down, not dead: :attr:`running` and :attr:`returncode` leave it out
        until :meth:`restart_node`. Its storage stays where it was.
        """
        node = self._node(node_id)
        proc = node.proc
        if proc is None or node_id in self._down:
            raise BrokerError(f"Kafka node {node_id} is not running")
        self._down.add(node_id)
        _kill_group(proc)
        return proc.pid

    def restart_node(self, node_id: int) -> int:
        """Start a node :meth:`kill_node` killed again, on the same ports, configuration and
        storage (it recovers its logs and catches up as a follower; Kafka moves leaderships back
        to preferred replicas later by itself); returns the new pid. Does not wait for it to
        rejoin: the run measures how long the exchange takes to recover."""
        node = self._node(node_id)
        if node_id not in self._down:
            raise BrokerError(f"Kafka node {node_id} was not killed")
        assert self._data is not None
        node.proc = self._spawn(["kafka.Kafka", str(self._data / f"node-{node_id}.properties")], node.log_path, mode="ab")
        self._down.discard(node_id)
        return node.proc.pid

    def pause_node(self, node_id: int) -> int:
        """SIGSTOP node ``node_id``'s JVM (a hung broker: its sockets stay open, nothing answers);
        returns its pid. :meth:`resume_node` continues it."""
        pid = self.node_pid(node_id)
        if pid is None:
            raise BrokerError(f"Kafka node {node_id} is not running")
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(node_id)
        return pid

    def resume_node(self, node_id: int) -> None:
        """SIGCONT node ``node_id``'s JVM (harmless when it is not stopped)."""
        pid = self.node_pid(node_id)
        self._paused.discard(node_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def partition_leaders(self, topics: list[str]) -> dict[tuple[str, int], int]:
        """(topic, partition) → leader node id, as the first node that is up and not paused
        answers (its metadata may lag a failover by a moment); empty when none answers."""
        for n in self._nodes:
            if n.node_id not in self._down and n.node_id not in self._paused:
                found = metadata_leaders(self.host, n.port, topics, timeout=2.0)  # a loaded node answers late
                if found is not None:
                    return found
        return {}

    def busiest_node(self, topics: list[str]) -> tuple[int, int, int]:
        """The node that is up and leads the most partitions of ``topics`` (ties: the lowest id;
        nobody known: the first node up): (node id, partitions it leads, partitions)."""
        leaders = self.partition_leaders(topics)
        live = [n for n in self.node_ids if n not in self._down and n not in self._paused]
        if not live:
            raise BrokerError("no Kafka node is up")
        counts = {n: sum(1 for leader in leaders.values() if leader == n) for n in live}
        node = max(live, key=lambda n: (counts[n], -n))
        return node, counts[node], len(leaders)

    def _node(self, node_id: int) -> _Node:
        for n in self._nodes:
            if n.node_id == node_id:
                return n
        raise BrokerError(f"Kafka node {node_id} does not exist (nodes: 1…{self.nodes})")

    def is_alive(self) -> bool:
        """Running and node 1 lists every node as a live broker."""
        return self.running and metadata_brokers(self.host, self._nodes[0].port) == self.nodes

    def start(self) -> KafkaBroker:
        """Format storage, start every node, block until all answer as brokers. Returns ``self``."""
        if self.running:
            return self
        self._cancel.clear()
        self.runtime = self.runtime or locate()
        for attempt in range(1 if self._explicit_port else 3):
            try:
                self._start_once()
                return self
            except _PortLost:
                self.stop()
                if attempt == 2:
                    raise
                self._cancel.clear()  # our own stop(), not a caller's
            except BaseException:
                self.stop()  # timeout, early exit, Ctrl-C while waiting: never leave a JVM behind
                raise
        return self  # unreachable

    def _start_once(self) -> None:
        if self._explicit_port and _port_busy(self.host, self.port):
            raise BrokerError(f"cannot start Kafka: port {self.port} on {self.host} is already in use")
        _remove_stale_data_dirs()
        self._data = Path(tempfile.mkdtemp(prefix=f"dx-kafka-{os.getpid()}-"))
        atexit.register(self.stop)
        ports = _free_ports(self.host, 2 * self.nodes - (1 if self._explicit_port else 0))
        if self._explicit_port:
            ports.insert(0, self.port)
        self._nodes = [_Node(i + 1, ports[2 * i], ports[2 * i + 1], self._node_log(i + 1)) for i in range(self.nodes)]
        self.port = self._nodes[0].port
        started = time.monotonic()
        cluster_id = new_cluster_id()
        configs = [self._write_config(n) for n in self._nodes]
        self._format(cluster_id, configs)
        for n, cfg in zip(self._nodes, configs, strict=True):
            self._check_cancel()
            n.proc = self._spawn(["kafka.Kafka", str(cfg)], n.log_path, mode="ab")
        self._wait_ready(self.ready_timeout)
        self.start_seconds = round(time.monotonic() - started, 2)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise BrokerError("Kafka was stopped while starting")

    def _node_log(self, node_id: int) -> Path | None:
        if self.log_path is None:
            return None
        if self.nodes == 1:
            return self.log_path
        return self.log_path.with_name(f"{self.log_path.stem}-{node_id}{self.log_path.suffix}")

    def _write_config(self, node: _Node) -> Path:
        assert self._data is not None
        voters = ",".join(f"{n.node_id}@{self.host}:{n.controller_port}" for n in self._nodes)
        props = {
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{node.port},CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._data / f"node-{node.node_id}"),
            **broker_settings(self.nodes),
        }
        path = self._data / f"node-{node.node_id}.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

    def _cds(self, role: str) -> list[str]:
        """Class-data sharing: a JVM loads Kafka's classes from an archive the first run of the
        same Java and classpath wrote at its exit (measured: StorageTool 1.16 → 0.71 CPU-s).
        ``DX_KAFKA_CDS=0`` turns it off."""
        assert self.runtime is not None
        if os.environ.get("DX_KAFKA_CDS", "1") == "0":
            return []
        java = Path(self.runtime.java).resolve()  # a JDK upgrade changes its mtime: a new archive
        stamp = java.stat().st_mtime_ns if java.exists() else 0
        key = hashlib.sha1(f"{java}|{stamp}|{self.runtime.classpath}|{role}".encode()).hexdigest()[:12]
        archive = cache_dir(self.runtime.version).parent / "cds" / f"{role}-{self.runtime.version}-{key}.jsa"
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        if any(final == archive for _, final, _ in self._cds_pending):
            return []  # a sibling node writes it
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(f"{archive.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp")
        self._cds_pending.append([tmp, archive, None])  # _spawn() fills in the JVM
        return [f"-XX:ArchiveClassesAtExit={tmp}"]

    def _cds_done(self) -> None:
        """Keep the archives that JVMs which ended by themselves wrote (a killed one's may be
        partial); atomically, by a rename."""
        for entry in list(self._cds_pending):
            tmp, final, proc = entry
            if proc is not None and proc.poll() is None:
                continue
            try:
                if proc is not None and proc.returncode in (0, 143) and tmp.exists() and tmp.stat().st_size > 0:
                    os.replace(tmp, final)
                else:
                    tmp.unlink(missing_ok=True)
            except OSError:
                pass
            self._cds_pending.remove(entry)

    def _jvm(self, short_lived: bool = False) -> list[str]:
        assert self.runtime is not None and self._data is not None
        log4j = self._data / "log4j2.properties"
        if not log4j.exists():
            log4j.write_text(_LOG4J2, encoding="utf-8")
        # Small heap and the serial collector: a few hundred MB of live data at most, 2 cores
        # shared with the whole simulation (G1's concurrent threads would compete for them).
        # A short-lived tool (StorageTool) starts faster with the C1 compiler alone.
        quick = ["-XX:TieredStopAtLevel=1"] if short_lived else []
        cds = self._cds("storage-tool" if short_lived else "broker")
        return [
            self.runtime.java,
            f"-Xmx{self.heap_mb}m",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-Xss512k",
            *quick,
            *cds,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            self.runtime.classpath,
        ]

    def _spawn(self, args: list[str], log_path: Path | None, mode: str = "ab") -> subprocess.Popen:
        pending = len(self._cds_pending)
        argv = [*self._jvm(short_lived=args[0] != "kafka.Kafka"), *args]
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, mode)  # noqa: SIM115 - the child keeps its own copy
        else:
            out = subprocess.DEVNULL
        try:
            proc = in_long_lived_thread(
                lambda: subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pdeathsig_preexec()
                )
            )
            if len(self._cds_pending) > pending:
                self._cds_pending[-1][2] = proc
            return proc
        except OSError as exc:
            raise KafkaUnavailable(f"cannot run {argv[0]}: {exc}; {JAVA_HINT}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()

    def _format(self, cluster_id: str, configs: list[Path], timeout: float = 120.0) -> None:
        """``kafka.tools.StorageTool format`` for every node, in parallel; their output goes to the node logs."""
        assert self._data is not None
        # without a log_path, the tool's output still goes somewhere a failure can quote
        logs = [n.log_path or self._data / f"node-{n.node_id}-format.log" for n in self._nodes]
        procs = [
            self._spawn(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(cfg)], log, mode="wb")
            for cfg, log in zip(configs, logs, strict=True)
        ]
        try:
            deadline = time.monotonic() + timeout
            for n, p, log in zip(self._nodes, procs, logs, strict=True):
                while p.poll() is None:
                    self._check_cancel()
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(p.args, timeout)
                    time.sleep(0.05)
                rc = p.returncode
                if rc != 0:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
                    raise BrokerError(f"formatting Kafka storage of node {n.node_id} failed (exit {rc}); {log}:\n{tail}")
        except subprocess.TimeoutExpired:
            raise BrokerError(f"formatting Kafka storage took over {timeout:.0f} s") from None
        finally:
            for p in procs:
                _kill_group(p)
            self._cds_done()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_cancel()
            for n in self._nodes:
                proc = n.proc
                if proc is None:
                    raise BrokerError("broker is not started")
                if proc.poll() is not None:
                    tail = self.tail_log(node=n.node_id)
                    if not self._explicit_port and "Address already in use" in tail:
                        raise _PortLost(f"Kafka node {n.node_id}: port taken before it could bind")
                    raise BrokerError(
                        f"Kafka node {n.node_id} on {self.host}:{n.port} exited with code {proc.returncode} "
                        f"before becoming ready{self._log_suffix(n)}"
                    )
            if all(metadata_brokers(self.host, n.port) == self.nodes for n in self._nodes):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(f"Kafka on {self.bootstrap} not ready after {timeout:.0f} s{self._log_suffix(self._nodes[0])}")
            time.sleep(_POLL)

    def _log_suffix(self, node: _Node) -> str:
        tail = self.tail_log(node=node.node_id)
        return f"; log tail ({node.log_path}):\n{tail}" if tail else " (no log_path set)" if node.log_path is None else ""

    def tail_log(self, lines: int = 20, node: int = 1) -> str:
        """Last ``lines`` lines of a node's log ("" without a log_path)."""
        path = self._node_log(node)
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node (a controlled shutdown), wait, then SIGKILL; remove the data. Idempotent."""
        self._cancel.set()
        with self._lock:
            nodes, self._nodes = self._nodes, []
            data, self._data = self._data, None
            self._down.clear()
            self._paused.clear()
        for n in nodes:  # a paused node cannot take its SIGTERM
            if n.proc is not None and n.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(n.proc.pid, signal.SIGCONT)
        atexit.unregister(self.stop)
        procs = [n.proc for n in nodes if n.proc is not None]
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(p)
        self._cds_done()
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)

    async def wait_ready(self) -> None:
        await asyncio.to_thread(self._wait_ready, self.ready_timeout)

    async def watch(self, on_death: Callable[[int], None], interval: float = 0.2) -> None:
        """Call ``on_death(returncode)`` if a node dies on its own; return quietly after stop()."""
        nodes = list(self._nodes)
        if not nodes:
            return
        while True:
            if self._nodes != nodes:
                return
            for n in nodes:
                rc = n.proc.poll() if n.proc is not None and n.node_id not in self._down else None
                if rc is not None:
                    on_death(rc)
                    return
            await asyncio.sleep(interval)


_PERF = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th"
)


def producer_performance(
    bootstrap: str, topic: str, records: int, record_size: int, log_path: Path, props: dict[str, str] | None = None, timeout: float = 600.0
) -> dict[str, float]:
    """Apache Kafka's own producer benchmark (``org.apache.kafka.tools.ProducerPerformance``,
    kafka-tools) as fast as it can: ``records`` of ``record_size`` bytes to ``topic``.

    Returns records/s, MB/s and send latency (avg, p50, p95, p99, max; ms) from its summary
    line. The JVM dies with us (exchange/runner/processes.py). Raises :class:`BrokerError` when it
    fails or prints no summary.
    """
    from exchange.runner.processes import spawn, terminate

    rt = locate()
    argv = [
        rt.java,
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-Dlog4j2.configurationFile=/dev/null",
        "-cp",
        rt.classpath,
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        *(f"{k}={v}" for k, v in (props or {}).items()),
    ]
    proc = spawn(argv, log_path=log_path)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BrokerError(f"ProducerPerformance did not finish in {timeout:.0f} s (see {log_path})") from None
    finally:
        terminate(proc, 2.0)
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    found = _PERF.findall(text)
    if rc != 0 or not found:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise BrokerError(f"ProducerPerformance failed (exit {rc}): {tail}")
    sent, rate, mb, avg, mx, p50, p95, p99 = found[-1]
    return {
        "records": int(sent),
        "records_per_s": round(float(rate)),
        "mb_per_s": float(mb),
        "avg_ms": float(avg),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(mx),
    }


class _PortLost(BrokerError):
    """An automatically chosen port was taken before the node could bind it."""


_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process's group (it leads its own session) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _free_ports(host: str, n: int) -> list[int]:
    """``n`` distinct ports free right now (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _remove_stale_data_dirs() -> None:
    """Data of brokers whose Python died without stopping them (SIGKILL: PDEATHSIG took the JVMs)."""
    for path in Path(tempfile.gettempdir()).glob("dx-kafka-*-*"):
        m = re.fullmatch(r"dx-kafka-(\d+)-.*", path.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            shutil.rmtree(path, ignore_errors=True)


__all__ = ["KafkaBroker", "KafkaRuntime", "KafkaUnavailable", "broker_settings", "cache_dir", "fetch", "free_port", "locate", "pinned_version"]
