"""The training run's log files: ``metrics.jsonl`` (one line per event) and ``final.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from confflow.atomic import write_json, write_text

__all__ = ["RunLog"]


def _jsonable(value: Any) -> Any:
    """Non-finite floats as ``null`` (JSON has no NaN or infinity)."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class RunLog:
    """Appends JSON records to ``folder/metrics.jsonl``; a ``None`` folder keeps nothing.

    Args:
        folder: the run folder, or ``None``.
    """

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / "metrics.jsonl"
        self.final = None if folder is None else folder / "final.json"

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record (non-finite floats become ``null``)."""
        if self.path is None:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

    def restart(self) -> None:
        """Removes the log of an earlier run in the folder (a fresh start)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def truncate(self, step: int) -> None:
        """Drops the lines written after ``step`` (and a line cut by a crash), atomically."""
        if self.path is None or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the crash
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text(self.path, "".join(k + "\n" for k in kept))

    def write_final(self, record: dict[str, Any]) -> None:
        """Writes ``final.json`` atomically (non-finite floats become ``null``)."""
        if self.final is not None:
            write_json(self.final, {k: _jsonable(v) for k, v in record.items()})
