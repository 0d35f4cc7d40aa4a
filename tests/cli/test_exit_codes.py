"""Every subcommand's bad inputs: the exact exit status and a single ``error:`` line on stderr.

Run in this process through :func:`confflow.cli.main`, the console entry point, so usage errors
(click's) and library errors (the boundary's) are both covered; nothing here starts a run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from confflow.cli import main

BAD_INPUT = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small input files: a real samples .npz, garbage, a YAML spec with a typo, a plain file."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    np.savez(
        root / "samples.npz",
        x=rng.normal(size=(50, 2)),
        energy=np.zeros(50),
        log_q=np.zeros(50),
        log_w=rng.normal(size=50),
        temperature=300.0,
        target=json.dumps({"kind": "double-well"}),
        fingerprint="x",
    )
    (root / "garbage.npz").write_bytes(b"\x00" * 64)
    (root / "garbage.pt").write_bytes(b"\x00" * 64)
    (root / "typo.json").write_text(json.dumps({"train": {"stepz": 3}}))
    (root / "broken.yaml").write_text("model: [unclosed\n")
    (root / "a-file").write_text("not a folder\n")
    (root / "molecules.smi").write_text("CCO ethanol\n")
    return root


def _cases(root):
    smp, junk = str(root / "samples.npz"), str(root / "garbage.npz")
    afile = str(root / "a-file")
    cv = ["--cv", "x0", "--macrostate", "a=-9:0"]
    return {
        "generate": [
            ["generate", "C1CC(", "--out", f"{root}/g.sdf"],
            ["generate", "CCO", "-n", "0", "--out", f"{root}/g.sdf"],
            ["generate", "CC[U]", "--out", f"{root}/g.sdf"],
            ["generate", "CCO", "--out", f"{root}/g.txt"],
            ["generate", "CCO", "--checkpoint", f"{root}/missing.pt", "--out", f"{root}/g.sdf"],
            ["generate", "OC1CCCCCCCCCCC1", "--out", f"{root}/g.sdf"],  # macrocycle
            ["generate", "CCO", "--level", "gfn2:notasolvent", "--out", f"{root}/g.sdf"],
            ["generate", "CCO", "--level", "pm7", "--out", f"{root}/g.sdf"],
        ],
        "md": [
            ["md", "--out", f"{root}/md"],
            ["md", "--system", "no-such-system", "--out", f"{root}/md"],
            ["md", "--system", "aldp", "--ns", "-1", "--out", f"{root}/md"],
            ["md", "--smiles", "C1CC(", "--out", f"{root}/md"],
        ],
        "train": [
            ["train", "no-such-dataset", "--out", f"{root}/t"],
            ["train", str(root / "typo.json"), "--out", f"{root}/t"],
            ["train", str(root / "broken.yaml"), "--out", f"{root}/t"],
            ["train", "aldp-small", "--out", f"{root}/t", "--steps", "0"],
            ["train", "aldp-small"],
        ],
        "sample": [
            ["sample", f"{root}/missing.pt", "--out", f"{root}/s.npz"],
            ["sample", str(root / "garbage.pt"), "--out", f"{root}/s.npz"],
            ["sample", str(root / "garbage.pt"), "--out", f"{root}/s.txt"],
            ["sample", str(root / "garbage.pt"), "-n", "0"],
        ],
        "reweight": [
            ["reweight", f"{root}/missing.npz", *cv, "--macrostate", "b=0:9"],
            ["reweight", junk, *cv, "--macrostate", "b=0:9"],
            ["reweight", smp, *cv],
            ["reweight", smp, "--cv", "bogus", "--macrostate", "a=-9:0", "--macrostate", "b=0:9"],
            ["reweight", smp, *cv, "--macrostate", "b=zero:nine"],
            ["reweight", smp, *cv, "--macrostate", "b=0:9", "--json", f"{afile}/r.json"],
            ["reweight", smp, "--energy", "gfn2"],  # a double well has no atoms
        ],
        "datasets": [
            ["datasets", "generate", "no-such-dataset"],
            ["datasets", "generate", "smiles:C1CC("],
            ["datasets", "generate", "aldp-small", "--workers", "0"],
            ["datasets", "frobnicate"],
        ],
        "pipeline": [
            ["pipeline", f"{root}/missing.smi", "--out", f"{root}/p"],
            ["pipeline", str(root / "molecules.smi"), "--out", f"{root}/p", "--cluster", "moon"],
            ["pipeline", str(root / "molecules.smi"), "--out", f"{root}/p", "--budget", "-1"],
            ["pipeline", str(root / "molecules.smi")],
        ],
        "demo": [
            ["demo", "--steps", "0"],
            ["demo", "--steps", "many"],
            ["demo", "--seed", "1", "--no-such-option"],
        ],
    }


COMMANDS = ["generate", "md", "train", "sample", "reweight", "datasets", "pipeline", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_exits_2_with_one_line(command, files, capsys):
    cases = _cases(files)[command]
    assert len(cases) >= 3
    for argv in cases:
        code = main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == BAD_INPUT, (argv, code, captured.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, captured.err)


def test_debug_prints_the_traceback_then_the_same_line(files, capsys):
    argv = ["sample", str(files / "garbage.pt"), "--out", str(files / "s.npz")]
    assert main(argv) == BAD_INPUT
    plain = capsys.readouterr().err.strip().splitlines()
    assert main(["--debug", *argv]) == BAD_INPUT
    debug = capsys.readouterr().err.strip().splitlines()
    assert debug[0].startswith("Traceback") and "CheckpointError" in debug[-2]
    assert debug[-1] == plain[0]
    assert main(argv) == BAD_INPUT  # the flag does not stick to the next call
    assert capsys.readouterr().err.strip().splitlines() == plain
