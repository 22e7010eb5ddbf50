"""Load a scenario from YAML, reporting every problem with file, line, column and field.

PyYAML's node tree keeps where each value was written; pydantic's errors say which field
is wrong. Joining the two gives messages a person can act on without hunting.

Files are taken as people save them: UTF-8 with or without a BOM (other encodings are named,
not guessed), anchors, aliases and merge keys (aliases bounded: no alias bomb), and numbers
YAML 1.1 changes (``000000`` is octal 0) said as such. Every problem comes out in one pass.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.scenario import ID_PATTERN, ITEM_KEY_PATTERN, REGION_PATTERN, Loc, Scenario, did_you_mean, reference_errors

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    field: str
    message: str

    def __str__(self) -> str:
        if not self.line:  # no place inside a file (missing, unreadable, a generated preset)
            return f"{self.file}: {self.field + ': ' if self.field else ''}{self.message}"
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
    return importlib.import_module(f"exchange.scenarios.presets.{name}")


def resolve(name_or_path: str) -> Path:
    """A scenario argument is a YAML path, or the name of a built-in preset."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    raise ScenarioError([Problem(name_or_path, 0, 0, "", f"no such file, and not a preset (presets: {', '.join(preset_names())})")])


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
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError([Problem(str(path), 0, 0, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    return parse(decode(raw, str(path)), str(path))


# --- encodings -----------------------------------------------------------------------------

_BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def decode(raw: bytes, filename: str = "<scenario>") -> str:
    """The text of a scenario file: UTF-8, with or without a byte-order mark, or UTF-16/32
    with one (the encodings YAML 1.2 allows, §5.2).

    Anything else is refused with :class:`ScenarioError`, naming the first byte that is not
    UTF-8 (line, column) and the encoding the file looks like. Legacy encodings are never
    guessed into text: GBK/GB18030, Big5 and Shift-JIS overlap byte for byte, and a wrong
    guess would silently change names and codes.
    """
    for bom, codec, label in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                line, col = _byte_position(raw, len(bom) + exc.start, codec)
                raise ScenarioError(
                    [
                        Problem(
                            filename,
                            line,
                            col,
                            "",
                            (f"the file starts with a {label} byte-order mark but byte {exc.start + len(bom)} is not {label}"),
                        )
                    ]
                ) from None
    if b"\x00" in raw:  # valid UTF-8, but never YAML: UTF-16/32 without a byte-order mark, or not text at all
        looks, at = _looks_like(raw), raw.index(b"\x00")
        line, col = _byte_position(raw, at, "utf-8")
        if looks is not None and looks[0] != BINARY:
            raise ScenarioError([Problem(filename, line, col, "", f"not UTF-8 (a NUL byte); it looks like {looks[0]}: save the file as UTF-8")])
        raise ScenarioError([Problem(filename, line, col, "", "not a text file (a scenario is YAML text, saved as UTF-8)")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(raw, exc.start, "utf-8")
        looks = _looks_like(raw)  # never BINARY here: a file with a NUL byte was refused above
        hint = f"; it looks like {looks[0]}" if looks else ""
        fix = f" (iconv -f {looks[1]} -t UTF-8 OLD.yaml > NEW.yaml)" if looks and looks[1] else ""
        raise ScenarioError(
            [
                Problem(
                    filename,
                    line,
                    col,
                    "",
                    (f"not UTF-8 (byte 0x{raw[exc.start]:02X} cannot start or continue a UTF-8 character){hint}: save the file as UTF-8{fix}"),
                )
            ]
        ) from None


def _byte_position(raw: bytes, offset: int, codec: str) -> tuple[int, int]:
    """1-based line and column (in characters) of byte ``offset``."""
    if codec != "utf-8":
        return 1, 1
    start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, len(raw[start:offset].decode("utf-8", "replace")) + 1


def _cjk_share(text: str) -> float:
    wide = [c for c in text if ord(c) > 0x7F]
    # ideographs, CJK punctuation and full-width forms: what Chinese text is made of (a
    # wrong decoding of Chinese bytes shows kana, bopomofo, private-use or rare characters)
    cjk = [c for c in wide if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"]
    return len(cjk) / len(wide) if wide else 0.0


BINARY = "binary data, not text"


def _looks_like(raw: bytes) -> tuple[str, str | None] | None:
    """(what the bytes look like, the iconv name to convert from), or None when unknown."""
    if b"\x00" in raw:
        head = raw[:4096]
        for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            text = head[: len(head) // 4 * 4].decode(codec, errors="replace")
            if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.9 * len(text):
                return "UTF-16 or UTF-32 without a byte-order mark", None
        return BINARY, None
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError:
        text = None
    if text is not None and _cjk_share(text) >= 0.9:
        return "GBK/GB18030, the default of Chinese editions of Windows", "GB18030"
    for codec, label in (("big5", "Big5"), ("shift_jis", "Shift-JIS")):
        try:
            if _cjk_share(raw.decode(codec)) >= 0.9:
                return label, label.upper().replace("-", "_")
        except UnicodeDecodeError:
            pass
    return "a single-byte legacy encoding (Latin-1 or a Windows code page)", None


# --- YAML, with merge keys, and bounded aliases ------------------------------------------

MAX_ALIAS_EXPANSION = 100_000
"""Values (YAML nodes) that aliases may add to a file in all. A plain file costs what its
size says; aliases can multiply it ("billion laughs": nine aliases a level, nine-fold a
level), so what they add is bounded (go-yaml refuses "excessive aliasing" the same way).
At the bound, refusing costs about 0.1 s of CPU and a few MB."""

MAX_DEPTH = 64
"""Nesting a scenario never needs (its deepest value sits seven levels down)."""

_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_OCTAL = re.compile(r"[-+]?0[0-7_]+")  # YAML 1.1 octal, as PyYAML reads it


class _Alias:
    """An alias (``*name``) as written: the node it names and where the alias stands."""

    __slots__ = ("anchor", "mark", "node")

    def __init__(self, node: yaml.Node, anchor: str, mark: yaml.Mark) -> None:
        self.node, self.anchor, self.mark = node, anchor, mark


class _AliasComposer(yaml.composer.Composer):
    """PyYAML's composer, keeping aliases visible (for positions and bounds) and counting nodes."""

    nodes = 0

    def compose_node(self, parent, index):  # PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            return _Alias(node, event.anchor, event.start_mark)
        self.nodes += 1
        return super().compose_node(parent, index)


class _PyComposer(_AliasComposer, yaml.SafeLoader):
    pass


try:  # libyaml's parser: a 3.4 MB catalogue (9,000 entries) validates in 5 s instead of 20
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

if CParser is not None:

    class _CComposer(_AliasComposer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            _AliasComposer.__init__(self)


_COMPOSER = _CComposer if CParser is not None else _PyComposer


class _TooMuch(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Builder:
    """Python values from a composed YAML document, with the position of each and the
    problems only YAML can tell (keys given twice, recursive aliases, octal numbers)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions: dict[Loc, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.flagged: set[Loc] = set()  # the loader has said what is wrong here
        self.hints: dict[Loc, str] = {}  # how YAML read a plain value, for the schema's message
        self.budget = MAX_ALIAS_EXPANSION  # plus the document's own nodes, once composed
        self.visits = 0
        self.open: list[int] = []  # ids of the collections being built (a cycle shows here)
        self.expanding: list[yaml.Mark] = []  # the aliases being expanded, outermost first
        self.constructor = yaml.SafeLoader("")

    def problem(self, mark: yaml.Mark, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.filename, mark.line + 1, mark.column + 1, ".".join(map(str, loc)), message))
        self.flagged.add(loc)

    def tick(self, mark: yaml.Mark, count: int = 1) -> None:
        self.visits += count
        if self.visits > self.budget:
            mark = self.expanding[0] if self.expanding else mark  # the alias written in the document's own lines
            raise _TooMuch(
                Problem(
                    self.filename,
                    mark.line + 1,
                    mark.column + 1,
                    "",
                    (
                        f"aliases expand this file beyond {MAX_ALIAS_EXPANSION:,} values (an alias bomb?); "
                        "write repeated parts out, or generate the scenario from a preset module"
                    ),
                )
            )

    def build(self, node: yaml.Node | _Alias, loc: Loc) -> Any:
        mark = node.mark if isinstance(node, _Alias) else node.start_mark
        self.positions.setdefault(loc, (mark.line + 1, mark.column + 1))
        self.tick(mark)
        if len(loc) > MAX_DEPTH:
            self.problem(mark, loc, f"values nested deeper than {MAX_DEPTH} levels")
            return None
        if isinstance(node, _Alias):
            if id(node.node) in self.open:
                self.problem(mark, loc, f"alias *{node.anchor} refers to a value that contains the alias itself (a recursive alias)")
                return None
            self.expanding.append(mark)
            try:
                return self.build_node(node.node, loc)
            finally:
                self.expanding.pop()
        return self.build_node(node, loc)

    def build_node(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        self.open.append(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(v, (*loc, n)) for n, v in enumerate(node.value)]
            out: dict[Any, Any] = {}
            for key, (_key_mark, value) in self.pairs(node, loc).items():
                out[key] = self.build(value, (*loc, key))
            return out
        finally:
            self.open.pop()

    def pairs(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, tuple[yaml.Mark, Any]]:
        """Key → (where the key is, value node), merge keys (``<<``) applied: keys written
        here win over merged ones, and of merged mappings the earlier one wins (YAML 1.1 merge)."""
        own: dict[Any, tuple[yaml.Mark, Any]] = {}
        merged: dict[Any, tuple[yaml.Mark, Any]] = {}
        for key_node, value_node in node.value:
            self.tick(node.start_mark)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    for key, pair in self.merge_source(source, loc).items():
                        merged.setdefault(key, pair)
                continue
            if isinstance(key_node, _Alias):
                key_node = key_node.node
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key in own:
                self.problem(key_node.start_mark, (*loc, key), "key given twice")
                continue
            own[key] = (key_node.start_mark, value_node)
        return merged | own

    def merge_source(self, source: yaml.Node | _Alias, loc: Loc) -> dict[Any, tuple[yaml.Mark, Any]]:
        mark = source.mark if isinstance(source, _Alias) else source.start_mark
        target = source.node if isinstance(source, _Alias) else source
        if not isinstance(target, yaml.MappingNode):
            self.problem(mark, loc, "a merge key (<<) takes a mapping, or a list of mappings, to merge")
            return {}
        if id(target) in self.open:
            name = f"*{source.anchor} " if isinstance(source, _Alias) else ""
            self.problem(mark, loc, f"the merge {name}refers to a mapping that contains it (a recursive alias)")
            return {}
        self.open.append(id(target))
        self.expanding.append(mark)
        try:
            return self.pairs(target, loc)
        finally:
            self.open.pop()
            self.expanding.pop()

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        if node.tag == _STR:
            return node.value  # what SafeConstructor gives, without its bookkeeping
        if node.tag == _INT and node.value.isdigit() and (node.value[0] != "0" or node.value == "0"):
            return int(node.value)
        try:
            value = self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            self.problem(node.start_mark, loc, f"cannot read this value: {getattr(exc, 'problem', exc)}")
            return None
        finally:
            self.constructor.constructed_objects.clear()
        if not node.style and not isinstance(value, str) and value is not None:
            text = node.value
            if isinstance(value, int) and not isinstance(value, bool) and _OCTAL.fullmatch(text):
                self.problem(
                    node.start_mark,
                    loc,
                    (
                        f"{text} without quotes is the octal number {value} to YAML (a leading 0 makes a number octal): "
                        f'write "{text}" in quotes if it is a code, or the number without leading zeros'
                    ),
                )
                return text  # validation goes on as if quoted (the problem stands)
            elif isinstance(value, bool) and text.lower() not in ("true", "false"):
                self.hints[loc] = f"YAML reads the unquoted {text} as the boolean {str(value).lower()}; put it in quotes to keep it as text"
            elif isinstance(value, int) and not isinstance(value, bool) and text != str(value):
                self.hints[loc] = f"YAML reads the unquoted {text} as the number {value}; put it in quotes to keep it as written"
        return value


def read_yaml(text: str, filename: str = "<scenario>") -> Any:
    """The plain data of a scenario file as :func:`parse` reads it before validation (merge
    keys applied, keys as written: ``on`` stays the text ``on``), or :class:`ScenarioError`
    for what YAML itself refuses."""
    builder = _Builder(filename)
    data = _build(text, builder)
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data


def _char_at(text: str, line: int, column: int) -> str:
    """The character at 0-based ``line`` and ``column`` of ``text`` ("" past its end)."""
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if line < len(lines) else ""


def _build(text: str, builder: _Builder) -> Any:
    filename = builder.filename
    composer = _COMPOSER(text)
    try:
        node = composer.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is None and isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
            mark_at = (line, exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1)
        else:
            mark_at = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = getattr(exc, "problem", None) or exc
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = f"{problem} (a tab: YAML indents with spaces only)"
        raise ScenarioError([Problem(filename, *mark_at, "", f"not valid YAML: {problem}")]) from None
    except RecursionError:
        problem = f"values nested deeper than YAML can be read here (a scenario needs under {MAX_DEPTH} levels)"
        raise ScenarioError([Problem(filename, 0, 0, "", problem)]) from None
    finally:
        composer.dispose()
    if node is None:
        raise ScenarioError([Problem(filename, 1, 1, "", "the file is empty")])
    builder.budget += composer.nodes
    try:
        return builder.build(node, ())
    except _TooMuch as exc:
        raise ScenarioError([exc.problem]) from None


def parse(text: str, filename: str = "<scenario>") -> Scenario:
    """The validated scenario in YAML ``text``, or :class:`ScenarioError` with every problem:
    YAML's, the schema's and the references', found in one pass."""
    builder = _Builder(filename)
    data = _build(text, builder)
    return _validate(data, builder)


# --- the schema and the references, in one pass -----------------------------------------


def _validate(data: Any, builder: _Builder) -> Scenario:
    """Validate; where a value is refused, repair the data and validate again, so that
    reference problems come out with the schema's. A repair drops the refused field (its
    default applies); a required one gets a placeholder (an enum's first value, a filler
    text; an empty list that must not be, one filler element), and only where none fits is
    the list element holding it dropped. Problems that only the repair caused
    (a required field now missing, a list now empty, a reference to a dropped element or
    refused id, a check of a placeholder) are not reported."""
    problems = list(builder.problems)
    deleted: set[Loc] = set()  # keys dropped (written places)
    removed: set[Loc] = set()  # list elements dropped
    injected: dict[Loc, Any] = {}  # placeholders
    refused: set[str] = set()  # ids and item keys of dropped elements, and refused texts
    first_refusal: dict[Loc, Any] = {}  # why each place was refused first (before a repair made it missing)
    repaired: list[Loc] = []
    scenario: Scenario | None = None
    maps: dict[Loc, list[int]] = {}
    for attempt in range(24):
        current, maps = (data, {}) if attempt == 0 else _materialize(data, deleted, removed, injected)
        try:
            scenario = Scenario.model_validate(current, context={"skip_references": True})
            break
        except ValidationError as exc:
            errors = [(_original(tuple(e["loc"]), maps), e) for e in exc.errors()]
        stuck = False
        for loc, error in errors:
            consequential = (attempt > 0 and any(r[: len(loc)] == loc for r in repaired)) or (
                # pydantic counts a list's length after dropping the elements it refused
                error["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o, _ in errors)
            )
            if not consequential and not _flagged(loc, builder.flagged):
                message = _message(error)
                if loc in builder.hints:
                    message = f"{message} ({builder.hints[loc]})"
                problems.append(_problem(builder.filename, loc, message, builder.positions))
            if error["type"] == "too_short" and consequential:
                continue  # the elements below are being repaired
            written = _at(data, loc)
            if error["type"] == "too_short" and written == [] and loc not in injected and (filler := _list_filler(loc)) is not _NOTHING:
                # an empty list (an entry without items): check the rest of its element with a
                # placeholder in the list, rather than dropping the element
                injected[loc] = [filler]
                repaired.append(loc)
                continue
            if isinstance(written, str):
                refused.add(written.casefold())
            first_refusal.setdefault(loc, error)
            target = _repair_target(data, loc, error["type"], deleted)
            # a required value: its element is checked with a placeholder, as an optional one is
            # with its default, rather than dropped (which would leave its references unchecked)
            if target is None or isinstance(target[-1], int):
                placeholder = _placeholder(loc, first_refusal[loc])
                if placeholder is not _NOTHING and loc not in injected:
                    injected[loc] = placeholder
                    repaired.append(loc)
                    continue
            if target is None:
                stuck = True
                continue
            repaired.append(target)
            if isinstance(target[-1], int):
                removed.add(target)
                dropped = _at(data, target)
                if isinstance(dropped, dict):
                    refused.update(v.casefold() for k in ("id", "key") if isinstance(v := dropped.get(k), str))
            else:
                deleted.add(target)
        if stuck:
            scenario = None
            break
    if scenario is not None:
        for loc, message in reference_errors(scenario):
            loc = _original(loc, maps)
            if any(loc[: len(i)] == i for i in injected):
                continue  # a placeholder's
            written = _at(data, loc)
            # a reference to a dropped element or a refused id (written `Beta`, say) is no news
            if isinstance(written, str) and written.casefold() in refused:
                continue
            if isinstance(written, list) and refused.intersection(v.casefold() for v in written if isinstance(v, str)):
                continue
            problems.append(_problem(builder.filename, loc, message, builder.positions))
    if scenario is None and not problems:  # not expected: every refusal of the first pass is reported
        problems.append(Problem(builder.filename, 0, 0, "", "the scenario could not be validated"))
    if problems:
        raise ScenarioError(sorted(problems, key=lambda p: (p.line, p.column)))
    return scenario


_NOTHING = object()
_FILLERS = {"id": "x", "region": "000000"}  # for required fields of the platform: the nation, which contains every region (no follow-on)


def _message(error: Any) -> str:
    """pydantic's message, in the words of a YAML file where pydantic's are Python's, with the
    value written where pydantic leaves it out."""
    kind, ctx, written = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "too_short" and "min_length" in ctx:
        n = ctx["min_length"]
        return f"must list at least {n} {'element' if n == 1 else 'elements'}, not {ctx.get('actual_length', 0)}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_WORDS:
        return f"{_PATTERN_WORDS[ctx['pattern']]}, not {written!r}"
    if kind == "value_error":  # a validator's own message, without pydantic's "Value error, "
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in ("enum", "literal_error") and "expected" in ctx:
        terms = str(ctx.get("terms", ""))  # the Chinese terms accepted too (schemas/scenario.py _aliases)
        message = f"must be one of {ctx['expected']}" + (f" (or {terms})" if terms else "") + f", not {written!r}"
        known = re.findall(r"'([^']*)'", str(ctx["expected"])) + [t for t in terms.split(", ") if t]
        return message + (did_you_mean(written.strip(), known) if isinstance(written, str) else "")
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        bound, words = _BOUNDS[kind]
        limit = ctx[bound]
        return f"must be {words} {int(limit) if isinstance(limit, float) and limit.is_integer() else limit}, not {written!r}"
    if kind == "missing":
        return "required, and not given"
    if kind in ("int_parsing", "int_type", "float_parsing", "float_type") and written is not None:
        what = "a whole number" if kind.startswith("int") else "a number"
        unit = (
            " (the number alone: the field's unit is implied)"
            if isinstance(written, str) and re.fullmatch(r"\s*[\d.]+\s*[^\d\s.]+\s*", written)
            else ""
        )
        return f"must be {what}, not {written!r}{unit}"
    if kind in ("model_type", "dict_type") and not isinstance(written, dict):
        return f"must be a mapping of fields (name: value), not {_kind_of(written)}"
    if kind == "extra_forbidden" and error["loc"] and isinstance(error["loc"][-1], str):
        fields = _fields_at(tuple(error["loc"][:-1]))
        return "is not a field here" + (did_you_mean(error["loc"][-1], fields) or f" (the fields here: {', '.join(fields)})" if fields else "")
    return error["msg"]


def _kind_of(value: Any) -> str:
    """What a YAML value is, in YAML's words."""
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return f"{value!r}"


#: pydantic's number bounds: the context key, and the words
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _fields_at(loc: Loc) -> list[str]:
    """The fields the scenario's JSON Schema allows in the mapping at ``loc`` ([] if unknown)."""
    schema = _scenario_schema()
    defs = schema.get("$defs", {})

    def branches(node: dict) -> list[dict]:
        if "$ref" in node:
            return branches(defs[node["$ref"].rsplit("/", 1)[-1]])
        out = [node]
        for key in ("anyOf", "oneOf", "allOf"):
            out += [b for sub in node.get(key, []) for b in branches(sub)]
        return out

    nodes = [schema]
    for part in loc:
        step = []
        for node in (b for n in nodes for b in branches(n)):
            if isinstance(part, int) and isinstance(node.get("items"), dict):
                step.append(node["items"])
            elif isinstance(part, str) and part in node.get("properties", {}):
                step.append(node["properties"][part])
            elif isinstance(part, str) and isinstance(node.get("additionalProperties"), dict):
                step.append(node["additionalProperties"])
        nodes = step
    return sorted({f for n in nodes for b in branches(n) for f in b.get("properties", {})})


@functools.cache
def _scenario_schema() -> dict:
    """The scenario's JSON Schema, built once (only when a file has an unknown field)."""
    from schemas.scenario import json_schema

    return json_schema()


#: the schema's patterns in words
_PATTERN_WORDS = {
    ID_PATTERN: "must be a lower-case ASCII id of up to 63 letters, digits, '-' and '_', starting with a letter or digit (ids name Kafka topics)",
    REGION_PATTERN: "must be an administrative division code (GB/T 2260): 6 digits, or 9 for a town or street",
    ITEM_KEY_PATTERN: "must be a dotted lower-case key such as person.name: two or more parts of a-z, 0-9 and '_', each starting with a letter",
}


def _list_filler(loc: Loc) -> Any:
    """One element the list at ``loc``, which must not be empty, accepts, or _NOTHING (the
    scenario's departments and catalogue: without them there is nothing to check)."""
    if len(loc) == 1:
        return _NOTHING
    if len(loc) == 3 and loc[0] == "catalogue" and loc[2] == "items":
        return {"key": "x.x", "name": "x", "type": "text"}  # a data item
    return "110000" if loc[-1] == "regions" else "x"  # a region code, else an id or item key


def _placeholder(loc: Loc, error: Any) -> Any:
    """A value the schema accepts in place of the refused one, or _NOTHING."""
    if error["type"] in ("enum", "literal_error"):
        first = re.search(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        return first.group(1) if first else _NOTHING
    if loc and isinstance(loc[-1], str) and error["type"] in ("missing", "string_type", "string_pattern_mismatch", "string_too_short"):
        return _FILLERS.get(loc[-1], "")
    return _NOTHING


def _flagged(loc: Loc, flagged: set[Loc]) -> bool:
    return any(loc[: len(f)] == f for f in flagged)


def _repair_target(data: Any, loc: Loc, kind: str, deleted: set[Loc]) -> Loc | None:
    """The written place to drop so that the value refused at ``loc`` no longer is."""
    if kind != "missing" and loc and loc not in deleted and _exists(data, loc):
        return loc
    for n in range(len(loc) - 1, -1, -1):  # the nearest list element holding it
        if isinstance(loc[n], int) and _exists(data, loc[: n + 1]):
            return loc[: n + 1]
    return None


def _exists(data: Any, loc: Loc) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _at(data: Any, loc: Loc) -> Any:
    return _walk(data, loc) if _exists(data, loc) else None


def _walk(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _materialize(value: Any, deleted: set[Loc], removed: set[Loc], injected: dict[Loc, Any], path: Loc = (), maps: dict | None = None):
    """A copy of the data without the dropped places (and with the injected ones), and for
    each shortened list the written index of each element left."""
    maps = {} if maps is None else maps
    if isinstance(value, dict):
        out: Any = {k: _materialize(v, deleted, removed, injected, (*path, k), maps)[0] for k, v in value.items() if (*path, k) not in deleted}
        out |= {loc[-1]: v for loc, v in injected.items() if loc[:-1] == path}
    elif isinstance(value, list):
        keep = [n for n in range(len(value)) if (*path, n) not in removed]
        if len(keep) != len(value):
            maps[path] = keep
        out = [_materialize(value[n], deleted, removed, injected, (*path, n), maps)[0] for n in keep]
    else:
        out = value
    return out, maps


def _original(loc: Loc, maps: dict[Loc, list[int]]) -> Loc:
    """The written place of a field the validator names after some list elements were dropped."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            keep = maps.get(tuple(out))
            if keep is not None and 0 <= part < len(keep):
                part = keep[part]
        out.append(part)
    return tuple(out)


def _problem(filename: str, loc: Loc, message: str, positions: dict[Loc, tuple[int, int]]) -> Problem:
    # The deepest written ancestor of the field: a missing field is reported where its parent is.
    probe = loc
    while probe not in positions and probe:
        probe = probe[:-1]
    line, col = positions.get(probe, (1, 1))
    return Problem(filename, line, col, ".".join(str(p) for p in loc), message)
