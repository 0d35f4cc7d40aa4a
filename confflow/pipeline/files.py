"""Atomic writes and content checks of the files a pipeline produces."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "describe_files", "files_match", "read_json", "write_json"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` if the block succeeds.

    A reader (or a rerun after a killed worker) sees either the old file or the complete new
    one, never a partial write. The temporary keeps ``path``'s suffix (some writers need it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


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
