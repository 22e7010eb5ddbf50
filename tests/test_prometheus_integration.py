"""Every dashboard query, evaluated by a real Prometheus scraping the simulator's metrics.

Prometheus is Debian's package (``apt-get install prometheus``), started here on a free
loopback port with a config whose file-based service discovery points at the directory
the metrics sources write their ``sd-*.json`` targets into (exchange.metrics.
write_sd_target), scraping every second. Once every target is up and scraped a few
times, each panel query of each dashboard in deploy/grafana/dashboards is sent to
``/api/v1/query`` (template variables set to "All", ``$__rate_interval`` to 5 s) and must
return data. ``promtool check config`` must pass on deploy/prometheus/prometheus.yml and
``promtool check metrics`` on a scrape of every source.

The metrics sources are the ``metrics_source`` fixture: today, simulated processes (one
per role, two router workers, run as this file with ``--simulate``) that set every
family with the label sets exchange.metrics.label_sets derives from a scenario. To test a
real run instead, replace the fixture with one that runs a short scenario with
``DX_METRICS_SD_DIR`` pointing at its ``sd_dir`` and returns an object with the same
four members (``sd_dir``, ``expected_targets``, ``scrape_urls``, ``evaluation_time``):
``evaluation_time`` lets the queries look at the moment the run was live.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RUN_ID = "it-run"
PLATFORM = "dg"
SUBSTITUTIONS = {
    "$__rate_interval": "5s",
    "$__interval": "5s",
    "$__range": "1m",
    "$platform": ".*",
    "$run_id": ".*",
    "$worker": ".*",
}

needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS.exists() or not PROMTOOL.exists(),
    reason="needs Debian's prometheus package (/usr/bin/prometheus, /usr/bin/promtool): apt-get install -y prometheus",
)


# The simulated sources --------------------------------------------------------------------
def _scenario():
    from exchange.scenario_file import load

    return load("demo")


def _simulate(role: str, worker: str, sd_dir: Path, run_id: str) -> None:
    """One process of ``role``: serve metrics, write the target, keep every family moving."""
    from exchange import metrics as m

    scenario = _scenario()
    sets = m.label_sets(scenario, worker=worker)
    # the demo has no authoritative items: give one number, one source something to show
    if not sets[m.VERIFICATIONS]:
        sets[m.VERIFICATIONS] = [(PLATFORM, "enterprise.name", d, r) for d in ("tax", "hrss") for r in m.VERIFICATION_RESULTS]
        sets[m.QUALITY_EVENTS] = [(PLATFORM, d, r) for d in ("tax", "hrss") for r in m.QUALITY_REASONS]
    families = m.ROLE_METRICS[role]
    monitor = None
    if role == "router":
        import faust

        app = faust.App(f"dx-{PLATFORM}-router", broker="kafka://127.0.0.1:1", web_enabled=False, store="memory://")
        monitor = m.faust_sensor(app)
    port = m.serve_metrics(host="127.0.0.1", port=0)
    m.init_series(role, scenario, worker=worker)
    path = m.write_sd_target(sd_dir, role, worker, port, {"worker": worker, "run_id": run_id, "platform": PLATFORM})
    print(port, flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    rng = random.Random(f"{role}-{worker}")
    started = time.monotonic()
    try:
        while not stop["now"]:
            for metric in families:
                for labels in sets[metric]:
                    child = metric.labels(*labels)
                    if metric._type == "counter":
                        child.inc(rng.randint(1, 20))
                    elif metric._type == "histogram":
                        base = 0.003 if metric._name.endswith("_seconds") else 500
                        for _ in range(3):
                            child.observe(rng.expovariate(1 / base))
                    elif metric is m.SLO_STATUS or metric is m.RUN_UNACCOUNTED_OUTCOMES:
                        child.set(1 if metric is m.SLO_STATUS else 0)
                    elif metric is m.RUN_ELAPSED_SECONDS:
                        child.set(time.monotonic() - started)
                    else:
                        child.set(rng.randint(0, 1000))
            if monitor is not None:
                monitor._metrics.consumer_commit_latency.observe(rng.uniform(1, 20))  # milliseconds, as Faust does
                monitor._metrics.assign_latency.observe(rng.uniform(1, 50))
            time.sleep(0.2)
    finally:
        m.remove_sd_target(path)


@dataclass
class SimulatedSources:
    """Processes exposing every family, found through file-based service discovery."""

    sd_dir: Path
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    roles: tuple[tuple[str, str], ...] = (("producers", "0"), ("router", "0"), ("router", "1"), ("consumers", "0"), ("controller", "0"))

    @property
    def expected_targets(self) -> int:
        return len(self.roles)

    @property
    def scrape_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/metrics" for p in self.ports]

    def evaluation_time(self) -> float | None:
        return None  # the sources are live: evaluate now

    def start(self) -> None:
        from exchange.processes import spawn

        for role, worker in self.roles:
            argv = [sys.executable, __file__, "--simulate", role, "--worker", worker, "--sd-dir", str(self.sd_dir), "--run-id", RUN_ID]
            self.procs.append(spawn(argv, log_path=self.log_dir / f"sim-{role}-{worker}.log", new_session=False))
        deadline = time.monotonic() + 30
        while len(list(self.sd_dir.glob("sd-*.json"))) < len(self.roles):
            for proc in self.procs:
                assert proc.poll() is None, f"a simulated source exited: {self._logs()}"
            assert time.monotonic() < deadline, f"simulated sources not ready: {self._logs()}"
            time.sleep(0.1)
        for path in sorted(self.sd_dir.glob("sd-*.json")):
            self.ports.append(int(json.loads(path.read_text())[0]["targets"][0].rsplit(":", 1)[1]))

    def stop(self) -> None:
        from exchange.processes import terminate

        for proc in self.procs:
            terminate(proc)

    def _logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.log_dir.glob("sim-*.log")))


@pytest.fixture(scope="module")
def metrics_source(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("metrics-source")
    (base / "targets").mkdir()
    sources = SimulatedSources(base / "targets", base)
    try:
        sources.start()
        yield sources
    finally:
        sources.stop()


# Prometheus ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen
    log: Path

    def query(self, expr: str, at: float | None = None) -> dict:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            return _get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        except urllib.error.HTTPError as exc:  # 400: a query Prometheus cannot parse
            return json.loads(exc.read() or b"{}") | {"status": "error", "http": exc.code}


@pytest.fixture(scope="module")
def prometheus(metrics_source, tmp_path_factory: pytest.TempPathFactory):
    if not PROMETHEUS.exists():
        pytest.skip("needs Debian's prometheus package: apt-get install -y prometheus")
    from exchange.processes import spawn, terminate

    base = tmp_path_factory.mktemp("prometheus")
    config = base / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: dx\n    honor_labels: true\n    file_sd_configs:\n"
        f"      - files: ['{metrics_source.sd_dir}/*.json']\n        refresh_interval: 1s\n",
        encoding="utf-8",
    )
    check = subprocess.run([str(PROMTOOL), "check", "config", str(config)], check=False, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    log = base / "prometheus.log"
    proc = spawn(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        log_path=log,
        new_session=False,
    )  # fmt: skip
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"prometheus exited: {log.read_text(errors='replace')[-3000:]}"
            try:
                if urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready in 30 s"
            time.sleep(0.2)
        yield prom
    finally:
        terminate(proc)
        assert proc.poll() is not None


def _wait_scraped(prom: Prometheus, expected: int, timeout: float = 30.0) -> None:
    """Every target discovered and up, with enough samples for a 5 s rate window."""
    deadline = time.monotonic() + timeout
    while True:
        active = _get(f"{prom.url}/api/v1/targets?state=active")["data"]["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        if len(up) >= expected:
            samples = prom.query('min(count_over_time(up{job="dx"}[10s]))')["data"]["result"]
            if samples and float(samples[0]["value"][1]) >= 4:
                return
        assert time.monotonic() < deadline, f"targets not scraped: {json.dumps(active, indent=1)[:3000]}"
        time.sleep(0.5)


def _panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for p in (panel, *panel.get("panels", [])):
                for t in p.get("targets", []):
                    if t.get("expr"):
                        out.append((path.name, p["title"], t["expr"]))
    return out


def _substitute(expr: str) -> str:
    for var in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(var, SUBSTITUTIONS[var])
    assert "$" not in expr, f"unsubstituted template variable in {expr}"
    return expr


# The tests ----------------------------------------------------------------------------------
@needs_prometheus
def test_every_dashboard_query_returns_data(prometheus: Prometheus, metrics_source) -> None:
    _wait_scraped(prometheus, metrics_source.expected_targets)
    at = metrics_source.evaluation_time()
    queries = _panel_queries()
    assert len(queries) >= 50
    failures = []
    for board, title, expr in queries:
        answer = prometheus.query(_substitute(expr), at)
        if answer.get("status") != "success":
            failures.append(f"{board}: {title}: {expr}\n    error: {answer.get('error')}")
        elif not answer["data"]["result"]:
            failures.append(f"{board}: {title}: {expr}\n    no data")
    assert not failures, f"{len(failures)} of {len(queries)} panel queries failed:\n" + "\n".join(failures)


@needs_prometheus
def test_dashboard_variables_have_values(prometheus: Prometheus, metrics_source) -> None:
    _wait_scraped(prometheus, metrics_source.expected_targets)
    for path in sorted(DASHBOARDS.glob("*.json")):
        for var in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert match, f"{path.name}: {var['name']}: {var['query']}"
            selector, label = match.groups()
            answer = _get(f"{prometheus.url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector}))
            assert answer["data"], f"{path.name}: variable {var['name']} has no values"
            if label == "platform":
                assert PLATFORM in answer["data"]
            if label == "run_id":
                assert RUN_ID in answer["data"]


@needs_prometheus
def test_series_carry_the_discovery_labels(prometheus: Prometheus, metrics_source) -> None:
    _wait_scraped(prometheus, metrics_source.expected_targets)
    roles = prometheus.query("count by (role) (up)")["data"]["result"]
    assert {r["metric"]["role"] for r in roles} == {"producers", "router", "consumers", "controller"}
    # honor_labels: the metric's own worker label and the target's agree, no exported_ labels
    workers = prometheus.query("count by (worker) (dx_router_ready_seconds)")["data"]["result"]
    assert {w["metric"]["worker"] for w in workers} == {"0", "1"}
    assert not prometheus.query('{__name__=~"dx_.+", exported_platform!=""}')["data"]["result"]


@needs_prometheus
def test_promtool_accepts_the_config_and_the_exposition(metrics_source) -> None:
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    done = subprocess.run([str(PROMTOOL), "check", "config", str(config)], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    assert metrics_source.scrape_urls
    for url in metrics_source.scrape_urls:
        body = urllib.request.urlopen(url, timeout=5).read()
        assert b"dx_" in body
        done = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, check=False, capture_output=True, timeout=30)
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, f"{url}: promtool check metrics:\n{output}"
        assert "error" not in output.lower(), output


if __name__ == "__main__":  # a simulated metrics source (see SimulatedSources)
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulate", required=True)
    parser.add_argument("--worker", default="0")
    parser.add_argument("--sd-dir", type=Path, required=True)
    parser.add_argument("--run-id", default=RUN_ID)
    args = parser.parse_args()
    os.environ.pop("DX_METRICS_SD_DIR", None)
    _simulate(args.simulate, args.worker, args.sd_dir, args.run_id)
