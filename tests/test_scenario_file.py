"""Tests for exchange.scenarios.loader and the scenario CLI: loading YAML, and problems
reported with file, line, column and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exchange.cli import app
from exchange.scenarios.loader import PRESETS_DIR, Problem, ScenarioError, load, parse, preset_names
from schemas.scenario import Scenario, Sharing, UpdateCycle, json_schema
from tests.harness import SHARING_SCENARIO

FILE = "s.yaml"

# Block style, so that each value of interest sits on its own line.
BASE = """\
name: base
platform:
  id: t1
  name: 测试平台
  region: "441900"
departments:
  - id: prov
    name: 提供部门
  - id: alpha
    name: 甲局
  - id: beta
    name: 乙局
catalogue:
  - id: open
    name: 无条件资源
    provider: prov
    sharing: unconditional
    partitions: 2
    items:
      - key: person.name
        name: 姓名
        type: person_name
        sensitivity: personal
  - id: cond
    name: 有条件资源
    provider: prov
    sharing: conditional
    items:
      - key: enterprise.code
        name: 信用代码
        type: credit_code
subscriptions:
  - consumer: alpha
    entry: open
  - consumer: beta
    entry: cond
    purpose: 测试
"""


def pos(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the nth occurrence of needle."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        parse(text, FILE)
    problems = info.value.problems
    assert problems
    assert str(info.value) == "\n".join(str(p) for p in problems)
    return problems


def only_problem(text: str) -> Problem:
    [problem] = problems_of(text)
    assert problem.file == FILE
    return problem


# --- loading ----------------------------------------------------------------------


def test_base_fixture_is_valid() -> None:
    s = parse(BASE, FILE)
    assert [e.id for e in s.catalogue] == ["open", "cond"]
    assert s.catalogue[0].partitions == 2
    assert s.subscriptions[1].id == "beta.cond"


def test_demo_preset_loads() -> None:
    assert "demo" in preset_names()
    assert preset_names() == sorted(preset_names())
    s = load("demo")
    assert isinstance(s, Scenario)
    assert s.name == "demo"
    assert s.platform.region == "441900"
    assert {e.id: e.sharing for e in s.catalogue} == {
        "gps-fix": Sharing.unconditional,
        "enterprise-registration": Sharing.conditional,
        "population": Sharing.not_shared,
        "social-insurance": Sharing.unconditional,
    }
    assert s.entries["population"].update_cycle is UpdateCycle.daily
    assert s.department_ids["nancheng"].region == "441900004"
    # a path works as well as a preset name
    assert load(PRESETS_DIR / "demo.yaml") == s


def test_load_from_a_file_reports_its_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(edit("entry: open", "entry: nosuch"), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load(path)
    [problem] = info.value.problems
    assert problem.file == str(path)


def test_load_unknown_name_lists_presets() -> None:
    with pytest.raises(ScenarioError) as info:
        load("no-such-scenario-anywhere")
    [problem] = info.value.problems
    assert problem.file == "no-such-scenario-anywhere"
    assert "demo" in problem.message


def test_sharing_harness_scenario_parses() -> None:
    s = parse(SHARING_SCENARIO, "sharing.yaml")
    assert [e.sharing for e in s.catalogue] == [Sharing.unconditional, Sharing.conditional, Sharing.not_shared]


# --- problems with positions ----------------------------------------------------------


def test_problem_str_format() -> None:
    assert str(Problem("a.yaml", 3, 7, "departments.0.id", "bad")) == "a.yaml:3:7: departments.0.id: bad"
    assert str(Problem("a.yaml", 1, 1, "", "the file is empty")) == "a.yaml:1:1: (document): the file is empty"


@pytest.mark.parametrize(
    ("old", "new", "base", "field", "at", "nth", "words"),
    [
        # an edit of a valid scenario → the one problem: its field, the text it points at (nth occurrence), words its message has
        pytest.param(
            "    entry: cond\n",
            "    entry: nosuch\n",
            BASE,
            "subscriptions.1.entry",
            "nosuch",
            0,
            ["'beta'", "'nosuch'"],
            id="subscription_to_unknown_entry",
        ),
        pytest.param(
            "{consumer: b, entry: cond,",
            "{consumer: b, entry: gone,",
            SHARING_SCENARIO,
            "subscriptions.2.entry",
            "gone",
            0,
            ["'b'", "'gone'"],
            id="subscription_to_unknown_entry_flow_style",
        ),
        pytest.param("consumer: alpha", "consumer: gamma", BASE, "subscriptions.0.consumer", "gamma", 0, ["'gamma'"], id="unknown_consumer"),
        pytest.param(
            "    provider: prov\n    sharing: conditional",
            "    provider: ghost\n    sharing: conditional",
            BASE,
            "catalogue.1.provider",
            "ghost",
            0,
            ["'ghost'", "'cond'"],
            id="unknown_provider",
        ),
        pytest.param(
            "    name: 乙局\n",
            "    name: 乙局\n  - id: alpha\n    name: 重复\n",
            BASE,
            "departments.3.id",
            "alpha",
            1,
            ["duplicate", "'alpha'"],
            id="duplicate_department_id",
        ),
        pytest.param(
            "partitions: 2", "partitions: many", BASE, "catalogue.0.partitions", "many", 0, ["must be a whole number, not 'many'"], id="wrong_type"
        ),
        pytest.param(
            "{id: b, name: 乙局}", "{id: b}", SHARING_SCENARIO, "departments.2.name", "{id: b}", 0, [], id="missing_required_field_flow_style"
        ),
    ],
)
def test_a_wrong_value_is_reported_where_it_stands(old, new, base, field, at, nth, words) -> None:
    text = edit(old, new, base)
    p = only_problem(text)
    assert p.field == field
    assert (p.line, p.column) == pos(text, at, nth)
    for word in words:
        assert word in p.message, p.message


def test_out_of_range_value() -> None:
    text = edit("partitions: 2", "partitions: 0")
    p = only_problem(text)
    assert p.field == "catalogue.0.partitions"
    line, col = pos(text, "partitions: 0")
    assert (p.line, p.column) == (line, col + len("partitions: "))
    assert p.message == "must be at least 1, not 0"


def test_missing_required_field_reported_at_its_mapping() -> None:
    text = edit("  - id: beta\n    name: 乙局\n", "  - id: beta\n")
    p = only_problem(text)
    assert p.field == "departments.2.name"
    assert (p.line, p.column) == pos(text, "id: beta")
    assert "required" in p.message.lower()


def test_missing_top_level_field() -> None:
    text = edit("name: base\n", "")
    p = only_problem(text)
    assert p.field == "name"
    assert (p.line, p.column) == (1, 1)


def test_unknown_field() -> None:
    text = edit("    name: 乙局\n", "    name: 乙局\n    colour: red\n")
    p = only_problem(text)
    assert p.field == "departments.2.colour"
    line, key_col = pos(text, "colour")
    assert p.line == line
    assert p.column in (key_col, pos(text, "red")[1])
    assert p.message.startswith("is not a field here (the fields here: ") and "kind, name" in p.message


def test_a_misspelt_field_gets_the_likely_one_and_a_refused_value_is_written() -> None:
    """A newcomer's finding: pydantic's "Extra inputs are not permitted", "Input should be
    greater than 0" and an enum's list said neither what was written nor what was meant."""
    text = edit("    name: 乙局\n", "    nmae: 乙局\n").replace("sharing: conditional", "sharing: 有条件共亨", 1)
    messages = {p.field: p.message for p in problems_of(text)}
    assert messages["departments.2.nmae"] == "is not a field here (did you mean 'name'?)"
    sharing = next(m for f, m in messages.items() if f.endswith(".sharing"))
    assert sharing.endswith(", not '有条件共亨' (did you mean '有条件共享'?)") and "(or 无条件共享, 有条件共享, 不予共享)" in sharing


def test_invalid_yaml_reports_the_error_line() -> None:
    text = edit("    name: 甲局\n", "    name: [甲局\n")
    p = only_problem(text)
    assert p.field == ""
    assert p.message.startswith("not valid YAML")
    # the flow sequence opened on the line of 甲局 runs into the next key
    assert pos(text, "[甲局")[0] <= p.line <= pos(text, "[甲局")[0] + 1
    assert p.column >= 1


def test_invalid_yaml_bad_indentation_line() -> None:
    text = edit("  id: t1\n  name: 测试平台\n", "  id: t1\n   name: 测试平台\n")
    p = only_problem(text)
    assert p.message.startswith("not valid YAML")
    assert p.line == pos(text, "   name: 测试平台")[0]


def test_empty_file() -> None:
    for text in ("", "\n", "# just a comment\n"):
        p = only_problem(text)
        assert p.message == "the file is empty"


def test_not_a_mapping() -> None:
    p = only_problem("- a\n- b\n")
    assert p.field == ""
    assert p.message == "must be a mapping of fields (name: value), not a list"


def test_duplicated_key_in_a_mapping() -> None:
    text = edit("    name: 乙局\n", "    name: 乙局\n    name: 丙局\n")
    p = only_problem(text)
    assert p.field == "departments.2.name"
    assert p.message == "key given twice"
    assert (p.line, p.column) == pos(text, "name: 丙局")


def test_duplicated_top_level_key() -> None:
    text = BASE + "name: again\n"
    p = only_problem(text)
    assert p.field == "name"
    assert (p.line, p.column) == pos(text, "name: again")


def test_chinese_sharing_alias() -> None:
    s = parse(edit("sharing: conditional", "sharing: 有条件共享"), FILE)
    assert s.entries["cond"].sharing is Sharing.conditional
    s = parse(edit("sharing: unconditional", "sharing: 不予共享"), FILE)
    assert s.entries["open"].sharing is Sharing.not_shared
    s = parse(edit("sharing: unconditional", 'sharing: " 无条件共享 "'), FILE)
    assert s.entries["open"].sharing is Sharing.unconditional


def test_unknown_sharing_value() -> None:
    text = edit("sharing: conditional", "sharing: 部分共享")
    p = only_problem(text)
    assert p.field == "catalogue.1.sharing"
    assert (p.line, p.column) == pos(text, "部分共享")


def test_unquoted_region_codes() -> None:
    text = edit('  region: "441900"\n', "  region: 441900\n")
    text = edit("    name: 乙局\n", "    name: 乙局\n    region: 441900004\n", text)
    s = parse(text, FILE)
    assert s.platform.region == "441900"
    assert s.department_ids["beta"].region == "441900004"


@pytest.mark.parametrize("bad", ["4419", '"44190"', "true", '"44190a"'])
def test_malformed_region_code(bad: str) -> None:
    text = edit('  region: "441900"\n', f"  region: {bad}\n")
    p = only_problem(text)
    assert p.field == "platform.region"
    assert p.line == pos(text, f"region: {bad}")[0]


def test_all_reference_problems_at_once() -> None:
    text = edit("  - id: beta\n", "  - id: alpha\n")  # duplicate department (and beta disappears)
    text = edit("    provider: prov\n    sharing: conditional", "    provider: ghost\n    sharing: conditional", text)
    text = edit("    entry: open\n", "    entry: nosuch\n", text)
    problems = problems_of(text)
    fields = {p.field for p in problems}
    assert len(problems) >= 3
    assert {"departments.2.id", "catalogue.1.provider", "subscriptions.0.entry"} <= fields
    assert "subscriptions.1.consumer" in fields  # beta is gone
    assert all(p.line > 1 for p in problems)


def test_all_schema_problems_at_once() -> None:
    text = edit("partitions: 2", "partitions: many")
    text = edit("    name: 乙局\n", "    name: 乙局\n    colour: red\n", text)
    text = edit("        type: credit_code\n", "        type: banknote\n", text)
    problems = problems_of(text)
    assert len(problems) >= 3
    by_field = {p.field: p for p in problems}
    assert set(by_field) >= {"catalogue.0.partitions", "departments.2.colour", "catalogue.1.items.0.type"}
    assert by_field["catalogue.1.items.0.type"].line == pos(text, "banknote")[0]
    assert by_field["catalogue.0.partitions"].line == pos(text, "many")[0]


def test_entry_level_validator_problem_is_placed_at_the_entry() -> None:
    text = edit("    sharing: unconditional\n", "    sharing: unconditional\n    master_key: person.name\n")
    p = only_problem(text)
    assert p.field.startswith("catalogue.0")
    assert p.line == pos(text, "  - id: open")[0]
    assert "master_key" in p.message


# --- CLI ----------------------------------------------------------------------------

PROBLEM_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<field>[\w.()]+): (?P<msg>.+)$")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_validate_reports_every_problem(runner: CliRunner, tmp_path: Path) -> None:
    text = edit("partitions: 2", "partitions: many")
    text = edit("  - id: beta\n", "  - id: Beta\n", text)
    text = edit("    name: 乙局\n", "    name: 乙局\n    colour: red\n", text)
    text = edit("    purpose: 测试\n", "    purpose: 测试\n    items: [nope]\n", text)  # message quotes a list: [...]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load(path)
    expected = [str(p) for p in info.value.problems]
    assert len(expected) == 4

    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines == expected  # verbatim: nothing eaten as markup, nothing wrapped
    for line in lines:
        m = PROBLEM_LINE.match(line)
        assert m, line
        assert m["file"] == str(path)
        assert int(m["line"]) >= 1 and int(m["col"]) >= 1
    assert any("['nope']" in line for line in lines)
    assert any("lower-case ASCII id" in line and "'Beta'" in line for line in lines)  # the pattern in words, not the regex
    assert "4 problem(s)" in result.output


def test_cli_validate_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.yaml")
    result = runner.invoke(app, ["validate", missing])
    assert result.exit_code == 2  # could not check: nothing to read (README, exit codes)
    assert result.output.strip().startswith(f"error: {missing}: no such file")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_validate_demo_ok(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "demo"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")
    assert "ok: demo: 9 departments, 4 entries, 22 items, 9 subscriptions" in result.stdout


def test_cli_schema_is_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Scenario"
    assert "CatalogueEntry" in schema["$defs"]
    assert schema == json.loads(json.dumps(json_schema()))
    assert "additionalProperties" in schema["$defs"]["Department"]


# --- load rates ----------------------------------------------------------------------


def rates_scenario(load: dict) -> Scenario:
    def entry(i: str, provider: str) -> dict:
        return {"id": i, "name": i, "provider": provider, "sharing": "unconditional", "items": [{"key": "x.v", "name": "v", "type": "text"}]}

    return Scenario.model_validate(
        {
            "name": "rates",
            "platform": {"id": "r", "name": "r", "region": "441900"},
            "departments": [{"id": d, "name": d} for d in ("p", "q", "r")],
            "catalogue": [entry("p1", "p"), entry("p2", "p"), entry("p3", "p"), entry("q1", "q"), entry("q2", "q"), entry("r1", "r")],
            "load": load,
        }
    )


def test_entry_rates_split_evenly_over_own_entries() -> None:
    s = rates_scenario({"producers": [{"department": "p", "rate": 300}]})
    assert s.entry_rates() == pytest.approx({"p1": 100.0, "p2": 100.0, "p3": 100.0})


def test_entry_rates_named_entries_and_default_rate() -> None:
    s = rates_scenario({"default_rate": 7, "producers": [{"department": "p", "rate": 90}, {"department": "q", "rate": 40, "entries": ["q2"]}]})
    assert s.entry_rates() == pytest.approx({"p1": 30.0, "p2": 30.0, "p3": 30.0, "q1": 7.0, "q2": 40.0, "r1": 7.0})


def test_entry_rates_two_producers_of_one_department_add_up() -> None:
    s = rates_scenario({"producers": [{"department": "q", "rate": 10}, {"department": "q", "rate": 4, "entries": ["q1"]}]})
    assert s.entry_rates() == pytest.approx({"q1": 9.0, "q2": 5.0})


def test_entry_rates_demo() -> None:
    assert load("demo").entry_rates() == pytest.approx(
        {"gps-fix": 2470.0, "enterprise-registration": 200.0, "population": 100.0, "social-insurance": 100.0}
    )


def test_producer_naming_another_departments_entry_is_a_problem() -> None:
    text = BASE + "load:\n  producers:\n    - department: alpha\n      rate: 5\n      entries: [open]\n"
    p = only_problem(text)
    assert p.field == "load.producers.0.entries.0"
    assert (p.line, p.column) == pos(text, "open]")
    assert "'prov'" in p.message


# --- catalogue rules (一数一源, 负面清单, 责任清单, regions, cascades) ------------------------------

RULES_BASE = """
name: rules
platform: {id: p1, name: 平台, region: "441900"}
departments:
  - {id: market, name: 市场监管局}
  - {id: tax, name: 税务局}
catalogue:
  - id: reg
    name: 登记
    provider: market
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 代码, type: credit_code}
      - {key: enterprise.name, name: 名称, type: enterprise_name, authoritative: true}
  - id: taxreg
    name: 税务登记
    provider: tax
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 代码, type: credit_code}
      - {key: enterprise.name, name: 名称, type: enterprise_name, authoritative: AUTH}
subscriptions:
  - {consumer: tax, entry: reg, items: [enterprise.name]}
"""


def _rules(text: str):
    with pytest.raises(ScenarioError) as info:
        parse(text, "rules.yaml")
    return info.value.problems


def test_two_departments_claiming_one_item_is_an_error():
    problems = _rules(RULES_BASE.replace("AUTH", "true"))
    assert any("both claim" in p.message and "market" in p.message and "tax" in p.message for p in problems)
    assert parse(RULES_BASE.replace("AUTH", "false"), "rules.yaml").authority == {"enterprise.name": "market"}


def test_a_negative_listed_item_in_a_subscription_is_an_error():
    text = RULES_BASE.replace("AUTH", "false") + "negative_list: {items: [enterprise.name]}\n"
    problems = _rules(text)
    assert any(p.field == "subscriptions.0.items" and "负面清单" in p.message for p in problems)


def test_a_responsibility_nobody_fulfils_is_an_error():
    text = RULES_BASE.replace("AUTH", "false") + "responsibilities: [{department: tax, items: [tax.status]}]\n"
    problems = _rules(text)
    assert any(p.field == "responsibilities.0.items" and "tax.status" in p.message for p in problems)


def test_a_region_code_that_does_not_exist_is_an_error():
    problems = _rules(RULES_BASE.replace("AUTH", "false").replace('region: "441900"}', 'region: "991900"}'))
    assert any(p.field == "platform.region" and "does not exist" in p.message for p in problems)
    problems = _rules(RULES_BASE.replace("AUTH", "false").replace("{id: tax, name: 税务局}", '{id: tax, name: 税务局, region: "441900999"}'))
    assert any(p.field == "departments.1.region" for p in problems)


def test_platform_cycles_and_unreachable_entries_are_errors():
    base = RULES_BASE.replace("AUTH", "false")
    cyclic = base.replace('region: "441900"}', 'region: "441900", parent: p2}') + (
        'platforms:\n  - {id: p2, name: 省平台, region: "440000", parent: p1}\n'
    )
    assert any("cycle" in p.message for p in _rules(cyclic))
    apart = base.replace("{id: tax, name: 税务局}", "{id: tax, name: 税务局, platform: p3}") + (
        'platforms:\n  - {id: p3, name: 别的平台, region: "420000"}\n'
    )
    problems = _rules(apart)
    assert any(p.field == "subscriptions.0.entry" and "no hub path" in p.message for p in problems)


# --- bad input: each class named by file, line and field ---------------------------------


def test_duplicate_entry_and_subscription_ids_are_each_placed():
    text = edit("  - id: cond\n", "  - id: open\n")  # a second entry called open
    text = edit("    purpose: 测试\n", "    purpose: 测试\n  - consumer: alpha\n    entry: open\n", text)
    problems = {p.field: p for p in problems_of(text)}
    assert problems["catalogue.1.id"].line == pos(text, "  - id: open", nth=1)[0]
    assert "duplicate" in problems["catalogue.1.id"].message and "'open'" in problems["catalogue.1.id"].message
    assert problems["subscriptions.2.entry"].line == pos(text, "    entry: open", nth=1)[0]
    assert "alpha.open" in problems["subscriptions.2.entry"].message
    assert all(p.file == FILE for p in problems.values())


def test_two_authorities_for_one_item_names_the_second_claim():
    text = RULES_BASE.replace("AUTH", "true")
    [p] = _rules(text)
    assert p.file == "rules.yaml"
    assert p.field == "catalogue.1.items.1.authoritative"
    assert p.line == pos(text, "authoritative: true", nth=1)[0]


def test_a_cycle_in_platform_parents_names_the_parent_field():
    text = RULES_BASE.replace("AUTH", "false").replace('region: "441900"}', 'region: "441900", parent: p2}') + (
        'platforms:\n  - {id: p2, name: 省平台, region: "440000", parent: p1}\n'
    )
    problems = [p for p in _rules(text) if "cycle" in p.message]
    assert {p.field for p in problems} == {"platform.parent", "platforms.0.parent"}
    for p in problems:
        assert p.line == pos(text, "parent: p2" if p.field == "platform.parent" else "parent: p1")[0]


@pytest.mark.parametrize(
    ("yaml_field", "value", "field", "words"),
    [
        ("rate", "1e12", "load.producers.0.rate", "must be at most 10000000, not '1e12'"),
        ("rate", "-5", "load.producers.0.rate", "must be greater than 0, not -5"),
        ("rate", "0", "load.producers.0.rate", "must be greater than 0, not 0"),
        ("rate", ".inf", "load.producers.0.rate", "finite"),
        ("rate", ".nan", "load.producers.0.rate", ""),
        ("rate", "fast", "load.producers.0.rate", "must be a number, not 'fast'"),
        ("profile", "{kind: burst, multiplier: .inf}", "load.producers.0.profile.multiplier", "finite"),
        ("profile", "{kind: steps, steps: [[0.5, .inf]]}", "load.producers.0.profile.steps.0.1", "finite"),
        ("profile", "{kind: ramp, end: .nan}", "load.producers.0.profile.end", "finite"),
    ],
)
def test_absurd_rates_are_refused_at_their_line(yaml_field, value, field, words):
    rate = value if yaml_field == "rate" else "5"
    profile = f"      profile: {value}\n" if yaml_field == "profile" else ""
    text = BASE + f"load:\n  producers:\n    - department: prov\n      rate: {rate}\n{profile}"
    p = only_problem(text)
    assert p.field == field
    assert p.line == pos(text, f"rate: {rate}" if yaml_field == "rate" else "profile:")[0]
    assert words in p.message


@pytest.mark.parametrize(
    ("text_in", "field"),
    [
        ("load:\n  default_rate: .inf\n", "load.default_rate"),
        ("load:\n  default_rate: 1e15\n", "load.default_rate"),
        ("load:\n  duration: .nan\n", "load.duration"),
    ],
)
def test_absurd_load_settings_are_refused(text_in, field):
    text = BASE + text_in
    p = only_problem(text)
    assert (p.field, p.line) == (field, text.count("\n", 0, text.index(text_in.split("\n")[1].strip())) + 1)


def test_an_infinite_consume_rate_is_refused():
    text = edit("  - id: alpha\n    name: 甲局\n", "  - id: alpha\n    name: 甲局\n    consume_rate: .inf\n")
    p = only_problem(text)
    assert p.field == "departments.1.consume_rate" and p.line == pos(text, ".inf")[0]


def test_cli_validate_lists_every_class_of_reference_problem_at_once(runner: CliRunner, tmp_path: Path) -> None:
    text = RULES_BASE.replace("AUTH", "true")  # two authorities for enterprise.name
    text = text.replace('region: "441900"}', 'region: "441900", parent: p2}') + (
        'platforms:\n  - {id: p2, name: 省平台, region: "440000", parent: p1}\n'  # a cycle
    )
    text = text.replace("  - {id: tax, name: 税务局}\n", "  - {id: tax, name: 税务局}\n  - {id: tax, name: 重复}\n")  # duplicate id
    text = text.replace(
        "  - {consumer: tax, entry: reg, items: [enterprise.name]}\n",
        "  - {consumer: tax, entry: reg, items: [enterprise.name]}\n  - {consumer: ghost, entry: nosuch}\n",
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = [m for m in (PROBLEM_LINE.match(line) for line in result.stdout.splitlines()) if m]
    fields = {m["field"] for m in lines}
    assert {
        "departments.2.id",
        "subscriptions.1.consumer",
        "subscriptions.1.entry",
        "catalogue.1.items.1.authoritative",
        "platform.parent",
        "platforms.0.parent",
    } <= fields, fields
    assert all(m["file"] == str(path) and int(m["line"]) > 1 for m in lines)
    assert f"{len(lines)} problem(s)" in result.output


# --- YAML as people write it: merge keys, aliases, encodings, numbers YAML changes -------------

PID = "      - key: person.name\n        name: 姓名\n        type: person_name\n        sensitivity: personal\n"


def test_merge_keys_merge_and_written_keys_win() -> None:
    text = edit(
        PID,
        (
            "      - &pid {key: person.id, name: 身份证号, type: resident_id, sensitivity: personal}\n"
            "      - {<<: *pid, key: person.name}\n"
            "      - {<<: [*pid, {mask: redact}], key: person.phone, name: 手机}\n"
        ),
    )
    s = parse(text, FILE)
    pid, name, phone = s.entries["open"].items
    assert (name.key, name.name, name.type, name.sensitivity.value) == ("person.name", "身份证号", pid.type, "personal")
    assert (phone.key, phone.name, phone.mask.value) == ("person.phone", "手机", "redact")


def test_a_merge_key_with_no_mapping_is_a_problem() -> None:
    text = edit(PID, "      - &k person.id\n      - {<<: *k, key: person.name, name: 姓名, type: person_name}\n")
    problems = problems_of(text)
    assert any("merge key" in p.message and p.field == "catalogue.0.items.1" for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "field", "alias"),
    [
        ("name: base", "name: &n [hunt, *n]", "name.1", "*n"),
        ("    name: 甲局\n", "    name: 甲局\n    x: &m {a: *m}\n", "departments.1.x.a", "*m"),
        ("  - id: alpha\n    name: 甲局\n", "  - &d {id: alpha, name: 甲局, <<: *d}\n", "departments.1", "*d"),
    ],
)
def test_a_recursive_alias_is_a_problem_line(old: str, new: str, field: str, alias: str) -> None:
    text = edit(old, new)
    problems = problems_of(text)
    [p] = [p for p in problems if "recursive alias" in p.message]
    assert p.field == field
    assert (p.line, p.column) == pos(text, alias)


def alias_bomb(levels: int, width: int = 9) -> str:
    text = "a0: &a0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for n in range(1, levels + 1):
        text += f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]\n"
    return text


@pytest.mark.parametrize("levels", [5, 7, 12])
def test_an_alias_bomb_is_refused_within_the_bound(levels: int) -> None:
    # nine-fold a level: 9**12 values if expanded; the bound stops it at the same cost whatever the depth
    from exchange.scenarios.loader import MAX_ALIAS_EXPANSION

    p = only_problem(alias_bomb(levels) + BASE)
    assert "alias" in p.message and f"{MAX_ALIAS_EXPANSION:,}" in p.message
    assert p.line <= levels + 1


def mapping_bomb(levels: int) -> str:
    text = "b0: &b0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}\n"
    for n in range(1, levels + 1):
        text += f"b{n}: &b{n} {{" + ", ".join(f"k{j}: *b{n - 1}" for j in range(9)) + "}\n"
    return text


def merge_bomb(levels: int) -> str:
    # merge keys fold equal keys together, but each merge still walks its sources' keys
    text = "m0: &m0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}\n"
    for n in range(1, levels + 1):
        text += f"m{n}: &m{n} {{<<: [" + ", ".join([f"*m{n - 1}"] * 9) + "]}\n"
    return text


@pytest.mark.parametrize("bomb", [mapping_bomb(8), merge_bomb(30)], ids=["mappings", "merges"])
def test_alias_bombs_of_mappings_and_merges_are_refused(bomb: str) -> None:
    p = only_problem(bomb + BASE)
    assert "alias bomb" in p.message and p.field == ""


def test_aliases_within_the_bound_are_expanded() -> None:
    # a catalogue that reuses one list of items 50 times: 50 × 4 items, far within the bound
    entries = "".join(f"  - {{id: e{n}, name: 资源{n}, provider: prov, sharing: unconditional, items: *items}}\n" for n in range(50))
    text = edit(
        "catalogue:\n",
        "catalogue:\n"
        + entries.replace(
            "items: *items",
            "items: &items [{key: a.b, name: 甲, type: text}, "
            "{key: a.c, name: 乙, type: text}, {key: a.d, name: 丙, type: text}, {key: a.e, name: 丁, type: text}]",
            1,
        ),
    )
    s = parse(text, FILE)
    assert len(s.catalogue) == 52 and all(len(s.entries[f"e{n}"].items) == 4 for n in range(50))


def test_values_nested_without_end_are_a_problem_not_a_crash() -> None:
    for text in ("name: " + "[" * 5000 + "]" * 5000 + "\n", "name: " + "[" * 200 + "]" * 200 + "\n"):
        assert any("nest" in p.message for p in problems_of(text))  # libyaml: "exceeded maximum nesting depth"


def _written(tmp_path: Path, text: str, encoding: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_a_file_saved_as_gbk_is_refused_naming_the_encoding(tmp_path: Path, encoding: str) -> None:
    path = _written(tmp_path, BASE, encoding)
    with pytest.raises(ScenarioError) as info:
        load(path)
    [p] = info.value.problems
    assert p.file == str(path)
    assert (p.line, p.column) == pos(BASE, "测试平台")  # the first character that is not UTF-8
    assert "not UTF-8" in p.message and "GBK/GB18030" in p.message and "iconv -f GB18030 -t UTF-8" in p.message


@pytest.mark.parametrize(("encoding", "looks"), [("big5", "Big5"), ("utf-16-le", "UTF-16 or UTF-32 without a byte-order mark")])
def test_other_encodings_are_refused_saying_what_they_look_like(tmp_path: Path, encoding: str, looks: str) -> None:
    # these Big5 bytes are valid GB18030 too, but read so they give kana and rare characters
    path = _written(tmp_path, "name: 測試平臺\ndescription: 政務資料共享交換\n", encoding)
    with pytest.raises(ScenarioError) as info:
        load(path)
    [p] = info.value.problems
    assert p.file == str(path) and "not UTF-8" in p.message and looks in p.message


def test_a_binary_file_is_not_text_and_a_tab_is_named(tmp_path: Path) -> None:
    """A newcomer's findings: /bin/ls was said to look like UTF-16, and a tab's YAML error never said 'tab'."""
    path = tmp_path / "ls.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\x01\x00\x00\x00\x10\x6b\x00\x00")
    with pytest.raises(ScenarioError) as info:
        load(path)
    [p] = info.value.problems
    assert p.message == "not a text file (a scenario is YAML text, saved as UTF-8)" and (p.line, p.column) == (1, 8)
    [p] = problems_of(edit("  id: t1\n", "\tid: t1\n"))
    assert p.message.startswith("not valid YAML: ") and p.message.endswith("(a tab: YAML indents with spaces only)")


def test_a_latin1_file_is_refused_without_a_false_guess(tmp_path: Path) -> None:
    text = "name: café\n"
    path = _written(tmp_path, text, "latin-1")
    with pytest.raises(ScenarioError) as info:
        load(path)
    [p] = info.value.problems
    assert (p.line, p.column) == (1, 10) and "not UTF-8" in p.message and "GB" not in p.message


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_files_with_a_byte_order_mark_are_read(tmp_path: Path, encoding: str) -> None:
    path = _written(tmp_path, BASE, encoding)
    assert load(path).platform.name == "测试平台"


def test_cli_validate_says_one_line_for_a_gbk_file(runner: CliRunner, tmp_path: Path) -> None:
    path = _written(tmp_path, BASE, "gb18030")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}:4:9: (document): not UTF-8") and "Traceback" not in result.output


def test_a_directory_is_a_problem_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path)
    [p] = info.value.problems
    assert p.file == str(tmp_path) and "cannot read" in p.message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('  region: "441900"\n', "  region: 000000\n", "platform.region"),
        ("    name: 乙局\n", "    name: 乙局\n    region: 0441900\n", None),  # not octal (9): YAML keeps it as text
        ("partitions: 2", "partitions: 010", "catalogue.0.partitions"),
        ("partitions: 2", "partitions: 07", "catalogue.0.partitions"),
    ],
)
def test_an_unquoted_number_with_a_leading_zero_says_how_to_write_it(old: str, new: str, field: str | None) -> None:
    text = edit(old, new)
    if field is None:
        problems = problems_of(text)
        assert all("octal" not in p.message for p in problems)
        return
    p = only_problem(text)  # one problem: not also the pattern it then fails
    written = new.split(": ")[1].strip()
    assert p.field == field and (p.line, p.column) == pos(text, written)
    assert "octal" in p.message and f'"{written}"' in p.message and "quotes" in p.message


@pytest.mark.parametrize(
    ("written", "read_as"), [("no", "the boolean false"), ("On", "the boolean true"), ("12:30", "the number 750"), ("0x1F", "the number 31")]
)
def test_a_value_yaml_changes_says_so(written: str, read_as: str) -> None:
    text = edit("    name: 甲局\n", f"    name: {written}\n")
    p = only_problem(text)
    assert p.field == "departments.1.name"
    assert "valid string" in p.message and f"YAML reads the unquoted {written} as {read_as}" in p.message
    assert "quotes" in p.message


# --- every problem in one pass ----------------------------------------------------------------


def test_structural_and_reference_problems_come_together() -> None:
    text = edit("partitions: 2", "partitions: many")
    text = edit("consumer: alpha", "consumer: gamma", text)
    text = edit("    provider: prov\n    sharing: conditional", "    provider: ghost\n    sharing: conditional", text)
    fields = [p.field for p in problems_of(text)]
    assert fields == ["catalogue.0.partitions", "catalogue.1.provider", "subscriptions.0.consumer"]


def test_one_bad_item_type_is_one_problem() -> None:
    text = edit("        type: credit_code\n", "        type: banknote\n")
    [p] = problems_of(text)  # not also `catalogue: Tuple should have at least 1 item`, nor beta's subscription
    assert p.field == "catalogue.1.items.0.type" and p.line == pos(text, "banknote")[0]
    assert "'credit_code'" in p.message


def test_an_empty_item_list_is_one_plain_problem_and_its_entry_is_still_checked() -> None:
    text = edit(
        "    provider: prov\n    sharing: conditional\n    items:\n      - key: enterprise.code\n        name: 信用代码\n        type: credit_code\n",
        "    provider: ghost\n    sharing: conditional\n    items: []\n",
    )
    problems = problems_of(text)
    assert [p.field for p in problems] == ["catalogue.1.provider", "catalogue.1.items"]
    assert problems[1].message == "must list at least 1 element, not 0"  # not pydantic's "Tuple should have ..."


def test_a_refused_enum_in_one_of_several_entries_keeps_the_entry_checked() -> None:
    # the entry is checked with the enum's first value (as a refused optional field is with its
    # default), not dropped: its unknown provider is found in the same pass
    text = edit("    provider: prov\n    sharing: conditional", "    provider: ghost\n    sharing: 部分共享", BASE)
    problems = problems_of(text)
    assert [p.field for p in problems] == ["catalogue.1.provider", "catalogue.1.sharing"]


def test_references_to_a_refused_element_are_not_reported_again() -> None:
    text = edit("  - id: alpha\n", "  - id: Alpha\n")  # refused by the id pattern
    text = edit("    sharing: conditional\n", "    sharing: conditional\n    master_key: enterprise.nope\n", text)
    problems = problems_of(text)
    assert [p.field for p in problems] == ["departments.1.id", "catalogue.1"]


def test_reference_problems_after_dropped_list_elements_keep_their_written_place() -> None:
    text = edit("  - id: alpha\n    name: 甲局\n", "  - id: alpha\n    name: 甲局\n    kind: 外星\n")
    text = edit("    purpose: 测试\n", "    purpose: 测试\n  - {consumer: beta, entry: nowhere, items: 5}\n  - {consumer: beta, entry: gone}\n", text)
    problems = {p.field: p for p in problems_of(text)}
    # items: 5 is refused, and the subscription's entry is checked all the same
    assert set(problems) == {"departments.1.kind", "subscriptions.2.items", "subscriptions.2.entry", "subscriptions.3.entry"}
    assert problems["subscriptions.3.entry"].line == pos(text, "entry: gone")[0]


def test_every_problem_when_the_only_entry_and_the_platform_are_refused() -> None:
    # dropping the only entry (or the platform) would leave nothing to check references against
    text = (
        "name: x\n"
        "platform: {id: p, name: 平台, region: 4419}\n"
        "departments: [{id: a, name: 甲}]\n"
        "catalogue:\n"
        "  - {id: e, name: 资源, provider: a, sharing: 部分共享, items: [{key: a.b, name: 乙, type: banknote}]}\n"
        "subscriptions: [{consumer: ghost, entry: e}, {consumer: a, entry: nope}]\n"
        "load: {producers: [{department: a, rate: 5}], duration: 010}\n"
    )
    problems = problems_of(text)
    assert [p.field for p in problems] == [
        "platform.region",
        "catalogue.0.sharing",
        "catalogue.0.items.0.type",
        "subscriptions.0.consumer",
        "subscriptions.1.entry",
        "load.duration",
    ]
    assert [p.line for p in problems] == [2, 5, 5, 6, 6, 7]


@pytest.mark.parametrize(
    ("old", "new", "terms"),
    [
        ("sharing: conditional", "sharing: 部分共享", "无条件共享, 有条件共享, 不予共享"),
        ("    name: 乙局\n", "    name: 乙局\n    kind: 外星\n", "委办局, 垂直部门"),
    ],
)
def test_enum_messages_list_the_chinese_terms(old: str, new: str, terms: str) -> None:
    p = only_problem(edit(old, new))
    assert terms in p.message and "'" in p.message


def test_a_producer_whose_department_provides_nothing_is_a_problem() -> None:
    text = BASE + "load:\n  producers:\n    - department: alpha\n      rate: 5\n"
    p = only_problem(text)
    assert p.field == "load.producers.0.department" and (p.line, p.column) == pos(text, "alpha", nth=2)
    assert "provides no entry" in p.message


# --- conditional subscriptions grant nothing by default (issue 14, item 6) --------------------


def test_a_conditional_subscription_without_status_is_pending() -> None:
    from exchange.policy.sharing import compile_policy
    from schemas.envelope import Topics

    s = parse(BASE, FILE)
    assert s.subscriptions[1].status.value == "pending"
    [route] = compile_policy(s, Topics("t1"))["cond"].routes
    assert route.approved is False
    s = parse(edit("    purpose: 测试\n", "    purpose: 测试\n    status: approved\n"), FILE)
    assert compile_policy(s, Topics("t1"))["cond"].routes[0].approved is True


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "86401"])
def test_cli_run_refuses_a_duration_that_load_duration_refuses(runner: CliRunner, tmp_path: Path, value: str) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "demo", "--duration", value, "--out", str(out)])
    assert result.exit_code == 2
    assert "--duration" in result.output and "load.duration" in result.output
    assert "Traceback" not in result.output and "conservation" not in result.output
    assert not out.exists()  # refused before anything started


@pytest.mark.parametrize("composer", ["_PyComposer", "_CComposer"])
def test_both_yaml_parsers_give_the_same_problems(monkeypatch: pytest.MonkeyPatch, composer: str) -> None:
    # libyaml's parser when PyYAML has it, PyYAML's own otherwise: the same rules either way
    from exchange.scenarios import loader as scenario_file

    if not hasattr(scenario_file, composer):
        pytest.skip("PyYAML built without libyaml")
    monkeypatch.setattr(scenario_file, "_COMPOSER", getattr(scenario_file, composer))
    merged = edit(PID, "      - &pid {key: person.id, name: 身份证号, type: resident_id}\n      - {<<: *pid, key: person.name}\n")
    assert [i.key for i in parse(merged, FILE).entries["open"].items] == ["person.id", "person.name"]
    text = edit("name: base", "name: &n [hunt, *n]")
    text = edit('  region: "441900"\n', "  region: 000000\n", text)
    text = edit("    name: 甲局\n", "    name: no\n", text)
    problems = problems_of(text)
    assert [(p.field, p.line, p.column) for p in problems] == [
        ("name", 1, 7),
        ("name.1", 1, 17),
        ("platform.region", 5, 11),
        ("departments.1.name", 10, 11),
    ]
    assert "recursive alias" in problems[1].message and "octal" in problems[2].message and "boolean" in problems[3].message
    assert "alias bomb" in only_problem(alias_bomb(9) + BASE).message


def test_cli_validate_notes_conditional_subscriptions_left_pending(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0
    assert "note: 1 conditional subscription(s) without status are pending" in result.stdout and "beta.cond" in result.stdout
    path.write_text(edit("    purpose: 测试\n", "    purpose: 测试\n    status: pending\n"), encoding="utf-8")
    assert "note:" not in runner.invoke(app, ["validate", str(path)]).stdout  # said on purpose


YAML_BITS = [
    "*a",
    "&a x",
    "&a",
    "<<: *a",
    "{<<: *a}",
    "[*a, *a]",
    "{",
    "]",
    "000000",
    "0o17",
    "0x1F",
    "012",
    "1:30",
    "yes",
    "~",
    "!!binary aGk=",
    "!!python/object:os.system x",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "? [a]",
    ".inf",
    "-.nan",
    "'quoted'",
    '"\\u0000"',
    "2001-12-14",
    "- x",
    "a: b: c",
    "\t",
    "%YAML 1.1",
    "---",
    "...",
    "é",
    "测试",
    "\\x80",
    "@",
    "`",
    "|\n  text",
    ">-\n  text",
    "&b [*b]",
    "&c {k: *c}",
    "{<<: [*a, *a]}",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_edit_of_a_valid_file_is_a_scenario_or_problem_lines(data) -> None:
    # what people type (and paste) into a file: never a traceback, always file:line:column problems
    lines = ("a0: &a {id: x, name: y}\n" + BASE).splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        n = data.draw(st.integers(0, len(lines) - 1))
        head = lines[n].split(": ", 1)[0] if ": " in lines[n] else lines[n]
        lines[n] = head + ": " + data.draw(st.sampled_from(YAML_BITS) | st.text(max_size=12))
    text = "\n".join(lines) + "\n"
    try:
        parse(text, FILE)
    except ScenarioError as exc:
        assert exc.problems and all(p.file == FILE and p.line >= 0 and p.column >= 0 for p in exc.problems)


def test_a_warmup_as_long_as_the_files_run_is_a_problem_validate_reports() -> None:
    """A newcomer's finding: validate passed `warmup: 50` in a 30 s file that `exchange run` refused."""
    text = BASE + "load:\n  duration: 30\n  warmup: 50\n"
    p = only_problem(text)
    assert p.field == "load.warmup" and (p.line, p.column) == pos(text, "50")
    assert p.message.startswith("50 s is not shorter than load.duration (30 s)")  # no "Value error, "


def test_a_region_code_refused_is_said_in_words() -> None:
    text = edit('  region: "441900"\n', '  region: "4419"\n')
    p = only_problem(text)
    assert p.message == "must be an administrative division code (GB/T 2260): 6 digits, or 9 for a town or street, not '4419'"


def test_cli_validate_a_directory_could_not_check(runner: CliRunner, tmp_path: Path) -> None:
    """Nothing to read is exit 2 (could not check), a directory as a missing file (a newcomer's finding: it was 1)."""
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read the file" in result.output


def test_a_misspelt_id_or_value_names_the_likely_one() -> None:
    """A newcomer's finding: a misspelt provider also made its producer 'provide no entry',
    with nothing pointing at the typo."""
    text = edit("    provider: prov\n    sharing: conditional", "    provider: porv\n    sharing: conditional")
    text = edit("        type: credit_code\n", "        type: credit_cod\n", text)
    text += "load:\n  producers:\n    - {department: alpha, rate: 1}\n"
    problems = {p.field: p.message for p in problems_of(text)}
    assert problems["catalogue.1.provider"].endswith("is not a department (did you mean 'prov'?)")
    assert problems["catalogue.1.items.0.type"].endswith("(did you mean 'credit_code'?)")
    ghost = only_problem(edit("    provider: prov\n    sharing: conditional", "    provider: ghost\n    sharing: conditional"))
    assert "did you mean" not in ghost.message  # nothing close: no guess


def test_a_department_outside_its_platforms_region_is_a_problem() -> None:
    """A newcomer's finding: a town outside the platform's region was silently given every row
    (rows are filtered to a region only inside the platform's). Now validate says so."""
    text = edit("    name: 甲局\n", '    name: 甲局\n    region: "110101001"\n')  # a Beijing street on Dongguan's platform
    p = only_problem(text)
    assert p.field == "departments.1.region"
    assert p.message == "department 'alpha': region 110101001 is outside the region of its platform 't1' (441900)"
    assert parse(edit("    name: 甲局\n", '    name: 甲局\n    region: "441900004"\n'), FILE).departments[1].region == "441900004"  # a town inside
    # a refused platform region is the only problem: its placeholder (the nation) holds every town
    text = edit("    name: 甲局\n", '    name: 甲局\n    region: "441900004"\n').replace('region: "441900"', 'region: "4419"', 1)
    assert only_problem(text).field == "platform.region"


def test_more_of_pydantics_words_are_the_files() -> None:
    """A newcomer's findings: "Field required", "unable to parse string as a number" and an item
    key's regular expression; and 市级 / 每天 refused though operators write them."""
    text = BASE.replace("    provider: prov\n", "", 1).replace("key: person.name", "key: Person.Name", 1)
    text += "load:\n  duration: 10s\n"
    messages = {p.field: p.message for p in problems_of(text)}
    assert messages["catalogue.0.provider"] == "required, and not given"
    assert messages["load.duration"] == "must be a number, not '10s' (the number alone: the field's unit is implied)"
    assert messages["catalogue.0.items.0.key"].startswith("must be a dotted lower-case key such as person.name")
    assert messages["catalogue.0.items.0.key"].endswith(", not 'Person.Name'")
    s = parse(
        edit('  region: "441900"\n', '  region: "441900"\n  level: 市级\n').replace(
            "sharing: unconditional", "sharing: unconditional\n    update_cycle: 每天", 1
        ),
        FILE,
    )
    assert s.platform.level.value == "municipal" and s.catalogue[0].update_cycle is UpdateCycle.daily


def test_a_duplicate_is_one_problem_without_follow_ons() -> None:
    """A newcomer's findings: a duplicate item key dropped its entry (so its producer 'provided no
    entry'), and a duplicate entry id had the later copy judged in the first one's place."""
    twice = BASE.replace(
        "      - key: person.name\n", "      - key: person.name\n        name: 姓名\n        type: person_name\n      - key: person.name\n", 1
    )
    [p] = problems_of(twice)
    assert (p.field, p.message) == ("catalogue.0.items.1.key", "item 'person.name' appears twice in entry 'open'")
    # the second entry renamed to the first's id: only the duplicate, and the subscription to the id that is gone
    messages = [p.message for p in problems_of(BASE.replace("  - id: cond\n", "  - id: open\n", 1))]
    assert messages[0] == "duplicate id 'open' in catalogue"
    assert not any("needs a purpose" in m for m in messages), messages
