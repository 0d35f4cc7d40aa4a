"""A real ``confflow md`` process killed with SIGKILL resumes into a complete trajectory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mdtraj
import numpy as np

from confflow.md import MDConfig, named_system, read_frames, run_md

_ARGS = [
    "--system", "aldp", "--ns", "0.03", "--stride-ps", "0.05", "--chunk-frames", "40",
    "--equilibration-ps", "0", "--seed", "7", "--no-progress",
]  # fmt: skip


# a merge into trajectory.h5 killed halfway (os._exit skips the cleanup, as SIGKILL does)
_KILLED_MERGE = """
import os, sys
from confflow.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a trajectory")
    os._exit(9)
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "confflow", "md", *args]


def test_sigkill_then_resume_gives_the_uninterrupted_trajectory(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(*_ARGS, "--out", str(out)), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # kill once two chunks are committed and the run is still going
    while not (out / "chunks" / "000001.h5").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no chunk appeared within 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "trajectory.h5").exists()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["complete"] is False and 40 <= meta["n_frames_done"] < 600
    merge = [sys.executable, "-c", _KILLED_MERGE, str(out / "trajectory.h5")]
    assert subprocess.run(merge, check=False).returncode == 9

    done = subprocess.run(_cli(*_ARGS, "--out", str(out), "--resume"), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    traj = mdtraj.load(str(out / "trajectory.h5"))
    assert traj.n_frames == 600
    np.testing.assert_allclose(traj.time, 0.05 * np.arange(1, 601), rtol=1e-6)
    assert json.loads((out / "metadata.json").read_text())["complete"] is True
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "trajectory.h5"]

    # the same run without interruption, in process: identical frames and energies
    config = MDConfig(ns=0.03, stride_ps=0.05, chunk_frames=40, equilibration_ps=0.0, seed=7)
    reference = run_md(named_system("aldp"), config, tmp_path / "reference")
    resumed, straight = read_frames(out / "trajectory.h5"), read_frames(reference.trajectory)
    np.testing.assert_array_equal(resumed.positions, straight.positions)
    np.testing.assert_array_equal(resumed.potential_energy, straight.potential_energy)
