"""A Kafka that is not there, or a bootstrap address that cannot be one: one line on stderr
and exit 2 from every command that talks to Kafka, through the real command line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from .harness import ROOT


def exchange(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchange", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def nobody_listening() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    "command",
    [
        ["run", "demo", "--duration", "2"],
        ["approve", "demo", "--consumer", "psb", "--entry", "enterprise-registration"],
        ["audit", "verify", "--platform", "dg"],
    ],
    ids=lambda c: c[0],
)
def test_no_broker_at_bootstrap_is_one_line_and_exit_2(command, tmp_path):
    bootstrap = nobody_listening()
    out = ["--out", str(tmp_path / "run")] if command[0] == "run" else []
    done = exchange(*command, "--bootstrap", bootstrap, *out)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no Kafka broker answered at {bootstrap} while "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_out_of_range_is_one_line_naming_it(tmp_path):
    done = exchange("run", "demo", "--duration", "2", "--bootstrap", "127.0.0.1:99999", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: bootstrap address '127.0.0.1:99999': '127.0.0.1:99999' is not HOST:PORT with a port from 1 to 65535")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["run", "demo", "--duration", "-1"], "error: Invalid value for '--duration': -1 seconds"),
        (["run", "demo", "--nosuch"], "error: No such option: --nosuch"),
        (["compare", "a"], "error: Missing argument 'B'."),
        (["report"], "error: Missing argument 'RUN'."),
        (["nosuchcmd"], "error: No such command 'nosuchcmd'."),
        (["run", "demo", "--drain-timeout", "-3"], "error: Invalid value for '--drain-timeout'"),
        (["run", "demo", "--duration"], "error: Option '--duration' requires an argument. (see 'exchange run --help')"),
        (["--nosuch"], "error: No such option: --nosuch (see 'exchange --help')"),
    ],
    ids=["bad value", "unknown option", "missing argument", "README's name", "unknown command", "negative", "no value", "before a command"],
)
def test_a_bad_command_line_is_one_line_and_exit_2(command, message):
    """A newcomer's finding: click's usage errors came as a boxed panel of five lines."""
    done = exchange(*command)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message) and "--help'" in lines[0], done.stderr


def test_a_run_that_could_not_start_leaves_no_run_directory(tmp_path):
    """A newcomer's finding: each failed attempt left runs/NAME-TIME/ with only the scenario in it."""
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--bootstrap", nobody_listening(), "--duration", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


def test_a_run_never_writes_over_another_runs_directory(tmp_path):
    """A newcomer's finding: --out naming an earlier run's directory replaced its result.json."""
    earlier = tmp_path / "run"
    earlier.mkdir()
    (earlier / "result.json").write_text('{"earlier": true}', encoding="utf-8")
    done = exchange("run", "demo", "--duration", "2", "--out", str(earlier))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {earlier} holds a run already (result.json): give another --out, or remove that run first"
    assert sorted(p.name for p in earlier.iterdir()) == ["result.json"]
    assert (earlier / "result.json").read_text(encoding="utf-8") == '{"earlier": true}'
