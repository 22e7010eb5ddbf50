"""Every YAML example of the README and docs/ is a scenario the loader accepts, and the JSON
Schema `exchange schema` prints accepts everything the loader accepts (issue 14, items 7-8)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from exchange.cli import app
from exchange.scenarios.loader import PRESETS_DIR, load, parse, preset_names, read_yaml
from schemas.scenario import json_schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def yaml_examples() -> list[tuple[str, str]]:
    """(file:line, text) of each ```yaml block."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            out.append((f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 2}", m.group(1)))
    return out


EXAMPLES = yaml_examples()
SCENARIOS = [(where, text) for where, text in EXAMPLES if isinstance(yaml.safe_load(text), dict) and "catalogue" in yaml.safe_load(text)]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, data: object) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def test_the_readme_has_a_scenario_example() -> None:
    assert SCENARIOS, "no ```yaml scenario in the README"


@pytest.mark.parametrize(("where", "text"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_yaml_example_is_valid_yaml(where: str, text: str) -> None:
    assert yaml.safe_load(text) is not None, where


@pytest.mark.parametrize(("where", "text"), SCENARIOS, ids=[w for w, _ in SCENARIOS])
def test_every_scenario_example_validates(where: str, text: str, validator: Draft202012Validator) -> None:
    parse(text, where)  # raises ScenarioError with every problem
    assert schema_errors(validator, read_yaml(text)) == []


@pytest.mark.parametrize("path", sorted(PRESETS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_preset_as_written_satisfies_the_schema(path: Path, validator: Draft202012Validator) -> None:
    # the file's own spellings (无条件共享, unquoted codes), not the model's
    assert schema_errors(validator, read_yaml(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_as_loaded_satisfies_the_schema(name: str, validator: Draft202012Validator) -> None:
    # generated presets are Python: check the scenario they run (their thousands of dormant
    # entries are drawn alike, and would take the validator half a minute)
    assert schema_errors(validator, json.loads(load(name).runtime_json())) == []


def test_the_schema_accepts_unquoted_codes_and_still_refuses_what_the_loader_refuses(validator: Draft202012Validator) -> None:
    text = (PRESETS_DIR / "demo.yaml").read_text(encoding="utf-8")
    unquoted = read_yaml(text.replace('"441900"', "441900"))
    assert isinstance(unquoted["platform"]["region"], int)
    assert schema_errors(validator, unquoted) == []
    for old, new in [("sharing: 有条件共享", "sharing: 部分共享"), ("partitions: 4", "partitions: 0"), ("type: plate", "type: banknote")]:
        assert old in text, old
        assert schema_errors(validator, read_yaml(text.replace(old, new, 1))), new


def test_cli_schema_prints_the_widened_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "有条件共享" in schema["$defs"]["Sharing"]["enum"] and "conditional" in schema["$defs"]["Sharing"]["enum"]


def test_the_site_builds_strictly_with_the_readme_as_its_front_page_and_the_schema_reference(tmp_path: Path) -> None:
    """`make docs`: a broken link, anchor or nav entry (a warning) fails the build (issue 15, item 7)."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    front = (site / "index.html").read_text(encoding="utf-8")
    assert "A five-minute tour" in front and 'href="chaos/#fault-injection---chaos"' in front
    reference = (site / "reference" / "scenario-schema" / "index.html").read_text(encoding="utf-8")
    for name in json_schema()["$defs"]:
        assert f'id="{name.lower()}"' in reference, name


def test_the_readme_fits_and_links_only_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)", text):
        if not target.startswith(("http://", "https://")):
            path = (ROOT / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), target
