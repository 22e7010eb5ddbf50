"""Where Apache Kafka and Java come from, for the nodes of exchange/kafka/apache.py.

:func:`locate`, in this order:

* ``KAFKA_HOME``: an unpacked Apache Kafka 4.x distribution (its ``libs/*``);
* the pinned version of ``deploy/kafka/pom.xml``, resolved from Maven Central by
  ``exchange kafka fetch`` (:func:`fetch`: ``mvn dependency:copy-dependencies``) into
  ``~/.cache/data-exchange-sim/kafka-<version>/lib`` (``$XDG_CACHE_HOME`` honoured), never
  into the repository.

Java 17 or newer runs it (``JAVA_HOME/bin/java``, else ``java`` on ``PATH``). Anything
missing raises :class:`KafkaUnavailable`, whose message is one line saying how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from exchange.kafka.tansu import BrokerError

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
FETCH_HINT = "run `exchange kafka fetch` (Maven resolves the pinned version) or set KAFKA_HOME to a Kafka 4.x distribution"
JAVA_HINT = "install Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"


class KafkaUnavailable(BrokerError):
    """Java or Kafka is missing; the message is one line saying how to get it."""


@cache
def pinned_version() -> str:
    """``<kafka.version>`` of deploy/kafka/pom.xml."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise KafkaUnavailable(f"{POM}: no <kafka.version> property")
    return node.text.strip()


def cache_dir(version: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/data-exchange-sim/kafka-<version>`` (default ``~/.cache/…``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "data-exchange-sim" / f"kafka-{version or pinned_version()}"


@dataclass(frozen=True)
class KafkaRuntime:
    java: str
    classpath: str  # for java -cp: "<dir>/*"
    version: str
    source: str  # where it came from, for messages and results


def java_binary() -> str:
    """The ``java`` to run (17+); raises :class:`KafkaUnavailable` otherwise."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on PATH"
        raise KafkaUnavailable(f"Apache Kafka needs Java 17+: {where}; {JAVA_HINT}")
    major = _java_major(java)
    if major is not None and major < 17:
        raise KafkaUnavailable(f"Apache Kafka 4 needs Java 17+, {java} is Java {major}; {JAVA_HINT}")
    return java


@cache
def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def locate() -> KafkaRuntime:
    """Java and Kafka's classpath: ``KAFKA_HOME``, else the fetched pinned version."""
    java = java_binary()
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        jars = sorted(p.name for p in libs.glob("kafka_2.13-*.jar")) if libs.is_dir() else []
        versions = [m.group(1) for j in jars if (m := re.fullmatch(r"kafka_2\.13-(\d[\w.]*?)\.jar", j))]
        if not versions:
            raise KafkaUnavailable(f"KAFKA_HOME={home} has no libs/kafka_2.13-<version>.jar; unset it or {FETCH_HINT}")
        return KafkaRuntime(java, f"{libs}/*", versions[0], f"KAFKA_HOME={home}")
    version = pinned_version()
    lib = cache_dir(version) / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").exists():
        raise KafkaUnavailable(f"Apache Kafka {version} is not fetched yet ({lib} is empty); {FETCH_HINT}")
    return KafkaRuntime(java, f"{lib}/*", version, str(lib))


def fetch(say: Callable[[str], None] = lambda text: None) -> Path:
    """Resolve the pinned Kafka from Maven Central into the cache; returns its lib directory.

    Idempotent (an existing, complete lib is kept). Raises :class:`KafkaUnavailable` without
    Maven or when resolution fails (the message carries Maven's last lines).
    """
    version = pinned_version()
    lib = cache_dir(version) / "lib"
    if (lib / f"kafka_2.13-{version}.jar").exists():
        say(f"Apache Kafka {version} already fetched: {lib}")
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("fetching Kafka needs Maven: `apt-get install maven` (or set KAFKA_HOME to a Kafka 4.x distribution)")
    tmp = lib.with_name(f"lib.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"resolving Apache Kafka {version} from Maven Central into {lib} …")
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not (tmp / f"kafka_2.13-{version}.jar").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise KafkaUnavailable(f"mvn could not resolve Apache Kafka {version} (exit {proc.returncode}): {tail}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    say(f"Apache Kafka {version}: {len(list(lib.glob('*.jar')))} jars in {lib}")
    return lib


__all__ = ["FETCH_HINT", "JAVA_HINT", "POM", "KafkaRuntime", "KafkaUnavailable", "cache_dir", "fetch", "java_binary", "locate", "pinned_version"]
