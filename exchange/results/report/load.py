"""Reading a run's ``result.json``, and ``scenario.json`` and ``samples.jsonl`` beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from exchange.errors import ExchangeError
from schemas.results import Result

ESSENTIAL = {"workload", "counts", "flows", "conservation"}
SAMPLES_FILE = "samples.jsonl"  # written by the consumer process (consumers/samples.py)
SAMPLE_KEYS = {"flow", "entry", "consumer", "n", "trace", "delivered", "source", "masks", "items"}


class ReportError(ExchangeError):
    """The file is not a result this report can read."""


# ---------------------------------------------------------------- loading


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (give a run's directory or its result.json)") from None
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}"
        raise ReportError(f"{where}: not JSON ({exc.msg}), so not a run's result.json; give a run's directory or its result.json") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object, so not a run's result.json")
    return data


def load_result(path: Path) -> dict[str, Any]:
    """The raw result dict, checked against ``schemas.results.Result``.

    Fields the model does not know (yet) are accepted, and so are missing ones the
    report does not need; a wrong type or a missing essential part is an error."""
    data = load_json(path)
    try:
        Result.model_validate(data)
    except ValidationError as exc:
        problems = [e for e in exc.errors() if e["type"] != "extra_forbidden" and not (e["type"] == "missing" and e["loc"][0] not in ESSENTIAL)]
        if problems:  # one line: what is missing, then what is wrong
            missing = [".".join(map(str, e["loc"])) for e in problems if e["type"] == "missing"]
            wrong = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in problems if e["type"] != "missing"]
            parts = ([f"no {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}"] if missing else []) + wrong[:3]
            raise ReportError(f"{path}: not a run's result.json ({'; '.join(parts)})") from None
    return data


def load_scenario_beside(result_path: Path) -> dict[str, Any] | None:
    path = Path(result_path).with_name("scenario.json")
    if not path.is_file():
        return None
    try:
        return load_json(path)
    except ReportError:
        return None


def load_samples_beside(result_path: Path) -> list[dict[str, Any]] | None:
    """The delivery samples (``samples.jsonl``) beside a result, or None when there are none.

    Raises :class:`ReportError` naming the file and line of a line that is not a sample."""
    path = Path(result_path).with_name(SAMPLES_FILE)
    if not path.is_file():
        return None
    samples = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ReportError(f"{path}:{n}:{exc.colno}: not JSON ({exc.msg})") from None
        missing = SAMPLE_KEYS - set(sample) if isinstance(sample, dict) else SAMPLE_KEYS
        if missing:
            raise ReportError(f"{path}, line {n}: not a delivery sample (missing {', '.join(sorted(missing))})")
        samples.append(sample)
    return samples
