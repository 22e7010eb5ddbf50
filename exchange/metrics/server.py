"""Serving the metrics over HTTP and advertising them by file-based service discovery.

Each process calls :func:`expose` (or :func:`serve_metrics` and :func:`write_sd_target`
itself): one port per process, one ``sd-<role>-<ident>.json`` per process, written
atomically, so nothing needs a lock (see :mod:`exchange.metrics` for why not
prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry

from exchange.metrics.labels import init_series

#: The port every containerised process serves metrics on (compose, Kubernetes). Local
#: runs use port 0 (a free port each) and file-based service discovery.
DEFAULT_METRICS_PORT = 9464
METRICS_HOST_ENV = "DX_METRICS_HOST"  # bind address (default 127.0.0.1; 0.0.0.0 in containers)
ADVERTISE_HOST_ENV = "DX_METRICS_ADVERTISE_HOST"  # address written into the SD file, if not the bound one
SD_DIR_ENV = "DX_METRICS_SD_DIR"  # directory for sd-*.json instead of the run directory
SD_FILE_GLOB = "sd-*.json"

_servers: list[Any] = []
_bound_host: str | None = None


def serve_metrics(registry: CollectorRegistry | None = None, host: str | None = None, port: int = 0) -> int:
    """Serve ``registry`` (default: the process's) over HTTP on ``host:port``; return the port.

    ``port=0`` binds a free port. ``host`` defaults to ``$DX_METRICS_HOST`` or
    ``127.0.0.1``; containers set ``0.0.0.0``. The server runs on a daemon thread and
    answers any path (``/metrics`` included).
    """
    global _bound_host
    host = host or os.environ.get(METRICS_HOST_ENV) or "127.0.0.1"
    server, _thread = prometheus_client.start_http_server(port, addr=host, registry=registry or REGISTRY)
    _servers.append(server)
    _bound_host = host
    return int(server.server_address[1])


def stop_metrics_servers() -> None:
    """Stop every server :func:`serve_metrics` started in this process (tests)."""
    while _servers:
        server = _servers.pop()
        server.shutdown()
        server.server_close()


def advertised_host(bind_host: str | None = None) -> str:
    """The address Prometheus should scrape: ``$DX_METRICS_ADVERTISE_HOST``, else the bound
    address, else (bound to every interface) this host's own address."""
    explicit = os.environ.get(ADVERTISE_HOST_ENV)
    if explicit:
        return explicit
    host = bind_host or _bound_host or os.environ.get(METRICS_HOST_ENV) or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host


def _bracketed(host: str) -> str:
    """``host`` as it goes before ``:PORT``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def sd_target_path(run_dir: Path | str, role: str, ident: str) -> Path:
    """Where this process's target file goes: ``sd-<role>-<ident>.json`` (unsafe characters
    replaced by ``_``) in ``$DX_METRICS_SD_DIR``, or else ``run_dir``."""
    directory = Path(os.environ.get(SD_DIR_ENV) or run_dir)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{role}-{ident}")
    return directory / f"sd-{safe}.json"


def write_sd_target(run_dir: Path | str, role: str, ident: str, port: int, labels: Mapping[str, str], host: str | None = None) -> Path:
    """Write this process's Prometheus ``file_sd`` target, atomically; return the file.

    The file is ``sd-<role>-<ident>.json`` in ``$DX_METRICS_SD_DIR`` or ``run_dir``:
    ``[{"targets": ["HOST:PORT"], "labels": {"role": ROLE, ...labels}}]``. Label values
    are turned into strings; ``role`` is always set.
    """
    path = sd_target_path(run_dir, role, ident)
    path.parent.mkdir(parents=True, exist_ok=True)
    address = _bracketed(host or advertised_host())
    group = [{"targets": [f"{address}:{port}"], "labels": {**{k: str(v) for k, v in labels.items()}, "role": role}}]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # not matched by sd-*.json
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(group, f, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # Prometheus may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_sd_target(path: Path | str | None) -> None:
    """Remove a target file at exit, so Prometheus stops scraping a process that is gone."""
    if path is not None:
        Path(path).unlink(missing_ok=True)


def expose(
    role: str,
    ident: str,
    scenario: Any,
    run_dir: Path | str | None,
    port: int = 0,
    run_id: str = "",
    worker: str = "0",
    platform: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Path | None:
    """Everything a process does to be scraped: serve, advertise, pre-create its series.

    The ``ROLE IDENT: Prometheus metrics on http://HOST:N/metrics`` line goes to ``say``
    (default: stderr); a run directory adds where every process's scrape target is. Returns
    the service-discovery file written (remove it at exit with :func:`remove_sd_target`),
    or None when there is no run directory to write to.
    """
    bound = serve_metrics(port=port)
    init_series(role, scenario, worker=worker)
    line = f"{role} {ident}: Prometheus metrics on http://{_bracketed(advertised_host())}:{bound}/metrics while it runs"
    if run_dir is not None or os.environ.get(SD_DIR_ENV):
        where = sd_target_path(run_dir or ".", role, ident).parent / "sd-*.json"
        line += f" (the other processes' addresses, for Prometheus to read meanwhile: {where}; docs/cluster.md)"
    if say is None:
        print(line, file=sys.stderr, flush=True)
    else:
        say(line)
    if run_dir is None and not os.environ.get(SD_DIR_ENV):
        return None
    labels = {"worker": worker, "run_id": run_id, "platform": platform or scenario.platform.id}
    return write_sd_target(Path(run_dir or "."), role, ident, bound, labels)
