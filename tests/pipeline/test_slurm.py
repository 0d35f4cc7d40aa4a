"""The pipeline through dask-jobqueue's SLURMCluster on a real single-node SLURM.

The fixture stands SLURM up with ``slurm/local-cluster.sh`` (installing the Debian packages
when missing) and stops it afterwards; the test is skipped only when this machine cannot
install or start SLURM (not root, no apt).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from confflow.pipeline import PipelineError, open_cluster, run_pipeline

from .conftest import REPO, write_lines


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    env = {**os.environ, "CONFFLOW_SLURM_DIR": str(tmp_path_factory.mktemp("slurm-state"))}
    start = subprocess.run(
        ["bash", str(REPO / "slurm" / "local-cluster.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if start.returncode == 3:
        pytest.skip(f"cannot install or start SLURM on this machine: {start.stderr.strip()}")
    assert start.returncode == 0, start.stderr
    yield
    stop = subprocess.run(
        ["bash", str(REPO / "slurm" / "stop-local-cluster.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stderr


def _jobqueue(tmp_path, **change):
    section = {
        "partition": "debug",
        "walltime": "00:20:00",
        "memory": "1GB",
        "cores": 1,
        "gpus": 1,
        "adapt": {"minimum-jobs": 1, "maximum-jobs": 2},
        "log-directory": str(tmp_path / "job-logs"),
        "scheduler-host": "127.0.0.1",
        "worker-start-timeout": 180,
        **change,
    }
    path = tmp_path / "jobqueue.yaml"
    path.write_text(yaml.safe_dump({"slurm": section}))
    return path


@pytest.mark.slow
def test_pipeline_on_slurm_with_fake_gpus(slurm, tmp_path, tiny):
    smi = write_lines(tmp_path / "in.smi", ["CCO ethanol", "COC dme"])
    out = tmp_path / "out"
    with open_cluster("slurm", jobqueue=_jobqueue(tmp_path)) as handle:
        script = handle.job_script
        assert handle.gpus
        summary = run_pipeline(smi, out, tiny, handle.client, gpus=handle.gpus, progress=False)
    for line in (
        "#SBATCH -p debug",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH -t 00:20:00",
        "#SBATCH --gres=gpu:1",
        "--resources GPU=1",
        "--nthreads 1",
    ):
        assert line in script, script
    manifest = json.loads(summary.manifest.read_text())
    assert [r["status"] for r in manifest["molecules"]] == ["done", "done"]
    for name in ("ethanol", "dme"):
        marker = json.loads((out / "molecules" / name / "stages" / "train.json").read_text())
        # training ran inside a SLURM job that was given one (fake) GPU by gres
        assert marker["cuda_visible_devices"] is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # closing the cluster cancels its jobs
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
        if not queue.stdout.strip():
            break
        time.sleep(0.5)
    assert queue.stdout.strip() == ""


def test_sbatch_rejection_is_a_clear_error(slurm, tmp_path):
    with (
        pytest.raises(PipelineError, match=r"sbatch rejects the job script \(.*[Pp]artition"),
        open_cluster("slurm", jobqueue=_jobqueue(tmp_path, partition="no-such-partition")),
    ):
        pass


@pytest.mark.slow
def test_job_array_template_runs_confflow_generate(slurm, tmp_path):
    smi = write_lines(tmp_path / "in.smi", ["CCO ethanol", "COC"])
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    submit = [
        "sbatch",
        "--wait",
        "--array=1-2",
        "-p",
        "debug",
        "-c",
        "1",
        "--mem=1G",
        "--gres=gpu:1",
        "-o",
        str(tmp_path / "job-%A_%a.out"),
        str(REPO / "slurm" / "generate-array.sbatch"),
        str(smi),
        str(out),
        "--budget",
        "1",
        "--md-ns",
        "0",
        "-n",
        "32",
        "--device",
        "cpu",
    ]
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert done.returncode == 0, done.stderr + logs
    for name in ("ethanol", "mol-2"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["samples_kept"] > 0 and (out / f"{name}.sdf").exists()
