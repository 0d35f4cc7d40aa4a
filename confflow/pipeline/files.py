"""Content checks and JSON reads of the files a pipeline produces.

The files themselves are written with :mod:`confflow.atomic`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["describe_files", "files_match", "read_json"]


def read_json(path: str | Path) -> Any | None:
    """The JSON content of ``path``, or ``None`` if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": hex}}`` of files under ``root``."""
    return {n: {"bytes": (root / n).stat().st_size, "sha256": _sha256(root / n)} for n in names}


def files_match(root: Path, described: Any) -> bool:
    """True if every file of a :func:`describe_files` record exists with the same content."""
    if not isinstance(described, dict) or not described:
        return False
    for name, meta in described.items():
        path = root / name
        try:
            if path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True
