"""Ctrl-C as a user sends it: exit 130, one line saying what was kept, the kept files usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from confflow.md import read_frames

CLI = [sys.executable, "-m", "confflow"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _interrupt_when(proc: subprocess.Popen, ready, what: str) -> tuple[str, str]:
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, f"finished before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)


def test_ctrl_c_during_md_keeps_the_committed_chunks(tmp_path: Path):
    out = tmp_path / "run"
    args = ["md", "--system", "aldp", "--ns", "10", "--stride-ps", "0.1", "--chunk-frames", "10"]
    args += ["--equilibration-ps", "0", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    chunks = out / "chunks"
    _, err = _interrupt_when(proc, lambda: any(chunks.glob("[0-9]*.h5")), "first MD chunk")
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted; completed chunks kept in")
    assert "--resume" in lines[0]
    kept = sorted(chunks.glob("[0-9]*.h5"))
    assert kept and read_frames(kept[0]).positions.shape == (10, 22, 3)


def test_ctrl_c_during_training_keeps_a_loadable_checkpoint(tmp_path: Path):
    spec = tmp_path / "dw.json"
    model = {"target": {"kind": "double-well", "params": {"dim": 2}}, "flow": {"layers": 2}}
    train = {"steps": 10**6, "kl_weight": 1.0, "checkpoint_every": 10, "val_every": 10**6}
    spec.write_text(json.dumps({"model": model, "train": {**train, "device": "cpu"}}))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "train", str(spec), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _, err = _interrupt_when(proc, (out / "checkpoint.pt").exists, "checkpoint")
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"error: interrupted; the last checkpoint is kept in {out / 'checkpoint.pt'}; "
        "rerun to resume"
    ]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] >= 10
