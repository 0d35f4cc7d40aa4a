"""The pipeline on a real LocalCluster: 4 molecules (one invalid), reruns, partial redo, CLI."""

import json
import socket

import pytest
import torch
import yaml
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from confflow.chem import read_sdf
from confflow.cli import app
from confflow.pipeline import PipelineError, open_cluster, run_pipeline

from .conftest import write_lines

MOLECULES = ["CCO ethanol", "CC(=O)O acetic-acid", "C1CC1(C)N(C)(C)(C)C bad-valence", "COC dme"]
GOOD = ["ethanol", "acetic-acid", "dme"]


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as local:
        yield local


def _cli(*args):
    return CliRunner().invoke(app, ["pipeline", *map(str, args)])


def _mtimes(root):
    return {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_four_molecules_one_invalid_then_idempotent_rerun(tmp_path, cluster, tiny):
    smi = write_lines(tmp_path / "in.smi", MOLECULES)
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(tiny.to_dict()))
    out = tmp_path / "out"
    result = _cli(smi, "--out", out, "--scheduler", cluster.scheduler_address, "--config", settings)
    assert result.exit_code == 1, result.output  # one molecule failed
    assert "dashboard  http" in result.output
    assert "3 done, 1 failed" in result.output

    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["name"]: r for r in manifest["molecules"]}
    assert manifest["run"]["config"] == tiny.to_dict()
    bad = rows["bad-valence"]
    assert bad["status"] == "failed"
    assert bad["failed_stage"] == "featurize"
    assert bad["error"].startswith("GenerateError: SMILES 'C1CC1(C)N(C)(C)(C)C': rejected")
    assert "valence" in bad["error"]
    for name in GOOD:
        row = rows[name]
        assert row["status"] == "done" and row["reused"] is False
        assert 0 < row["n_kept"] <= tiny.n_samples
        assert 1 / row["n_kept"] - 1e-9 <= row["ess"] <= 1
        assert all(row[f"t_{stage}"] > 0 for stage in ("featurize", "train", "sample"))
        mol, x, tags = read_sdf(out / "molecules" / name / "ensemble.sdf")
        assert x.shape == (row["n_kept"], mol.n_atoms, 3)
        assert torch.isclose(tags["weight"].sum(), torch.tensor(1.0, dtype=torch.float64))
        assert torch.isfinite(tags["energy_kJ_mol"]).all()
    csv_lines = (out / "manifest.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("index,name,smiles,status")

    before = {name: _mtimes(out / "molecules" / name) for name in GOOD}
    with Client(cluster) as client:
        summary = run_pipeline(smi, out, tiny, client, progress=False)
    assert summary.submitted == 1  # only the failed molecule is tried again
    for record in summary.records:
        assert record["reused"] is (record["name"] in GOOD)
    assert {name: _mtimes(out / "molecules" / name) for name in GOOD} == before

    # a damaged output (same file, other content) is detected and redone from that stage on
    samples = out / "molecules" / "dme" / "samples.npz"
    samples.write_bytes(samples.read_bytes()[:-10] + b"0123456789")
    with Client(cluster) as client:
        summary = run_pipeline(smi, out, tiny, client, progress=False)
    assert summary.submitted == 2
    after = _mtimes(out / "molecules" / "dme")
    stages = out / "molecules" / "dme" / "stages"
    train_marker = (stages / "train.json").relative_to(out / "molecules" / "dme")
    sample_marker = (stages / "sample.json").relative_to(out / "molecules" / "dme")
    assert after[train_marker] == before["dme"][train_marker]  # training reused
    assert after[sample_marker] > before["dme"][sample_marker]  # sampling redone
    assert all(r["status"] == "done" for r in summary.records if r["name"] in GOOD)


def test_cli_bad_input_fails_before_any_cluster(tmp_path):
    out = tmp_path / "out"
    result = _cli(tmp_path / "missing.smi", "--out", out)
    assert result.exit_code == 2
    assert "error: input" in result.output and "cannot read" in result.output
    empty = write_lines(tmp_path / "empty.smi", ["# nothing"])
    result = _cli(empty, "--out", out)
    assert result.exit_code == 2 and "no molecules in the file" in result.output
    smi = write_lines(tmp_path / "in.smi", ["CCO"])
    result = _cli(smi, "--out", out, "--cluster", "kubernetes")
    assert result.exit_code == 2
    assert "--cluster 'kubernetes': unknown kind; choose local or slurm" in result.output
    result = _cli(smi, "--out", out, "--cluster", "slurm")
    assert result.exit_code == 2 and "needs --jobqueue FILE" in result.output
    bad = tmp_path / "jq.yaml"
    bad.write_text("slurm:\n  partition: debug\n")
    result = _cli(smi, "--out", out, "--cluster", "slurm", "--jobqueue", bad)
    assert result.exit_code == 2 and "missing keys slurm.walltime" in result.output
    result = _cli(smi, "--out", out, "--budget", "0")
    assert result.exit_code == 2 and "budget: must be positive" in result.output
    assert not out.exists()


def test_unreachable_scheduler():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with (
        pytest.raises(PipelineError, match=f"--scheduler {address}: cannot reach a Dask scheduler"),
        open_cluster(scheduler=address, timeout=2),
    ):
        pass
