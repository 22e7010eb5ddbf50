"""Load a scenario from YAML, reporting every problem with file, line, column and field.

PyYAML's node tree keeps where each value was written; pydantic's errors say which field
is wrong. Joining the two gives messages a person can act on without hunting.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.scenario import Loc, Scenario, reference_errors

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field or '(document)'}: {self.message}"


class ScenarioError(Exception):
    """A scenario that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def preset_names() -> list[str]:
    """YAML presets, and generated ones (a module with ``build(seed)``, for catalogues too big to write)."""
    generated = {p.stem for p in PRESETS_DIR.glob("*.py") if not p.stem.startswith("_")}
    return sorted({p.stem for p in PRESETS_DIR.glob("*.yaml")} | generated)


def _generated(name: str):
    if not (PRESETS_DIR / f"{name}.py").exists():
        return None
    return importlib.import_module(f"exchange.presets.{name}")


def resolve(name_or_path: str) -> Path:
    """A scenario argument is a YAML path, or the name of a built-in preset."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    raise ScenarioError(
        [Problem(name_or_path, 0, 0, "", f"no such file, and not a preset (presets: {', '.join(preset_names())})")]
    )


def load(name_or_path: str | Path, seed: int = 1) -> Scenario:
    """The validated scenario, or :class:`ScenarioError` with every problem in it.

    ``seed`` shapes generated presets (their catalogue is drawn from it).
    """
    module = None if Path(str(name_or_path)).exists() else _generated(str(name_or_path))
    if module is not None:
        try:
            return module.build(seed)
        except ValidationError as exc:
            raise ScenarioError([Problem(f"preset {name_or_path}", 0, 0, ".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]) from None
    path = resolve(str(name_or_path))
    return parse(path.read_text(encoding="utf-8"), str(path))


def parse(text: str, filename: str = "<scenario>") -> Scenario:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ScenarioError([Problem(filename, line, col, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if node is None:
        raise ScenarioError([Problem(filename, 1, 1, "", "the file is empty")])
    positions: dict[Loc, tuple[int, int]] = {}
    data = _to_python(node, (), positions, filename)
    try:
        scenario = Scenario.model_validate(data, context={"skip_references": True})
    except ValidationError as exc:
        raise ScenarioError([_problem(filename, tuple(e["loc"]), e["msg"], positions) for e in exc.errors()]) from None
    problems = [_problem(filename, loc, msg, positions) for loc, msg in reference_errors(scenario)]
    if problems:
        raise ScenarioError(problems)
    return scenario


def _problem(filename: str, loc: Loc, message: str, positions: dict[Loc, tuple[int, int]]) -> Problem:
    # The deepest written ancestor of the field: a missing field is reported where its parent is.
    probe = loc
    while probe not in positions and probe:
        probe = probe[:-1]
    line, col = positions.get(probe, (1, 1))
    return Problem(filename, line, col, ".".join(str(p) for p in loc), message)


def _scalar(node: yaml.Node) -> Any:
    # A fresh constructor each time: a shared one remembers (and keeps alive) every value
    # it ever built. Scalars only, so this is cheap.
    return yaml.SafeLoader("").construct_object(node)


def _to_python(node: yaml.Node, loc: Loc, positions: dict[Loc, tuple[int, int]], filename: str) -> Any:
    positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*loc, key)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise ScenarioError([Problem(filename, line, col, ".".join(map(str, child)), "key given twice")])
            out[key] = _to_python(value_node, child, positions, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*loc, n), positions, filename) for n, v in enumerate(node.value)]
    return _scalar(node)
