"""``confflow train`` / ``sample`` / ``reweight`` as a user runs them, including kill -9 + resume.

Exactness of resume: on the CPU with one thread, a resumed run replays the same floating-point
operations on the same random numbers as the uninterrupted one, so the final metrics agree to
1e-9 relative (the noise allowed here; in practice they are bit-identical).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

CLI = [sys.executable, "-m", "confflow"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

CONFIG = """\
model:
  target: {kind: double-well, params: {dim: 2, b: 6.0, c: 1.0}}
  flow: {layers: 4, hidden: [32, 32]}
train:
  steps: 300
  kl_weight: 1.0
  lr: 0.003
  warmup: 20
  val_every: 100
  val_batch_size: 2000
  checkpoint_every: 20
  device: cpu
  seed: 3
"""


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "dw.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference_run(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    done = run("train", str(config), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    return out


def _last_step(log) -> int:
    if not log.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line]
    return max(steps, default=0)


def test_kill_9_then_resume_matches_uninterrupted_run(config, reference_run, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "train", str(config), "--out", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    deadline = time.monotonic() + 300
    try:
        while _last_step(out / "metrics.jsonl") < 130:
            assert proc.poll() is None, "training finished before it could be killed"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.json").exists()
    resumed = run("train", str(config), "--out", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    first = int(resumed.stdout.split("resumed from step ")[1].split()[0])
    assert 120 <= first < 300 and first % 20 == 0
    ours = json.loads((out / "final.json").read_text())
    ref = json.loads((reference_run / "final.json").read_text())
    assert ours.keys() == ref.keys()
    assert ours["step"] == 300 and ours["skipped"] == 0
    for key in ("ess", "kl", "largest_weight"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-9, abs=0), key
    # the metrics log after resume is the uninterrupted log plus one "resumed" event
    strip = [
        line for line in (out / "metrics.jsonl").read_text().splitlines() if "resumed" not in line
    ]
    assert strip == (reference_run / "metrics.jsonl").read_text().splitlines()


def test_sample_and_reweight(reference_run, tmp_path):
    samples = tmp_path / "s.npz"
    done = run("sample", str(reference_run / "checkpoint.pt"), "-n", "5000", "--out", str(samples))
    assert done.returncode == 0, done.stderr
    data = np.load(samples)
    assert data["x"].shape == (5000, 2)
    for key in ("energy", "log_q", "log_w"):
        assert data[key].shape == (5000,) and np.isfinite(data[key]).all()
    # the double well's reduced energy, computed here from the positions (a = 1, b = 6, c = 1)
    s0, rest = data["x"][:, 0], data["x"][:, 1:]
    u = s0**4 - 6.0 * s0**2 + 1.0 * s0 + 0.5 * (rest**2).sum(1)
    kt = 8.314462618e-3 * 300.0  # kJ/mol at 300 K
    np.testing.assert_allclose(data["energy"] / kt, u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data["log_w"], -u - data["log_q"], rtol=1e-5, atol=1e-5)
    report = tmp_path / "rw.json"
    done = run(
        "reweight",
        str(samples),
        "--cv",
        "x0",
        "--macrostate",
        "left=-9:0",
        "--macrostate",
        "right=0:9",
        "--json",
        str(report),
        "--plots",
        str(tmp_path / "plots"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert 0 < result["ess"] <= 1
    df = result["free_energies"]["left->right"]
    assert df["low"] <= df["value"] <= df["high"]
    # the double well's exact value is 3.3799 kT; this short run must be within 5 sd of it
    assert abs(df["value"] - 3.3799) < 5 * df["std"] + 0.05, df
    assert (tmp_path / "plots" / "profile.png").stat().st_size > 0


def test_unknown_dataset_is_a_clear_error(tmp_path):
    done = run("train", "no-such-dataset", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "unknown dataset 'no-such-dataset'" in done.stderr


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00" * 64)
    done = run("sample", str(bad), "-n", "10", "--out", str(tmp_path / "s.npz"))
    assert done.returncode == 2
    assert "corrupt or not a confflow checkpoint" in done.stderr


def test_resume_into_a_run_of_another_system_is_refused(config, reference_run, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(CONFIG.replace("dim: 2", "dim: 3"))
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((reference_run / "checkpoint.pt").read_bytes())
    done = run("train", str(other), "--out", str(out), "--no-progress")
    assert done.returncode == 2  # the --out folder holds another run: bad input
    assert "written for another system" in done.stderr


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"model": {"target": {"kind": "double-well"}}, "train": {"stepz": 3}})
    )
    done = run("train", str(bad), "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "train: unknown keys ['stepz']" in done.stderr
