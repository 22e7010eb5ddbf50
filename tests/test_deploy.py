"""The deployment files: compose, Kubernetes, Prometheus, Grafana, and the metrics API.

Docker and a cluster are not available here, so the files are checked structurally: the
compose file against the Compose Specification's JSON Schema (vendored in
deploy/schema/), the Kubernetes manifests for kinds, required fields, selectors, pinned
images and resources, and everything against the code: the module entry points and
flags they run, the metrics port, the topics, the discovery paths, and every dashboard
query against the metric names exchange/metrics/ defines.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from functools import cache
from pathlib import Path

import pytest
import yaml

from exchange import metrics
from exchange.kafka.topics import topic_plan
from exchange.scenarios.loader import parse, preset_names
from schemas.envelope import Topics
from schemas.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"

#: Flags the compose and k8s files already pass that the processes gain when metrics are
#: wired in. Exempt only while a module's --help does not list them; once it does, the
#: check is strict like for every other flag.
PENDING_FLAGS = {"--metrics-port"}
#: what the files run: the run's controller and its workers (docs/distributed.md), each an `exchange` command
ENTRY_POINTS = {"exchange run", "exchange join"}
SCRIPTS = {"deploy/prepare.py"}
WORKERS = ("router", "producers", "consumers")  # the roles of `exchange join`, one service / Deployment each


# Loading ----------------------------------------------------------------------------------
@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@cache
def k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def pod_specs() -> list[tuple[str, dict, dict]]:
    """(name, workload, pod template) for every Deployment, Job, StatefulSet, DaemonSet."""
    out = []
    for _, doc in k8s_docs():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((doc["metadata"]["name"], doc, doc["spec"]["template"]))
    return out


def containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep theirs inside
    return out


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target."""
    return [(p.get("title", ""), t["expr"]) for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every simulator process the compose and k8s files start."""
    out = []
    for name, svc in compose()["services"].items():
        cmd = svc.get("command")
        if cmd is None:
            continue
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
        argv = [a.replace("$$", "$") for a in argv]  # compose's escape for a literal $
        if argv[:2] == ["sh", "-c"]:
            argv = shlex.split(argv[2])
        if argv and argv[0] == "exec":
            argv = argv[1:]
        out.append((f"compose:{name}", argv))
    for name, _, template in pod_specs():
        for c in containers(template):
            argv = [str(a) for a in (*c.get("command", ()), *c.get("args", ()))]
            if argv:
                out.append((f"k8s:{name}/{c['name']}", argv))
    return [(w, a) for w, a in out if a and a[0] in ("python", "python3")]


def target(argv: list[str]) -> str:
    """``exchange run``, ``exchange join`` (``python -m exchange COMMAND``), or a script's path."""
    if "-m" in argv:
        i = argv.index("-m")
        return " ".join(argv[i + 1 : i + 3]) if argv[i + 1] == "exchange" else argv[i + 1]
    return argv[1]


@cache
def help_flags(target_: str) -> frozenset[str]:
    argv = [sys.executable, "-m", *target_.split(), "--help"] if target_ in ENTRY_POINTS else [sys.executable, str(ROOT / target_), "--help"]
    env = {**os.environ, "COLUMNS": "250"}  # rich's help box: no flag cut short
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out.stdout))


def image_is_pinned(image: str) -> bool:
    name = image.split("@", 1)[0]
    if "@sha256:" in image:
        return True
    last = name.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


# Compose ------------------------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft201909Validator
    validator.check_schema(schema)
    errors = sorted(validator(schema).iter_errors(compose()), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)
    # and the validator does reject a broken file
    broken = json.loads(json.dumps(compose()))
    broken["services"]["router"]["deploy"]["replicas"] = "two"
    assert list(validator(schema).iter_errors(broken))


def test_compose_images_are_pinned_and_the_simulator_image_is_built_here() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        assert "image" in svc, f"{name} has no image"
        assert image_is_pinned(svc["image"]), f"{name}: {svc['image']} is not pinned to a version"
    built = {name for name, svc in services.items() if "build" in svc}
    assert {"controller", "router", "producers", "consumers", "prepare"} <= built
    for name in built:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / services[name]["build"]["context"] / "deploy" / "Dockerfile").is_file()
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            image = line.split()[1]
            assert image.startswith("python:3.11") and image_is_pinned(image) and image != "python:3.11-slim", image
            assert re.match(r"python:3\.11\.\d+", image), f"{image}: pin the patch version"


def test_kafka_is_three_kraft_brokers_with_replication() -> None:
    services = compose()["services"]
    kafka = {n: s for n, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert sorted(kafka) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = set()
    node_ids = set()
    internal = set()
    for name, svc in kafka.items():
        env = kafka_env(svc)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        node_ids.add(env["KAFKA_NODE_ID"])
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["CLUSTER_ID"]
        listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        assert listeners["INTERNAL"] == f"{name}:9092"
        internal.add(listeners["INTERNAL"])
        assert "CONTROLLER" in env["KAFKA_LISTENERS"] and env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        assert svc.get("healthcheck")
    assert node_ids == {"1", "2", "3"}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for name in ("controller", *WORKERS):
        assert set(services[name]["environment"]["DX_BOOTSTRAP"].split(",")) == internal, name
    prepare = services["prepare"]["command"]
    assert set(prepare[prepare.index("--bootstrap") + 1].split(",")) == internal


def kafka_env(svc: dict) -> dict[str, str]:
    """A Kafka service's environment as the container gets it: its env_file(s), then ``environment``."""
    env: dict[str, str] = {}
    files = svc.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return {**env, **svc["environment"]}


def test_compose_brokers_and_the_local_kafka_share_one_settings_file() -> None:
    """deploy/kafka/cluster.env is the one source: compose's brokers read it and override none
    of it; `--broker kafka:3` runs the same settings, and the same Kafka version as the image."""
    from exchange.kafka import apache as kafka_broker

    shared = kafka_broker.cluster_env()
    assert shared["KAFKA_MIN_INSYNC_REPLICAS"] == "2" and shared["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    services = compose()["services"]
    kafka = {n: s for n, s in services.items() if s["image"].startswith("apache/kafka:")}
    for name, svc in kafka.items():
        assert svc["env_file"] == ["kafka/cluster.env"], name
        assert not set(svc["environment"]) & set(shared), f"{name} overrides cluster.env"
        assert svc["image"] == f"apache/kafka:{kafka_broker.pinned_version()}", f"{name}: not the version of deploy/kafka/pom.xml"
    local = kafka_broker.broker_settings(3)
    for key, value in shared.items():
        assert local[kafka_broker.env_to_property(key)] == value, key
    prepare = services["prepare"]["command"]
    assert prepare[prepare.index("--replication-factor") + 1] == local["default.replication.factor"]
    assert prepare[prepare.index("--min-insync-replicas") + 1] == local["min.insync.replicas"]


def test_router_service_scales() -> None:
    router = compose()["services"]["router"]
    assert "container_name" not in router, "--scale needs replicas without a fixed container name"
    assert "ports" not in router, "--scale needs replicas without a fixed host port"
    assert router["deploy"]["replicas"] >= 2
    # as many external router slots as replicas by default (each replica's worker id is its hostname)
    external = compose()["services"]["controller"]["environment"]["DX_EXTERNAL"]
    assert f"router={router['deploy']['replicas']}" in external


def commands_by_where() -> dict[str, list[str]]:
    return dict(commands())


def test_compose_scenario_default_is_a_preset() -> None:
    cmd = compose()["services"]["prepare"]["command"]
    default = re.fullmatch(r"\$\{DX_SCENARIO:-([\w-]+)\}", cmd[cmd.index("--scenario") + 1])
    assert default and default.group(1) in preset_names()


# Code consistency ---------------------------------------------------------------------------
def test_commands_run_existing_entry_points_with_accepted_flags() -> None:
    seen = set()
    for where, argv in commands():
        tgt = target(argv)
        seen.add(tgt)
        if tgt in ENTRY_POINTS:
            assert importlib.util.find_spec(tgt.split()[0]) is not None, f"{where}: no module {tgt}"
        else:
            assert tgt in SCRIPTS and (ROOT / tgt).is_file(), f"{where}: runs {tgt}, not a simulator entry point"
        flags = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
        known = help_flags(tgt)
        unknown = flags - known - (PENDING_FLAGS - known)
        assert not unknown, f"{where}: {tgt} does not accept {sorted(unknown)}"
        if tgt in ENTRY_POINTS:
            assert "--metrics-port" in flags, f"{where}: serve metrics on the port Prometheus scrapes"
            assert argv[argv.index("--metrics-port") + 1] == str(metrics.DEFAULT_METRICS_PORT), where
            assert "--bootstrap" in flags, where
    assert seen >= ENTRY_POINTS | SCRIPTS


def test_the_controller_runs_external_slots_the_workers_take() -> None:
    """Compose and Kubernetes alike: one controller (`exchange run --external`, results on a
    volume, the report beside them) and a worker (`exchange join --next`) of every role it leaves out."""
    from exchange.runner.remote import parse_external

    by_where = commands_by_where()
    stacks = {
        "compose": (by_where["compose:controller"], {r: by_where[f"compose:{r}"] for r in WORKERS}),
        "k8s": (by_where["k8s:dx-run/controller"], {r: by_where[f"k8s:dx-{r}/{r}"] for r in WORKERS}),
    }
    env = {"compose": compose()["services"]["controller"]["environment"]}
    run_job = next(w for n, w, _ in pod_specs() if n == "dx-run")
    env["k8s"] = {e["name"]: e.get("value") for e in run_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for where, (controller, workers) in stacks.items():
        assert target(controller) == "exchange run", where
        spec = controller[controller.index("--external") + 1]
        spec = env[where]["DX_EXTERNAL"] if spec in ("$DX_EXTERNAL", "$(DX_EXTERNAL)") else spec
        spec = re.sub(r"^\$\{DX_EXTERNAL:-(.*)\}$", r"\1", spec)  # compose's default
        roles = {role for role, _ in parse_external(spec, ("dx",))}
        assert roles == set(WORKERS), f"{where}: --external {spec}"
        assert "--report" in controller and controller[controller.index("--out") + 1].startswith("/results/"), where
        for role, argv in workers.items():
            assert target(argv) == "exchange join", f"{where}:{role}"
            assert argv[argv.index("--role") + 1] == role and "--next" in argv, f"{where}:{role}"
    compose_controller = compose()["services"]["controller"]
    assert "dx-results:/results" in compose_controller["volumes"] and compose_controller["restart"] == "no"
    volumes = {v["name"]: v for v in run_job["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["results"]["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for _, d in k8s_docs())
    assert run_job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for role in WORKERS:  # a worker exits when its run ends; its Deployment starts it again for the next
        deployment = next(w for n, w, _ in pod_specs() if n == f"dx-{role}")
        assert deployment["kind"] == "Deployment", role


def test_metrics_port_matches_the_code() -> None:
    port = metrics.DEFAULT_METRICS_PORT
    services = compose()["services"]
    for name in ("controller", *WORKERS):
        assert str(port) in [str(p) for p in services[name]["expose"]], name
        assert services[name]["environment"]["DX_METRICS_HOST"] == "0.0.0.0"
    assert f"EXPOSE {port}" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for name, _, template in pod_specs():
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port), name
        main = template["spec"]["containers"][0]
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in main["ports"], name
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env[metrics.METRICS_HOST_ENV] == "0.0.0.0", name
    monitors = [d for _, d in k8s_docs() if d["kind"] == "PodMonitor"]
    assert monitors and monitors[0]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    selector = monitors[0]["spec"]["selector"]["matchLabels"]
    for name, _, template in pod_specs():
        assert selector.items() <= template["metadata"]["labels"].items(), f"the PodMonitor does not select {name}"


def test_service_discovery_paths_agree() -> None:
    services = compose()["services"]
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "dx")
    assert job["honor_labels"] is True
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    assert files == ["/etc/prometheus/dx-targets/*.json", "../../runs/targets/*.json"]
    assert all(f.endswith("/*.json") for f in files)
    prom = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/dx-targets"] == "dx-sd"
    # ../../runs/targets relative to /etc/prometheus/prometheus.yml
    assert os.path.normpath("/etc/prometheus/../../runs/targets") in mounts
    assert mounts["/runs/targets"] == "../runs/targets"  # the repository's runs/targets
    for name in ("router", "producers", "consumers"):
        env = services[name]["environment"]
        sd_dir = env[metrics.SD_DIR_ENV]
        assert f"dx-sd:{sd_dir}" in services[name]["volumes"], name
    # what write_sd_target writes is what the globs match
    path = metrics.sd_target_path("/x", "router", "0")
    assert re.fullmatch(metrics.SD_FILE_GLOB.replace("*", ".*"), path.name) and path.suffix == ".json"


def test_scenario_configmap_is_a_valid_scenario_and_its_topics_are_the_codes() -> None:
    cm = next(d for _, d in k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dx-scenario")
    scenario = parse(cm["data"]["scenario.yaml"], "scenario-configmap.yaml")
    plan = topic_plan(scenario)
    topics = Topics(scenario.platform.id)
    assert all(name.startswith(f"{topics.prefix}.") for name in plan)
    assert {topics.audit, topics.dead_letter} <= set(plan)
    # only the controller reads it (the workers get the runtime scenario from the run's announcement)
    _, _, template = next(p for p in pod_specs() if p[0] == "dx-run")
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "dx-scenario"
    init = template["spec"]["initContainers"][0]
    argv = [*init["command"], *init["args"]]
    assert argv[argv.index("--scenario") + 1] == "/config/scenario.yaml"  # its topics created first, with the cluster's replication
    main = template["spec"]["containers"][0]
    assert main["args"][0] == "/config/scenario.yaml"
    for name, _, template in pod_specs():
        if name != "dx-run":
            assert "config" not in {v["name"] for v in template["spec"]["volumes"]}, f"{name}: a worker needs nothing but the broker"


def test_prepare_script_writes_the_scenario_json(tmp_path: Path) -> None:
    out = tmp_path / "scenario.json"
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "prepare.py"), "--scenario", "demo", "--json-out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert Scenario.model_validate_json(out.read_bytes()).name == "demo"


# Kubernetes ---------------------------------------------------------------------------------
def test_k8s_manifests_are_well_formed() -> None:
    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "Kafka", "KafkaNodePool", "ConfigMap", "Deployment", "Job", "PodMonitor", "Kustomization"} <= kinds
    for file, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), file
        assert doc.get("metadata", {}).get("name"), f"{file}: {doc['kind']} without metadata.name"
        if doc["kind"] not in ("Namespace", "Kustomization"):
            assert doc["metadata"].get("namespace") == "dx", f"{file}: {doc['kind']} {doc['metadata']['name']}"
    kustomization = next(d for _, d in docs if d["kind"] == "Kustomization")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_workloads_select_their_pods_pin_images_and_set_resources() -> None:
    for name, workload, template in pod_specs():
        labels = template["metadata"]["labels"]
        if workload["kind"] != "Job":
            selector = workload["spec"]["selector"]["matchLabels"]
            assert selector and selector.items() <= labels.items(), f"{name}: selector does not match the template"
        for c in containers(template):
            assert image_is_pinned(c["image"]), f"{name}/{c['name']}: {c['image']} is not pinned"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{name}/{c['name']}: resources.{kind} cpu and memory"
        mounts = {m["name"] for c in containers(template) for m in c.get("volumeMounts", [])}
        assert mounts <= {v["name"] for v in template["spec"].get("volumes", [])}, name
        if workload["kind"] == "Job":
            assert template["spec"]["restartPolicy"] in ("Never", "OnFailure")
    router = next(w for n, w, _ in pod_specs() if n == "dx-router")
    assert router["kind"] == "Deployment" and router["spec"]["replicas"] == 2
    # as many external router slots as replicas (each pod's worker id is its hostname, the pod's name)
    run_job = next(w for n, w, _ in pod_specs() if n == "dx-run")
    env = {e["name"]: e.get("value") for e in run_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert f"router={router['spec']['replicas']}" in env["DX_EXTERNAL"]


def test_strimzi_cluster_is_kraft_with_three_nodes_and_matches_the_bootstrap() -> None:
    docs = [d for _, d in k8s_docs()]
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    pool = next(d for d in docs if d["kind"] == "KafkaNodePool")
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert "zookeeper" not in kafka["spec"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    listener = next(item for item in kafka["spec"]["kafka"]["listeners"] if not item["tls"])
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:{listener['port']}"
    for name, _, template in pod_specs():
        for init in template["spec"].get("initContainers", []):  # the controller's: topics first
            assert init["args"][init["args"].index("--bootstrap") + 1] == bootstrap, name
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert env["DX_BOOTSTRAP"] == bootstrap, name


# Grafana ------------------------------------------------------------------------------------
def test_dashboards_query_only_metrics_the_code_defines() -> None:
    defined = metrics.exposed_names() | metrics.faust_exposed_names()
    boards = dashboards()
    assert set(boards) == {"exchange-overview.json", "one-number-one-source.json", "platform.json", "router-internals.json"}
    used: set[str] = set()
    for file, board in boards.items():
        found = exprs(board)
        assert found, file
        for title, expr in found:
            names = set(re.findall(r"\b((?:dx|faust)_[a-z0-9_]+)\b", expr))
            assert names, f"{file}: {title}: {expr} queries no simulator metric"
            unknown = names - defined
            assert not unknown, f"{file}: panel {title!r} uses {sorted(unknown)}, not defined in exchange/metrics/"
            used |= names
        for var in board["templating"]["list"]:
            names = set(re.findall(r"\b((?:dx|faust)_[a-z0-9_]*[a-z0-9])\b", str(var.get("query", ""))))
            assert names <= defined, f"{file}: variable {var['name']} uses {sorted(names - defined)}"
    # every dx_ family shows on some dashboard
    unused = {m._name for m in metrics.METRICS.values() if not set(metrics.sample_names(m)) & used}
    assert not unused, f"families on no dashboard: {sorted(unused)}"


def test_dashboards_use_the_provisioned_datasource_and_unique_ids() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    source = ds["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uids = set()
    for file, board in dashboards().items():
        uids.add(board["uid"])
        ids = [p["id"] for p in panels(board) if p["type"] != "row"]
        assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids"
        for p in panels(board):
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == source["uid"], f"{file}: {p['title']}"
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == source["uid"], f"{file}: {p['title']}"
        assert {v["name"] for v in board["templating"]["list"]} >= {"platform", "run_id"}, file
    assert len(uids) == len(dashboards())
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml").read_text(encoding="utf-8"))
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in compose()["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose()["services"]["grafana"]["volumes"]


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk (test extra) generates the dashboards")
    spec = importlib.util.spec_from_file_location("dx_grafana_generate", DEPLOY / "grafana" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generate  # dataclasses look their module up
    try:
        spec.loader.exec_module(generate)
    finally:
        del sys.modules[spec.name]
    assert generate.DATASOURCE_UID == "dx-prometheus"
    for name in generate.DASHBOARDS:
        assert (DASHBOARDS / f"{name}.json").read_text(encoding="utf-8") == generate.render(name), (
            f"{name}.json is stale: run python deploy/grafana/generate.py"
        )


# The metrics API ----------------------------------------------------------------------------
ALLOWED_LABELS = {
    "platform",
    "entry",
    "department",
    "consumer",
    "subscription",
    "decision",
    "reason",
    "worker",
    "role",
    "item",
    "state",
    "result",
    "slo",
    "segment",
}  # segment: a hop of a cascade, bounded by the hub paths


def test_metric_names_and_labels_follow_the_conventions() -> None:
    assert len(metrics.METRICS) >= 30
    for name, m in metrics.METRICS.items():
        assert re.fullmatch(r"dx_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert not name.endswith("_total"), f"{name}: prometheus-client adds _total to counters"
        assert set(m._labelnames) <= ALLOWED_LABELS, f"{name}: {m._labelnames}"
        assert m._labelnames[0] == "platform", name
        if m._type == "histogram":
            assert name.endswith(("_seconds", "_records")), f"{name}: a histogram names its unit"
        if "seconds" in name or "bytes" in name:
            assert name.endswith(("_seconds", "_bytes")), name
    assert metrics.END_TO_END_LATENCY._upper_bounds[0] <= 0.001 and metrics.END_TO_END_LATENCY._upper_bounds[-2] >= 10
    roles = [m for ms in metrics.ROLE_METRICS.values() for m in ms]
    assert sorted(m._name for m in roles) == sorted(metrics.METRICS), "every family belongs to one role"


def test_label_values_match_the_code() -> None:
    """Every reason the code can raise is a label value the metrics know (one vocabulary, schemas/outcomes.py)."""
    from schemas.outcomes import DeadLetterReason, DeliveryReason, DenialReason

    dead = set()
    for path in (ROOT / "exchange").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'InvalidRecord\(\s*"', text), f"{path}: a dead-letter reason as a bare string"
        dead |= set(re.findall(r"DeadLetterReason\.([a-z_]+)", text))
    assert dead and dead <= set(metrics.DEAD_LETTER_REASONS), f"dead-letter reasons missing: {sorted(dead - set(metrics.DEAD_LETTER_REASONS))}"
    assert set(metrics.DEAD_LETTER_REASONS) == set(DeadLetterReason)
    assert set(metrics.DELIVERED_REASONS) == set(DeliveryReason) == {"unconditional", "approved", "relayed"}
    assert set(metrics.DENIED_REASONS) == set(DenialReason)
    assert {"not_shared", "not_approved", "not_provider", "out_of_jurisdiction", "no_subscriber", "negative_list", "hub_negative_list"} == set(
        DenialReason
    )


def test_serve_metrics_and_sd_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("dx_test_things", "things", ["platform"], registry=registry).labels("dg").inc(3)
    port = metrics.serve_metrics(registry, host="127.0.0.1", port=0)
    try:
        assert port > 0
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'dx_test_things_total{platform="dg"} 3.0' in body
        assert "_created" not in body
    finally:
        metrics.stop_metrics_servers()
    monkeypatch.delenv(metrics.SD_DIR_ENV, raising=False)
    monkeypatch.delenv(metrics.ADVERTISE_HOST_ENV, raising=False)
    path = metrics.write_sd_target(tmp_path, "router", "0", port, {"worker": "0", "run_id": "r1", "platform": "dg"})
    assert path == tmp_path / "sd-router-0.json"
    assert json.loads(path.read_text()) == [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"worker": "0", "run_id": "r1", "platform": "dg", "role": "router"}}
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["sd-router-0.json"], "no temporary file left"
    # rewritten in place, atomically; an odd ident is made file-safe
    metrics.write_sd_target(tmp_path, "router", "0", port + 1, {}, host="10.0.0.7")
    assert json.loads(path.read_text())[0]["targets"] == [f"10.0.0.7:{port + 1}"]
    odd = metrics.write_sd_target(tmp_path, "router", "a/b c", port, {})
    assert odd.parent == tmp_path and odd.name == "sd-router-a_b_c.json"
    # DX_METRICS_SD_DIR collects every run's targets in one directory
    monkeypatch.setenv(metrics.SD_DIR_ENV, str(tmp_path / "targets"))
    monkeypatch.setenv(metrics.ADVERTISE_HOST_ENV, "host.docker.internal")
    moved = metrics.write_sd_target(tmp_path / "run", "consumers", "0", 9464, {"run_id": "r2"})
    assert moved == tmp_path / "targets" / "sd-consumers-0.json"
    assert json.loads(moved.read_text())[0]["targets"] == ["host.docker.internal:9464"]
    metrics.remove_sd_target(moved)
    metrics.remove_sd_target(moved)
    assert not moved.exists()


def test_faust_sensor_exposes_faust_metrics_in_seconds() -> None:
    import faust
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    app = faust.App("dx-test-router", broker="kafka://127.0.0.1:1", web_enabled=False, store="memory://")
    monitor = metrics.faust_sensor(app, registry=registry)
    assert app.monitor is monitor
    monitor._metrics.consumer_commit_latency.observe(2.0)  # Faust observes milliseconds
    text = generate_latest(registry).decode()
    assert 'faust_consumer_commit_latency_seconds_bucket{le="0.002"} 1.0' in text
    assert "faust_consumer_commit_latency_seconds_sum 0.002" in text
    assert "_ms" not in text and "faust_total_rebalances 0.0" in text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exposed = metrics.faust_exposed_names()
    for fam in families:
        assert fam in exposed or f"{fam}_total" in exposed or f"{fam}_bucket" in exposed, fam
    series = [line for line in text.splitlines() if line.startswith("faust_")]
    assert len(series) <= metrics.estimated_series(parse_demo(), workers=1)["faust_*"]
    assert not any("topic" in line for line in series), "per-topic families are off by default"
    other = faust.App("dx-test-router-2", broker="kafka://127.0.0.1:1", web_enabled=False, store="memory://")
    assert metrics.faust_sensor(other, registry=registry)._metrics is monitor._metrics  # registered once


# Series -------------------------------------------------------------------------------------
def parse_demo() -> Scenario:
    from exchange.scenarios.loader import load

    return load("demo")


def dongguan_shaped() -> Scenario:
    """A scenario of the ``dongguan`` preset's size: 84 departments (24 of them towns),
    1,322 entries, 14,722 items, 420 subscriptions; a few items with an authoritative
    source copied by others (one number, one source)."""
    from producers.identity import REGIONS
    from schemas.scenario import DataItem

    with_authority = "authoritative" in DataItem.model_fields
    depts = [{"id": f"d{n:02d}", "name": f"部门{n}"} for n in range(60)]
    towns = sorted(c for c in REGIONS if c.startswith("441900") and len(c) == 9)[:24]  # real town codes
    depts += [{"id": f"t{n:02d}", "name": f"镇街{n}", "region": code} for n, code in enumerate(towns)]
    shared = [
        ("enterprise.name", "enterprise_name", "d00"),
        ("enterprise.address", "address", "d00"),
        ("person.name", "person_name", "d01"),
        ("person.phone", "phone", "d01"),
    ]
    catalogue = []
    total_items = 0
    for n in range(1322):
        provider = depts[n % len(depts)]["id"]
        size = 12 if n < 180 else 11
        items = [
            {"key": f"e{n}.code", "name": "统一社会信用代码", "type": "credit_code"},
            {"key": f"e{n}.region", "name": "所在镇街", "type": "region_code"},
        ]
        for key, kind, source in shared[: (2 if n % 3 else 4)]:
            item = {"key": key, "name": key, "type": kind}
            if kind in ("person_name", "phone"):
                item["sensitivity"] = "personal"
            if with_authority and provider == source:
                item["authoritative"] = True
            items.append(item)
        while len(items) < size:
            items.append({"key": f"e{n}.f{len(items)}", "name": "数据项", "type": "text"})
        total_items += len(items)
        sharing = ("unconditional", "unconditional", "unconditional", "conditional", "conditional", "not_shared")[n % 6]
        catalogue.append({"id": f"e{n:04d}", "name": f"目录{n}", "provider": provider, "sharing": sharing, "partitions": 1 + n % 3, "items": items})
    assert total_items == 14722
    subs, seen = [], set()
    for k in range(420):
        consumer = depts[(k * 7 + 3) % len(depts)]["id"]
        entry = catalogue[(k * 29) % len(catalogue)]
        if (consumer, entry["id"]) in seen or consumer == entry["provider"]:
            continue
        seen.add((consumer, entry["id"]))
        sub = {"consumer": consumer, "entry": entry["id"]}
        if entry["sharing"] == "conditional":
            sub["purpose"] = "审批事项"
            sub["status"] = "pending" if k % 4 == 0 else "approved"
        subs.append(sub)
    return Scenario.model_validate(
        {
            "name": "dongguan-shaped",
            "platform": {"id": "dg", "name": "东莞市政务数据共享交换平台", "region": "441900"},
            "departments": depts,
            "catalogue": catalogue,
            "subscriptions": subs,
            "load": {"default_rate": 1.0},
        }
    )


def test_series_estimate_for_a_dongguan_sized_scenario_is_sane() -> None:
    scenario = dongguan_shaped()
    assert (len(scenario.departments), len(scenario.catalogue)) == (84, 1322)
    one = metrics.estimated_series(scenario, workers=1)
    three = metrics.estimated_series(scenario, workers=3)
    print(f"\ndongguan-shaped ({len(scenario.subscriptions)} subscriptions): {one['total']:,} series with 1 router worker, {three['total']:,} with 3")
    for name, n in sorted(((k, v) for k, v in one.items() if k != "total"), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:40s} {n:>7,}")
    assert one["total"] < 40_000 and three["total"] < 80_000
    assert one["dx_end_to_end_latency_seconds"] == 17 * one["dx_records_delivered"]
    assert one["dx_publish_latency_seconds"] <= 17 * 84, "publish latency is per department, not per entry"
    assert max(v for k, v in one.items() if k.startswith("dx_")) < 10_000
    assert one["faust_*"] < 500, "Faust's per-topic families are left out by default"
    assert metrics.estimated_series(scenario, workers=1, faust_per_topic=True)["faust_*"] > 5_000
    if "authoritative" in type(scenario.catalogue[0].items[0]).model_fields:
        assert 0 < one["dx_verifications"] <= 3 * 4 * 84
    preset = [p for p in preset_names() if p == "dongguan"]
    if preset:  # the real preset, once it exists
        from exchange.scenarios.loader import load

        real = metrics.estimated_series(load("dongguan"), workers=1)
        print(f"  dongguan preset: {real['total']:,} series with 1 router worker")
        assert real["total"] < 60_000


_COUNT_SERIES = """
import sys
from prometheus_client import REGISTRY, generate_latest
from exchange import metrics
from exchange.scenarios.loader import load
s = load("demo")
for role in metrics.ROLE_METRICS:
    metrics.init_series(role, s, worker="0")
lines = [l for l in generate_latest(REGISTRY).decode().splitlines() if l.startswith("dx_")]
print(len(lines))
"""


def test_series_estimate_matches_what_the_processes_expose() -> None:
    from exchange.scenarios.loader import load

    done = subprocess.run([sys.executable, "-c", _COUNT_SERIES], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    estimate = metrics.estimated_series(load("demo"), workers=1)
    assert int(done.stdout.strip()) == sum(v for k, v in estimate.items() if k.startswith("dx_"))
