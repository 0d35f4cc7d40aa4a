"""The one atomic-write helper: all or nothing, nothing left behind."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import numpy as np
import pytest

from confflow.atomic import atomic_path, remove_temporaries, write_bytes, write_json, write_text

_KILLED_WRITER = """
import os, sys
from confflow.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    os._exit(9)  # like SIGKILL: the cleanup never runs
"""


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_json(target, {"a": [1, 2.5]})
    assert json.loads(target.read_text()) == {"a": [1, 2.5]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failure_inside_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.bin"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="writer died"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_unencodable_json_writes_nothing(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert not any(tmp_path.iterdir())


def test_temporary_keeps_the_suffix_and_missing_folders_are_made(tmp_path):
    target = tmp_path / "a" / "b" / "samples.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npz"
        np.savez(tmp, x=np.arange(3))  # would append .npz to a name without it
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    write_text(tmp_path / "note.txt", "ü\n")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "ü\n"


def test_unwritable_destination_raises_oserror_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as info:
        write_text(blocker / "inside.txt", "y")  # a file where a folder should be
    assert str(blocker) in str(info.value)


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "metadata.json"
    write_json(target, {"step": 1})
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], check=False)
    assert killed.returncode == 9
    (leftover,) = [p for p in tmp_path.iterdir() if p != target]
    others = [tmp_path / n for n in ("other.json", ".other.tmp-ab.json", ".metadata.tmp-ab.h5")]
    for path in others:
        path.write_text("{}")
    assert remove_temporaries(target) == [leftover]
    assert sorted(tmp_path.iterdir()) == sorted([target, *others])
    assert json.loads(target.read_text()) == {"step": 1}
    assert remove_temporaries(tmp_path / "missing" / "x.json") == []


def test_a_full_disk_names_the_destination_not_the_temporary(tmp_path):
    target = tmp_path / "ensemble.sdf"
    with pytest.raises(OSError) as info, atomic_path(target), open("/dev/full", "wb") as full:
        full.write(b"x" * 65536)
        full.flush()  # ENOSPC with no file name, as from a real full disk
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target)
    assert not any(tmp_path.iterdir())
