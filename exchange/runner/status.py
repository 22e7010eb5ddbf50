"""Status lines between the run controller and the processes it starts.

Each child process appends JSON lines to its own file in the run directory (``ready``,
periodic ``stats``, a ``final`` report); the controller tails the files. Files rather
than pipes: a crashed child leaves its last word behind, and the run directory keeps
the whole story for later reading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


class StatusWriter:
    def __init__(self, path: Path | str | None) -> None:
        self._file = open(path, "ab", buffering=0) if path else None  # noqa: SIM115 - lives as long as the process

    def write(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        self._file.write(orjson.dumps({"event": event, "pid": os.getpid(), **fields}) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StatusReader:
    """Reads the complete lines appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [orjson.loads(line) for line in lines if line.strip()]
