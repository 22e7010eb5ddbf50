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

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PLATFORM = "sz"  # the platform of SCENARIO
SUBSTITUTIONS = {"$__rate_interval": "5s", "$__interval": "5s", "$__range": "1m", "$platform": ".*", "$run_id": ".*", "$worker": ".*"}

needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS.exists() or not PROMTOOL.exists(),
    reason="needs Debian's prometheus package (/usr/bin/prometheus, /usr/bin/promtool): apt-get install -y prometheus",
)


# The metrics sources: a real run ---------------------------------------------------------------
#: panels with data only when several hubs route (tests/test_cascade.py runs one); the single
#: hub scenario below still checks that Prometheus accepts their queries
CASCADE_ONLY = {"p99 per hop (into a hub, inside it, between hubs, to the consumer)"}
SCENARIO = "shenzhen-credit"  # conditional approvals, a negative list, row filters, one number one source


@dataclass
class RealRun:
    """``exchange run`` with two router workers, its processes found through file-based
    service discovery: every panel must show data from the real thing."""

    sd_dir: Path
    log_dir: Path
    proc: subprocess.Popen | None = None
    roles: tuple[str, ...] = ("controller-0", "producers-0", "router-0", "router-1", "consumers-0")

    @property
    def expected_targets(self) -> int:
        return len(self.roles)

    @property
    def scrape_urls(self) -> list[str]:
        return ["http://" + json.loads(p.read_text())[0]["targets"][0] + "/metrics" for p in sorted(self.sd_dir.glob("sd-*.json"))]

    def evaluation_time(self) -> float | None:
        return None  # the run is live while the queries are evaluated

    def start(self) -> None:
        argv = [sys.executable, "-m", "exchange", "run", SCENARIO, "--duration", "40", "--workers", "2", "--out", str(self.log_dir / "run")]
        env = {**os.environ, "DX_METRICS_SD_DIR": str(self.sd_dir)}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_dir / "run.err", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 90
        while {p.stem.removeprefix("sd-") for p in self.sd_dir.glob("sd-*.json")} < set(self.roles):
            assert self.proc.poll() is None, (self.log_dir / "run.err").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the run's processes did not all advertise their metrics"
            time.sleep(0.2)
        time.sleep(3)  # a few seconds of publishing, so that rates have something to show

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def metrics_source(tmp_path_factory: pytest.TempPathFactory):
    if not PROMETHEUS.exists():
        pytest.skip("needs Debian's prometheus package")
    base = tmp_path_factory.mktemp("metrics-source")
    (base / "targets").mkdir()
    source = RealRun(base / "targets", base)
    try:
        source.start()
        yield source
    finally:
        source.stop()


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
    from exchange.runner.processes import spawn, terminate

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
        elif not answer["data"]["result"] and title not in CASCADE_ONLY:
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
                assert len(answer["data"]) >= 1


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
