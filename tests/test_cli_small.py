"""Issue 14 item 14 and item 11's one-line errors: the command line's smaller promises.

`exchange report`/`compare` take a run directory, `exchange --version`, `compare` says
"changed" only beyond run-to-run noise, `bench --broker-floor` prints no Python lists,
and every expected failure is one line (no traceback, no unclosed-client warning) with
exit code 2, "could not check".
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.results.compare import Row, comparison
from exchange.results.report import load_result

from .harness import ROOT

DATA = Path(__file__).parent / "data"


def exchange(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exchange", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_one_line(done: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "Unclosed" not in err
    for needle in needles:
        assert needle in err, err


def test_version():
    done = exchange("--version")
    assert done.returncode == 0 and re.fullmatch(r"exchange \d+\.\d+\.\d+\S*", done.stdout.strip()), done.stdout


def test_report_and_compare_take_the_run_directory(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DATA / "demo", run)
    done = exchange("report", str(run))
    assert done.returncode == 0, done.stderr
    assert (run / "report.html").exists() and "demo" in (run / "report.html").read_text(encoding="utf-8")
    done = exchange("compare", str(run), str(DATA / "demo-2workers"), "-o", str(tmp_path / "c.html"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.html").exists()


def test_piped_output_obeys_columns():
    """`COLUMNS=80 exchange … | tee log` gets 80 columns, as on a terminal (else 140)."""
    import os

    args = ("compare", str(DATA / "demo"), str(DATA / "demo-2workers"))
    narrow = subprocess.run(
        [sys.executable, "-m", "exchange", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"}
    )
    wide = subprocess.run(
        [sys.executable, "-m", "exchange", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert narrow.returncode == 0 and wide.returncode == 0, narrow.stderr + wide.stderr
    assert max(map(len, narrow.stdout.splitlines())) <= 80
    assert max(map(len, wide.stdout.splitlines())) > 80  # the table's natural width, up to 140


def test_compare_says_changed_only_beyond_the_noise():
    def slo(measured, passed=True):
        return {"name": "denied share", "metric": "denied_rate", "target": 0.6, "measured": measured, "passed": passed}

    a, b = load_result(DATA / "demo" / "result.json"), load_result(DATA / "demo" / "result.json")
    a["slos"], b["slos"] = [slo(0.4765)], [slo(0.4766)]
    row = comparison(a, b)[-1].rows[0]
    assert row.delta() == ("", "")  # the case: same verdict, same figure within noise
    b["slos"] = [slo(0.5203)]
    assert comparison(a, b)[-1].rows[0].delta() == ("changed", "")  # 9 % more denied
    b["slos"] = [slo(0.61, passed=False)]
    assert comparison(a, b)[-1].rows[0].delta() == ("changed", "")
    b["slos"] = []  # a scenario without that objective (a newcomer's finding: it said "changed")
    assert comparison(a, b)[-1].rows[0].delta() == ("only in A", "")
    assert comparison(b, a)[-1].rows[0].delta() == ("only in B", "")
    assert Row("denied rate", 0.4765, 0.4766, kind="value").delta() == ("≈", "")
    assert Row("p99", 100.0, 100.6, better="lower", kind="ms").delta() == ("≈", "")
    assert Row("p50", 1.2, 2.0, better="lower", kind="ms").delta() == ("≈", "")  # under 1 ms
    assert Row("p99", 100.0, 112.0, better="lower", kind="ms").delta() == ("+12.0 %", "worse")
    assert Row("delivered", 71_750, 71_800).delta() == ("≈", "")
    assert Row("unaccounted", 0, 1, better="lower").delta() == ("+1", "worse")  # a loss is never noise


def test_broker_floor_table_has_no_raw_python_list():
    from exchange.cli import _figure_rows

    figures = {
        "rate": 2000.0,
        "received": 20000,
        "p50_ms": 3.1,
        "p99_ms": 9.0,
        "windows": [
            {"from_s": 0.0, "to_s": 5.0, "received": 10000, "p50_ms": 3.0, "p99_ms": 8.0},
            {"from_s": 5.0, "to_s": 10.0, "received": 10000, "p50_ms": 3.2, "p99_ms": 9.5},
        ],
    }
    rows = _figure_rows(figures)
    cells = " ".join(v for _, v in rows)
    assert "[" not in cells and "{" not in cells, rows
    assert ("window 0–5 s", "10,000 received, p50 3.0 ms, p99 8.0 ms") in rows


@pytest.mark.parametrize(
    "args, needles",
    [
        (["run", "demo", "--bootstrap", "127.0.0.1:1", "--duration", "2"], ["no Kafka broker answered at 127.0.0.1:1"]),
        (
            ["apply", "demo", "--bootstrap", "127.0.0.1:1", "--consumer", "psb", "--entry", "enterprise-registration", "--purpose", "x"],
            ["no Kafka broker answered at 127.0.0.1:1"],
        ),
        (["audit", "verify", "--bootstrap", "127.0.0.1:1", "--platform", "nope"], ["127.0.0.1:1", "dx.nope.audit"]),
        (["report", "/nonexistent/run"], ["/nonexistent/run"]),
        (["compare", "/nonexistent/a.json", str(DATA / "demo")], ["/nonexistent/a.json"]),
        (["run", "/nonexistent/scenario.yaml"], ["/nonexistent/scenario.yaml"]),
    ],
)
def test_expected_failures_are_one_line_with_exit_code_2(args, needles, tmp_path):
    if args[0] == "run" and "--bootstrap" in args:
        args = [*args, "--out", str(tmp_path / "out")]
    assert_one_line(exchange(*args), 2, *needles)


def test_a_port_in_use_is_one_line_with_exit_code_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_one_line(exchange("broker", "--port", str(port)), 2, f"port {port}", "in use")


def test_an_unknown_audit_topic_is_could_not_check_not_a_broken_chain():
    from exchange.kafka.tansu import EmbeddedBroker

    with EmbeddedBroker() as broker:
        done = exchange("audit", "verify", "--bootstrap", broker.bootstrap, "--platform", "nope")
    assert_one_line(done, 2, f"topic dx.nope.audit does not exist on {broker.bootstrap}")


def test_the_readme_lists_the_exit_codes_and_every_command_and_option():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    import typer.main

    from exchange.cli import app

    root = typer.main.get_command(app)
    names = set(root.commands)
    table = readme[readme.index("## Commands") : readme.index("## Where to read more")]
    for name in names - {"audit"}:
        assert f"`exchange {name}" in table, name
    assert "`exchange audit verify" in table and "`exchange --version`" in table
    assert "exit code" in table.lower() and "could not check" in table

    def options(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            yield from options(sub, [*path, name])
        for param in getattr(command, "params", []):
            if param.param_type_name == "option" and param.name != "help":
                yield " ".join(path), [*param.opts, *param.secondary_opts]

    for where, spellings in options(root, ["exchange"]):
        assert any(s in table for s in spellings), f"{where} {spellings[0]} is not in the README's command table"


def test_chinese_in_the_report_has_a_font_where_the_report_is_rendered():
    """Without a CJK font Chromium draws the report's Chinese as empty boxes: CI installs one
    with chromium, and the README names the package for users."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "fonts-noto-cjk" in ci and "fc-list :lang=zh" in ci
    assert "apt-get install fonts-noto-cjk" in (ROOT / "README.md").read_text(encoding="utf-8")
    if Path("/usr/bin/chromium").exists() and shutil.which("fc-list"):
        fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout
        assert fonts.strip(), "chromium is installed but no font covers Chinese: the report would show boxes"


def test_exchange_broker_listens_on_and_advertises_the_host_given(tmp_path):
    """`exchange broker --host`: an address other machines reach (here 127.0.0.2, another of this machine's)."""
    import asyncio
    import os

    from exchange.kafka import brokers

    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "broker", "--host", "127.0.0.2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bootstrap = proc.stdout.readline().strip()
        assert re.fullmatch(r"127\.0\.0\.2:\d+", bootstrap), bootstrap
        assert asyncio.run(brokers.describe(bootstrap)).kind == "tansu"  # it answers there
        with socket.socket() as s:  # and not 127.0.0.1
            assert s.connect_ex(("127.0.0.1", int(bootstrap.rsplit(":", 1)[1]))) != 0
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_bootstrap_without_a_port_says_9092_was_tried():
    """A newcomer's finding: `--bootstrap notahost` said only that no broker answered."""
    from aiokafka.errors import KafkaConnectionError

    from exchange.errors import BrokerUnreachable, kafka_errors

    with pytest.raises(BrokerUnreachable) as info, kafka_errors("localhost,127.0.0.1:9093", "reading x"):
        raise KafkaConnectionError("nothing there")
    assert (
        str(info.value)
        == "no Kafka broker answered at localhost,127.0.0.1:9093 while reading x (no port given for localhost: Kafka's 9092 was tried)"
    )
    with pytest.raises(BrokerUnreachable) as info, kafka_errors("[::1]:9093", "reading x"):
        raise KafkaConnectionError("nothing there")
    assert str(info.value) == "no Kafka broker answered at [::1]:9093 while reading x"


def test_a_bootstrap_host_that_does_not_resolve_is_named():
    """A newcomer's finding: `--bootstrap nosuchhost.invalid:9092` did not say the name is unknown
    (.invalid never resolves: RFC 6761)."""
    from aiokafka.errors import KafkaConnectionError

    from exchange.errors import BrokerUnreachable, kafka_errors

    with pytest.raises(BrokerUnreachable) as info, kafka_errors("nosuchhost.invalid:9092,127.0.0.1:9093,x.invalid", "reading x"):
        raise KafkaConnectionError("nothing there")
    assert str(info.value) == (
        "no Kafka broker answered at nosuchhost.invalid:9092,127.0.0.1:9093,x.invalid while reading x "
        "(no port given for x.invalid: Kafka's 9092 was tried; no such host name: nosuchhost.invalid, x.invalid)"
    )


def test_report_of_a_file_that_is_not_json_says_what_to_give(tmp_path):
    from exchange.results.report.load import ReportError, load_result

    path = tmp_path / "my.yaml"
    path.write_text("name: x\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r":1:1: not JSON \(.*\), so not a run's result\.json; give a run's directory or its result\.json"):
        load_result(path)


def test_report_of_other_json_or_of_an_unfinished_run_is_one_line_saying_so(tmp_path):
    """A newcomer's findings: other JSON gave one line per missing field, and the directory of an
    interrupted run said only 'result.json: no such file'."""
    from exchange.cli import _result_path
    from exchange.results.report.load import ReportError, load_result

    other = tmp_path / "other.json"
    other.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ReportError) as info:
        load_result(other)
    assert str(info.value) == f"{other}: not a run's result.json (no workload, counts, flows, conservation)"
    run = tmp_path / "run"
    run.mkdir()
    (run / "scenario.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ReportError, match=r"a run directory without result\.json: the run did not end \(interrupted, or it failed\)"):
        _result_path(run)
    (run / "result.json").write_text("{}", encoding="utf-8")
    assert _result_path(run) == run / "result.json"


def test_compare_rates_leave_out_the_seconds_before_the_first_record_and_after_the_last():
    """A newcomer's finding: the mean counted start-up and drain seconds, so the consume rate
    came out well under delivered / duration."""
    from exchange.results.compare import _active_mean

    assert _active_mean([0, 0, 5, 0, 7, 0, 0]) == 4.0  # a quiet second inside the run still counts
    assert _active_mean([0, 0]) is None and _active_mean([]) is None
