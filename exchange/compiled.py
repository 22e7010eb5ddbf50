"""The policy core as compiled by mypyc (``make compile``), or as its Python source.

``make compile`` builds the pure policy core's modules (:data:`POLICY_MODULES` of
``exchange/policy/``) ahead of time into C extensions beside their ``.py`` files; the
source stays what it is. Python's import system takes an extension module before a ``.py``
of the same name, so once built every process uses the compiled core, and without a build
(the default: no compiler needed) it uses the ``.py`` files. ``make uncompile`` removes the
build.

``EXCHANGE_PURE_POLICY=1`` makes a process, and every worker it starts, import the ``.py``
sources even when a build is present (:func:`prefer_source`, installed by
``exchange/__init__.py``): for comparing the two, and as the way back should a build
misbehave. :func:`pure_policy` loads the sources beside the compiled modules in one
process, which is how ``tests/test_compiled.py`` holds them equal and how
``exchange bench --policy`` times both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

#: the compiled modules, in dependency order (``exchange/policy/__init__.py`` stays Python)
POLICY_MODULES = ("masking", "sharing", "grouping", "audit", "routing")
#: set to 1 to import the policy core's ``.py`` sources even when a compiled build is present
PURE_ENV = "EXCHANGE_PURE_POLICY"

_PACKAGE = "exchange.policy"
_ROOT = Path(__file__).parent / "policy"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the policy core's modules as their ``.py`` files, ahead of any extension module."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in POLICY_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _ROOT / f"{name}.py")


_FINDER = _SourceFinder()


def prefer_source() -> None:
    """From now on, import the policy core from its ``.py`` files (modules imported already stay as they are)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def built() -> list[str]:
    """The policy modules that have a compiled extension beside their source (for this Python)."""
    return [m for m in POLICY_MODULES if any((_ROOT / f"{m}{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)]


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from an extension (a compiled build), not from Python source."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def policy_modules() -> dict[str, ModuleType]:
    """The policy core's modules as this process imports them (compiled when built), by short name."""
    return {m: importlib.import_module(f"{_PACKAGE}.{m}") for m in POLICY_MODULES}


def pure_policy() -> dict[str, ModuleType]:
    """The policy core loaded afresh from its ``.py`` sources, by short name, beside whatever is imported.

    The fresh modules import each other (the pure ``routing`` uses the pure ``sharing``),
    and share everything outside the policy core (``schemas``: enums, envelope, regions).
    ``sys.modules`` and the package's attributes are left as they were, so the rest of the
    process keeps the modules it had.
    """
    package = importlib.import_module(_PACKAGE)
    names = [f"{_PACKAGE}.{m}" for m in POLICY_MODULES]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    attrs = {m: getattr(package, m) for m in POLICY_MODULES if hasattr(package, m)}
    finder = _SourceFinder()
    sys.meta_path.insert(0, finder)
    try:
        return {m: importlib.import_module(n) for m, n in zip(POLICY_MODULES, names, strict=True)}
    finally:
        sys.meta_path.remove(finder)
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
        for m in POLICY_MODULES:
            if m in attrs:
                setattr(package, m, attrs[m])
            elif hasattr(package, m):
                delattr(package, m)
