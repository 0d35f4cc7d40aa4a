"""The CLI's error boundary: which exception gives which exit status and message."""

from __future__ import annotations

import errno

import openmm
import pytest

from confflow.cli.boundary import RunInterruptedError, describe
from confflow.errors import InputError, RunError
from confflow.generate import GenerateError
from confflow.training import CheckpointError, TrainingDivergedError


@pytest.mark.parametrize(
    ("err", "code", "text"),
    [
        (InputError("--n: must be positive"), 2, "--n: must be positive"),
        (ValueError("bad\nvalue"), 2, "bad value"),
        (GenerateError("SMILES 'C1CC(': RDKit cannot parse it"), 2, "RDKit cannot parse"),
        (CheckpointError("x.pt: corrupt"), 2, "x.pt: corrupt"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "in.sdf"), 2, "in.sdf: No"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b.json"), 2, "a/b.json"),
        (OSError(errno.ENOSPC, "No space left on device", "out/e.sdf"), 1, "out/e.sdf: No space"),
        (OSError(errno.EIO, "Input/output error"), 1, "Input/output error"),
        (RunError("training diverged"), 1, "training diverged"),
        (TrainingDivergedError("loss is NaN at step 3"), 1, "loss is NaN at step 3"),
        (openmm.OpenMMException("Particle coordinate is NaN"), 1, "OpenMM: Particle coordinate"),
        (ZeroDivisionError("division by zero"), 1, "internal error (ZeroDivisionError"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (RunInterruptedError("model kept in run/model.pt"), 130, "interrupted; model kept in run/"),
    ],
)
def test_exit_status_and_one_line(err, code, text):
    got, message = describe(err)
    assert got == code
    assert text in message and "\n" not in message


def test_os_errors_name_both_paths_of_a_rename():
    _, message = describe(OSError(errno.EXDEV, "Invalid cross-device link", "a.tmp", None, "b.sdf"))
    assert message == "a.tmp -> b.sdf: Invalid cross-device link"
