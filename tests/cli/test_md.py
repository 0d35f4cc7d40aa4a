"""``confflow md`` as a subprocess: a short run, and one-line errors with a non-zero exit."""

import json
import subprocess
import sys
from pathlib import Path

import mdtraj
import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "confflow", "md", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_md_short_aldp_run(tmp_path: Path):
    out = tmp_path / "run"
    done = _run(
        "--system", "aldp", "--ns", "0.005", "--stride-ps", "0.1", "--equilibration-ps", "0",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "frames      50" in done.stdout and "ns/day" in done.stdout
    assert mdtraj.load(str(out / "trajectory.h5")).n_frames == 50
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["system"] == "aldp" and meta["complete"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--system", "nope"], "error: system: unknown system 'nope'"),
        (["--smiles", "C1CC"], "error: smiles: SMILES 'C1CC': invalid SMILES"),
        (["--system", "aldp", "--ns", "0"], "error: ns: must be positive, got 0.0"),
        (["--system", "aldp", "--ns", "-1"], "error: ns: must be positive, got -1.0"),
        (["--system", "aldp", "--replicas", "1"], "error: n_replicas: a temperature ladder"),
        (
            ["--system", "aldp", "--smiles", "CCO"],
            "error: give exactly one of --system or --smiles",
        ),
        (["--system", "aldp", "--platform", "Nope"], "error: platform: OpenMM platform 'Nope'"),
    ],
)
def test_cli_md_bad_input(tmp_path: Path, args: list[str], message: str):
    done = _run(*args, "--out", str(tmp_path / "run"), "--no-progress")
    assert done.returncode == 2
    assert done.stderr.strip().startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_cli_md_unwritable_output(tmp_path: Path):
    (tmp_path / "file").write_text("")
    done = _run("--system", "aldp", "--ns", "0.001", "--out", str(tmp_path / "file" / "run"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: out: cannot write to"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
