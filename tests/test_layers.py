"""The import contracts of pyproject.toml ([tool.importlinter]) hold: the layers, the pure
policy core (no Kafka, Faust, I/O or clock), and schemas that import nothing else of the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken." in done.stdout, done.stdout[-4000:]
