"""Optional: the pure policy core compiled ahead of time with mypyc (``make compile``).

pyproject.toml holds the project's metadata; this file only adds the compiled modules, and
only when ``EXCHANGE_COMPILE=1`` is set. Without it (the default: ``pip install``, ``make
test``) the build is pure Python and needs no compiler. The compiled modules are the same
source (``exchange/policy/*.py``, strict-mypy clean), built by mypyc into C extensions that
Python imports instead of the ``.py`` files beside them; ``EXCHANGE_PURE_POLICY=1`` makes a
process import the ``.py`` files even so, and ``tests/test_compiled.py`` holds the two equal.
"""

from __future__ import annotations

import os

from setuptools import setup

#: the pure policy core's modules (``exchange/policy/__init__.py`` stays Python: it only documents the package)
COMPILED = [
    "exchange/policy/masking.py",
    "exchange/policy/sharing.py",
    "exchange/policy/grouping.py",
    "exchange/policy/audit.py",
    "exchange/policy/routing.py",
]

ext_modules = []
if os.environ.get("EXCHANGE_COMPILE") == "1":
    from mypyc.build import mypycify

    # group_name puts mypyc's shared runtime library inside the package (exchange/policy__mypyc.*.so)
    # instead of a hash-named top-level module that an editable install could not find
    ext_modules = mypycify(COMPILED, group_name="exchange.policy", opt_level="3")

setup(ext_modules=ext_modules)
