"""Test hosts: separate machines on one machine, each a Linux network namespace.

A test that needs processes on several hosts (a producer here, a consumer there, the broker
somewhere else) gets them from :func:`make_hosts` (or the ``hosts`` fixture of
this module, imported into a test module)::

    with make_hosts(2, tmp_path) as lan:
        a, b = lan.hosts
        broker = EmbeddedBroker(host=lan.gateway)      # in the root namespace, on the hosts' LAN
        a.popen([sys.executable, "-m", "producers", "--bootstrap", f"{lan.gateway}:{port}", …])

What a host is:

* its own network namespace (``ip netns add``): its own loopback, its own ports, no view of
  the root namespace's addresses (``127.0.0.1`` in a host is that host's alone);
* one interface, ``eth0``, a veth pair whose other end is on a bridge in the root
  namespace; the bridge holds :attr:`Lan.gateway` (``10.A.B.1/24``), the hosts ``.2``, ``.3``…
  so every host reaches the root namespace's listeners on the gateway address and every
  other host, as on one LAN. A broker started in the root namespace on the gateway address
  (``EmbeddedBroker(host=lan.gateway)``, ``KafkaBroker(host=…)``) listens and advertises there;
* its own working directory (:attr:`Host.workdir`), the current directory of what it runs.

Commands run in a host through ``ip netns exec NAME …`` (:meth:`Host.command`,
:meth:`Host.run`, :meth:`Host.popen`): the same filesystem and users, another network.
Everything is torn down when the block ends, also after a failure: the processes still in a
namespace are killed (by pid: ``ip netns pids``), then the namespaces and the bridge are
deleted. Names and the subnet are random per call, so tests in parallel (or helpers sharing
the machine) do not collide.

Needs root and iproute2 (``ip``); :func:`unavailable` says why not (a test skips with it).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Host", "Lan", "hosts", "make_hosts", "unavailable"]


def unavailable() -> str | None:
    """Why test hosts cannot be made here (one line), or None."""
    if os.geteuid() != 0:
        return "test hosts (network namespaces) need root"
    if shutil.which("ip") is None:
        return "test hosts need iproute2's `ip` (apt-get install iproute2)"
    probe = f"dxprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One test host: a network namespace with one address, and a working directory."""

    name: str  #: the namespace's name (``ip netns exec NAME``)
    address: str  #: its address on the LAN, e.g. ``10.213.7.2``
    workdir: Path  #: its working directory (its processes' current directory)
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host: ``ip netns exec NAME argv…``."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host and wait (``subprocess.run`` arguments; cwd: the host's workdir)."""
        kwargs.setdefault("cwd", self.workdir)
        return subprocess.run(self.command(argv), **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in this host (``subprocess.Popen`` arguments; cwd: the host's workdir); killed at teardown."""
        kwargs.setdefault("cwd", self.workdir)
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Processes living in this host's namespace now."""
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


@dataclass
class Lan:
    """The hosts and the root namespace's side of their LAN."""

    hosts: list[Host]
    gateway: str  #: the root namespace's address on the LAN: where a broker the hosts share listens
    network: str  #: e.g. ``10.213.7.0/24``
    bridge: str  #: the bridge's name in the root namespace


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
        if f" {str(net.network_address).rsplit('.', 1)[0]}." not in used:
            return net
    raise RuntimeError("no free 10.200-249.x.0/24 subnet for test hosts")


@contextmanager
def make_hosts(n: int, base: Path) -> Iterator[Lan]:
    """``n`` test hosts (``n`` ≤ 250) on a LAN with the root namespace, working directories
    under ``base`` (``base/host-0`` …); all torn down when the block ends, however it ends."""
    token = secrets.token_hex(3)
    net = _free_subnet()
    addresses = list(net.hosts())
    gateway = str(addresses[0])
    bridge = f"dxbr{token}"
    hosts = [Host(f"dx{token}h{i}", str(addresses[i + 1]), base / f"host-{i}") for i in range(n)]
    made: list[Host] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, host in enumerate(hosts):
            host.workdir.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", host.name)
            made.append(host)
            outside = f"dxv{token}{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", host.name)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", host.name, "link", "set", "eth0", "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        yield Lan(hosts, gateway, str(net), bridge)
    finally:
        _teardown(made, bridge)


def _teardown(hosts: list[Host], bridge: str) -> None:
    """Kill what still runs in the hosts (the processes they were given, then any pid left in a
    namespace), delete the namespaces (their veth ends go with them) and the bridge."""
    for host in hosts:
        for proc in host._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for pid in host.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while any(h.pids() for h in hosts) and time.monotonic() < deadline:
        time.sleep(0.05)
    for host in hosts:
        subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Any]:
    """``hosts(n) -> Lan``: ``n`` test hosts under the test's tmp_path, torn down after the test;
    the test skips, saying why, where there can be none (not root, no ``ip``, no namespaces).
    Import it into a test module to use it (``from .hosts import hosts``)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with ExitStack() as stack:
        made: list[Lan] = []

        def make(n: int) -> Lan:
            made.append(stack.enter_context(make_hosts(n, tmp_path / f"lan-{len(made)}")))
            return made[-1]

        yield make
