"""MkDocs hooks of the documentation site (`make docs`; `mkdocs.yml` lists this file).

Two pages are not written by hand:

- ``index.md`` is the repository's README.md, so the front page and the README never differ.
  Its links into ``docs/`` (``docs/chaos.md#…``, ``docs/report.png``) are rewritten relative to
  the site; any other link then fails the strict build as it should.
- ``reference/scenario-schema.md`` is generated from the JSON Schema that ``exchange schema``
  prints (``schemas.scenario.json_schema()``): one table per definition, every property with
  its type, default, constraints and description, then the schema itself. It cannot drift from
  the models the loader validates with.
- ``reference/runs-schema.md`` likewise from ``exchange schema runs`` (the run topics' messages).
- ``reference/status-schema.md`` is generated the same way from ``exchange schema status``
  (``schemas.status.json_schema()``): the messages the run's processes send the controller.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PAGE = "reference/scenario-schema.md"
STATUS_PAGE = "reference/status-schema.md"
RUNS_PAGE = "reference/runs-schema.md"
_DOCS_LINK = re.compile(r"\]\(docs/")


def on_files(files: Files, config) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=_DOCS_LINK.sub("](", readme)))
    files.append(File.generated(config, SCHEMA_PAGE, content=schema_page()))
    files.append(File.generated(config, STATUS_PAGE, content=status_page()))
    files.append(File.generated(config, RUNS_PAGE, content=runs_page()))
    return files


# ---------------------------------------------------------------- the schema reference


def schema_page() -> str:
    """The Markdown of the scenario format's reference, from ``json_schema()``."""
    from schemas.scenario import json_schema

    schema = json_schema()
    defs: dict[str, dict] = schema.get("$defs", {})
    out = [
        "# Scenario format reference",
        "",
        "Generated at build time from the JSON Schema that `exchange schema` prints "
        "(`schemas.scenario.json_schema()`, from the pydantic models in `schemas/scenario.py`). "
        "It says what the loader accepts field by field; cross-references (an entry that is not "
        "in the catalogue, 一数一源 claims, cascades) only `exchange validate` checks. "
        "The [scenario format](../scenario.md) page explains the fields in prose.",
        "",
        "Point your editor at it: `exchange schema > scenario.schema.json`, then, for the YAML "
        "language server, `# yaml-language-server: $schema=scenario.schema.json` at the top of a "
        "scenario file.",
        "",
    ]
    out += _definition("Scenario", schema)
    for name in sorted(defs):
        out += _definition(name, defs[name])
    out += ["## The schema", "", "```json", json.dumps(schema, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out)


def status_page() -> str:
    """The Markdown of the status messages' reference, from ``schemas.status.json_schema()``."""
    from schemas.status import json_schema

    schema = json_schema()
    out = [
        "# Status message reference",
        "",
        "Generated at build time from the JSON Schema that `exchange schema status` prints "
        "(`schemas.status.json_schema()`, from the pydantic models in `schemas/status.py`). "
        "Every process of a run reports to the run controller with these messages, one JSON line each "
        "in its `NAME.jsonl` file of the run directory ([the wire format](../wire.md#status-messages)).",
        "",
    ]
    out += _definition("StatusMessage", schema)
    for name in sorted(schema.get("$defs", {})):
        out += _definition(name, schema["$defs"][name])
    out += ["## The schema", "", "```json", json.dumps(schema, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out)


def runs_page() -> str:
    """The Markdown of the run topics' messages, from ``schemas.runs.json_schema()``."""
    from schemas.runs import json_schema

    schema = json_schema()
    out = [
        "# Run topic message reference",
        "",
        "Generated at build time from the JSON Schema that `exchange schema runs` prints "
        "(`schemas.runs.json_schema()`, from the pydantic models in `schemas/runs.py`): the messages of "
        "`exchange.runs` and of each run's `exchange.run.<run_id>` topic, between a controller started with "
        "`--external` and its `exchange join` workers ([runs across machines](../distributed.md)).",
        "",
    ]
    for name in sorted(schema.get("$defs", {})):
        out += _definition(name, schema["$defs"][name])
    out += ["## The schema", "", "```json", json.dumps(schema, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out)


def _anchor(name: str) -> str:
    return name.lower()


def _definition(name: str, node: dict) -> list[str]:
    out = [f"## {name}", ""]
    if node.get("description"):
        out += [_one_line(node["description"]), ""]
    if "enum" in node:
        out += ["One of: " + ", ".join(f"`{v}`" for v in node["enum"]) + ".", ""]
        return out
    props: dict[str, dict] = node.get("properties", {})
    if not props:
        out += [f"Type: {_type(node)}.", ""]
        return out
    required = set(node.get("required", []))
    out += ["| field | type | required / default | description |", "| --- | --- | --- | --- |"]
    for key, prop in props.items():
        need = "**required**" if key in required else (f"`{json.dumps(prop['default'], ensure_ascii=False)}`" if "default" in prop else "optional")
        desc = _one_line(prop.get("description", ""))
        rules = _constraints(prop)
        if rules:
            desc = f"{desc} ({rules})" if desc else rules
        out.append(f"| `{key}` | {_type(prop)} | {_cell(need)} | {_cell(desc)} |")
    out.append("")
    if node.get("additionalProperties") is False:
        out += ["No other fields are accepted.", ""]
    return out


def _type(node: dict) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            kinds = []
            for option in node[key]:
                kind = _type(option)
                if kind not in kinds:
                    kinds.append(kind)
            return " or ".join(kinds)
    if "const" in node:
        return f"`{json.dumps(node['const'], ensure_ascii=False)}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind


def _constraints(node: dict) -> str:
    words = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minLength": "length ≥",
        "maxLength": "length ≤",
        "minItems": "items ≥",
        "maxItems": "items ≤",
    }
    parts = [f"{sign} {node[key]}" for key, sign in words.items() if key in node]
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            sub = _constraints(option)
            if sub and sub not in parts:
                parts.append(sub)
    return ", ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
