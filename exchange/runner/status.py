"""Status messages between the run controller and the processes it starts, through files.

Each child process appends its :class:`~schemas.status.StatusMessage` s, one JSON line
each (``ready``, periodic ``stats``, a ``final`` report, an ``error``, ``crashed``), to its
own file in the run directory; the controller tails the files. Files rather than pipes: a
crashed child leaves its last word behind, and the run directory keeps the whole story for
later reading. The lines are :func:`schemas.status.encode`'s bytes, so the same messages
can travel over Kafka instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from schemas.status import MessageError, Role, Sender, StatusMessage, decode, encode, message

__all__ = ["MessageError", "StatusReader", "StatusWriter", "read_messages", "sender"]


def sender(role: Role | str, run_id: str = "", worker: str = "0", hub: str | None = None) -> Sender:
    """This process as the sender of its messages."""
    return Sender(run_id=run_id, role=role, worker=worker, hub=hub, pid=os.getpid())


class StatusWriter:
    """Appends ``sender``'s messages to ``path``, one line each; with no path, writes nothing."""

    def __init__(self, path: Path | str | None, sender: Sender | None = None) -> None:
        if path and sender is None:
            raise ValueError("a status writer with a file needs its sender")
        self.sender = sender
        self._file = open(path, "ab", buffering=0) if path else None  # noqa: SIM115 - lives as long as the process

    def write(self, body: BaseModel) -> None:
        """Send ``body`` (a :data:`schemas.status.Body` model), stamped with the sender and the time."""
        if self._file is None or self.sender is None:
            return
        self._file.write(encode(message(self.sender, body)) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StatusReader:
    """Reads the complete lines appended since the last call, as messages.

    Raises :class:`~schemas.status.MessageError` naming the file and line of a line that is
    not a status message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._line = 0  # complete lines read so far

    def read(self) -> list[StatusMessage]:
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
        out = []
        for line in lines:
            self._line += 1
            if line.strip():
                out.append(decode(line, f"{self.path}:{self._line}"))
        return out


def read_messages(path: Path) -> list[StatusMessage]:
    """Every message in a status file (a run directory's ``NAME.jsonl``)."""
    return StatusReader(path).read()
