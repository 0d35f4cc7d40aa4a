"""``python -m confflow generate`` as a subprocess: one-line errors, exit codes, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "confflow", "generate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["C1CC"], "invalid SMILES"),
        (["C[Se]C"], "unsupported element.*Se"),
        (["CCO.Cl"], "disconnected fragments.*--largest-fragment"),
        (["CS(C)(C)(C)(C)C"], "MMFF94 cannot type"),
        (["CCO", "--out", "/proc/no-such-dir/x.sdf"], "cannot write there"),
        (["CCO", "-n", "0"], "-n: must be a positive integer"),
        (["CCO", "--energy", "gaff"], "--energy: unknown force field"),
        (["CCO", "--model", "zmatrix"], "--model: unknown model"),
        (["c1ccccc1", "--model", "torsional"], "no rotatable bonds for --model torsional"),
        (["CCO", "--relax-steps", "-1"], "--relax-steps: must be an integer >= 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = _run(*args, "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "ensemble.sdf").exists()


@pytest.mark.slow
def test_ctrl_c_after_training_keeps_the_model_and_checkpoint_skips_training(tmp_path):
    out = tmp_path / "ethyl.sdf"
    args = ["CCOC(C)=O", "--out", str(out), "--budget", "3", "--md-ns", "0.004"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "confflow", "generate", *args, "-n", "2000000"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("training:") or time.monotonic() > deadline:
            break
    time.sleep(1.0)  # sampling two million conformers is still running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert any(s.startswith("training:") for s in seen), "".join(seen)
    assert proc.returncode == 130
    model = tmp_path / "ethyl_run" / "model.pt"
    assert model.is_file()
    assert "trained model kept" in err
    assert not out.exists()
    again = _run(*args, "-n", "50", "--checkpoint", str(model), "--quiet")
    assert again.returncode == 0, again.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["skipped"] is True
    assert "md" not in report["timings_s"]
    assert str(out) in again.stdout
