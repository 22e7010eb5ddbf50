"""The consumer process's durable state, so a killed process resumes without miscounting.

Counters, duplicate-detection sets and the accountant's positions live in memory; a
SIGKILL would lose them, and the records re-read after a restart would then be counted
as new. With ``--checkpoint FILE`` the process writes all of it here, atomically (a
temporary file, then ``os.replace``), and only then commits the subscribers' offsets.
After a kill, the committed offsets are at or before the checkpoint: records re-read
are either counted for the first time (after the checkpoint) or recognised by the
restored sets as duplicates (before it). Nothing is counted twice, nothing is lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # No fsync: the fault this guards against is the process dying, not the machine, and
    # the page cache outlives the process; an fsync a second would stall the event loop.
    tmp.write_bytes(orjson.dumps(state))
    os.replace(tmp, path)


def load(path: Path | None) -> dict[str, Any] | None:
    """The last checkpoint, or None when there is none (the process's first start)."""
    if path is None:
        return None
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
