"""Every family of the registry through the command line: train, sample, reweight; bad specs.

Tiny widths, a few steps and a few samples: these check that each family is wired end to end
(config -> builder -> Trainer -> checkpoint -> load_generator -> sample -> reweight), not that
it learns.
"""

import json

import numpy as np
import pytest

from confflow.cli import main
from confflow.datasets import generate
from confflow.datasets.store import CACHE_ENV
from confflow.models import FAMILIES

ODE = {"solver": "rk4", "step_size": 0.5}
#: family -> (target, options, reweighting CV, macrostates)
CASES = {
    "coupling": ("dw", {}, "x0", ("left=-9:0", "right=0:9")),
    "maf": ("dw", {"elementwise": "affine"}, "x0", ("left=-9:0", "right=0:9")),
    "iaf": ("dw", {}, "x0", ("left=-9:0", "right=0:9")),
    "cnf": ("dw", ODE, "x0", ("left=-9:0", "right=0:9")),
    "egnn-cnf": ("mol", {**ODE, "depth": 1}, "torsion:3,0,1,2", ("a=-4:0", "b=0:4")),
    "e3nn-cnf": ("mol", {**ODE, "depth": 1}, "torsion:3,0,1,2", ("a=-4:0", "b=0:4")),
    "torsional": ("mol", {}, "x0", ("a=-4:0", "b=0:4")),
}
TARGETS = {
    "dw": {"kind": "double-well", "params": {"dim": 2}},
    "mol": {"kind": "smiles", "params": {"smiles": "CCO"}},
}
TRAIN = {
    "steps": 3,
    "batch_size": 16,
    "kl_batch_size": 16,
    "kl_weight": 1.0,
    "warmup": 1,
    "val_every": 1000,
    "val_batch_size": 16,
    "checkpoint_every": 0,
    "device": "cpu",
}


def _spec(tmp_path, family, target, options):
    flow = {"family": family, "options": options, "layers": 2, "hidden": [8], "bins": 4}
    spec = {"model": {"target": TARGETS[target], "flow": flow}, "train": TRAIN}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_every_family_has_a_case():
    assert set(CASES) == set(FAMILIES)


@pytest.mark.parametrize("family", list(CASES))
def test_train_sample_reweight(family, tmp_path, capsys):
    target, options, cv, states = CASES[family]
    out = tmp_path / "run"
    spec = _spec(tmp_path, family, target, options)
    assert main(["train", str(spec), "--out", str(out), "--no-progress"]) == 0
    samples = tmp_path / "s.npz"
    code = main(["sample", str(out / "checkpoint.pt"), "-n", "64", "--out", str(samples)])
    assert code == 0, capsys.readouterr().err
    data = np.load(samples)
    assert data["x"].shape[0] == 64
    assert np.isfinite(data["log_q"]).mean() > 0.9
    assert np.isfinite(data["log_w"]).mean() > 0.9
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["flow"]["family"] == family
    args = ["reweight", str(samples), "--cv", cv, "--bootstrap", "10"]
    for state in states:
        args += ["--macrostate", state]
    assert main(args) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flow", "target", "message"),
    [
        ({"family": "glow"}, "dw", "flow.family: unknown family 'glow'"),
        ({"family": "maf", "options": {"elementwise": "cubic"}}, "dw", "flow.options.elementwise"),
        ({"family": "cnf", "options": {"depth": 2}}, "dw", "flow.options.depth: not an option"),
        ({"family": "cnf", "options": {"solver": "rk4"}}, "dw", "flow.options.step_size"),
        ({"family": "egnn-cnf"}, "dw", "flow.family: 'egnn-cnf' needs a molecular target"),
        ({"family": "torsional"}, "dw", "flow.family: 'torsional' needs a 'smiles' target"),
        ({"options": {"transform": "affine"}}, "mol", "flow.options.transform: 'affine'"),
    ],
)
def test_bad_family_or_option_is_one_line(flow, target, message, tmp_path, capsys):
    spec = {"model": {"target": TARGETS[target], "flow": {"layers": 2, "hidden": [8], **flow}}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**spec, "train": TRAIN}))
    assert main(["train", str(path), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.fixture(scope="module")
def aldp_small(tmp_path_factory):
    """A cache holding the aldp-small MD dataset (200 frames, seconds of MD)."""
    cache = tmp_path_factory.mktemp("cache")
    generate("aldp-small", cache)
    return cache


@pytest.mark.parametrize(
    ("family", "options"), [("cnf", ODE), ("egnn-cnf", {**ODE, "depth": 1}), ("iaf", {})]
)
def test_maximum_likelihood_on_md_frames(family, options, aldp_small, tmp_path, monkeypatch):
    """CNFs train by exact maximum likelihood through the ODE, like every family."""
    monkeypatch.setenv(CACHE_ENV, str(aldp_small))
    flow = {"family": family, "options": options, "layers": 2, "hidden": [8], "bins": 4}
    train = {**TRAIN, "kl_weight": 0.0, "val_every": 2}
    spec = {"model": {"target": {"kind": "aldp"}, "flow": flow}, "train": train}
    spec["data"] = {"dataset": "aldp-small"}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert np.isfinite(final["val_nll"])
    samples = tmp_path / "s.npz"
    assert main(["sample", str(out / "checkpoint.pt"), "-n", "32", "--out", str(samples)]) == 0
    assert np.load(samples)["x"].shape == (32, 22, 3)
