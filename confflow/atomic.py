"""Atomic file writes: a temporary file in the destination's folder, fsync, then rename.

Every file confflow writes goes through :func:`atomic_path`, so a reader, a rerun after a killed
worker or a full disk sees either the old file or the complete new one, never a partial write,
and no temporary file is left behind.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json(folder / "report.json", {"ess": 0.5})
    >>> (folder / "report.json").read_text().splitlines()
    ['{', '  "ess": 0.5', '}']
    >>> [p.name for p in folder.iterdir()]
    ['report.json']
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "remove_temporaries", "write_bytes", "write_json", "write_text"]


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of :func:`atomic_path`'s temporary names for ``path``."""
    return f".{path.stem}.tmp-", path.suffix


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on success, syncs it and renames it onto ``path``.

    The temporary file lies in ``path``'s folder (created if missing), so the rename is atomic,
    and keeps ``path``'s suffix for writers that choose a format by it (NumPy, mdtraj). If the
    block raises, ``path`` is left as it was and the temporary file is removed.

    Args:
        path: destination file.

    Yields:
        The temporary path to write, complete, inside the block.

    Raises:
        OSError: the folder cannot be created or written, or the disk is full; ``filename``
            names ``path`` (or the folder), never the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            _fsync_path(tmp)
            os.replace(tmp, path)
        except OSError as err:
            if err.errno is None or err.filename not in (None, name, str(tmp)):
                raise
            # name the destination, not the temporary (a full disk mid-write has no name)
            raise OSError(err.errno, err.strerror, str(path)) from err
        with contextlib.suppress(OSError):  # not every file system syncs folders
            _fsync_path(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temporaries(path: str | Path) -> list[Path]:
    """Deletes the temporary files of ``path`` that a killed writer left behind.

    ``SIGKILL`` (or a power cut) skips :func:`atomic_path`'s cleanup, and each write draws a new
    temporary name, so a writer that resumes a killed run calls this first. Only for a file no
    other process writes at the same time: that writer's temporary would go too.

    Args:
        path: destination file whose temporaries to delete (it is kept).

    Returns:
        The deleted paths (none when the folder does not exist).
    """
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    if not path.parent.is_dir():
        return []
    stale = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith(prefix) and p.name.endswith(suffix) and p.is_file()
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON with a final newline, atomically.

    Raises:
        TypeError: ``data`` holds something JSON cannot encode (nothing is written).
        OSError: as :func:`atomic_path`.
    """
    text = json.dumps(data, indent=2) + "\n"
    write_text(path, text)
