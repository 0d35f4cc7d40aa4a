"""The one checkpoint format: every family round-trips; format 1 migrates; foreign files refused."""

import argparse
import zipfile

import pytest
import torch

from confflow.cli import main
from confflow.models import FAMILIES, BGConfig, FlowConfig, TargetConfig, build_boltzmann_generator
from confflow.training import CheckpointError, load_generator, read_checkpoint, write_checkpoint
from confflow.training.checkpoint import FORMAT, FORMAT_VERSION

ODE = {"solver": "rk4", "step_size": 0.5}
OPTIONS = {"cnf": ODE, "egnn-cnf": {**ODE, "depth": 1}, "e3nn-cnf": {**ODE, "depth": 1}}
MOLECULAR = {"egnn-cnf", "e3nn-cnf", "torsional"}


def _model(family: str):
    target = (
        TargetConfig("smiles", {"smiles": "CCO", "variant": "MMFF94"})
        if family in MOLECULAR
        else TargetConfig("double-well", {"dim": 3})
    )
    flow = FlowConfig(layers=2, bins=4, hidden=(8,), family=family, options=OPTIONS.get(family, {}))
    model = build_boltzmann_generator(BGConfig(target, flow=flow))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the identity, so the round trip checks the weights
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _save(path, model) -> None:
    payload = {
        "fingerprint": model.fingerprint,
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
    }
    write_checkpoint(path, payload)


def _same_density(a, b) -> None:
    with torch.no_grad():
        x, _ = a.sample(8, torch.Generator().manual_seed(2))
        torch.testing.assert_close(b.log_prob(x), a.log_prob(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_round_trips(family, tmp_path):
    model = _model(family).eval()
    _save(tmp_path / "m.pt", model)
    loaded, data = load_generator(tmp_path / "m.pt")
    assert data["format"] == FORMAT and loaded.config == model.config
    _same_density(model, loaded)


def _as_format_1(path, data) -> None:
    data = {**data, "format": "confflow-checkpoint/1"}
    flow = dict(data["model_config"]["flow"])
    del flow["family"], flow["options"]
    data["model_config"] = {**data["model_config"], "flow": flow}
    torch.save(data, path)


def test_format_1_checkpoint_of_train_migrates(tmp_path):
    model = _model("coupling").eval()
    _save(tmp_path / "m.pt", model)
    _as_format_1(tmp_path / "old.pt", read_checkpoint(tmp_path / "m.pt"))
    assert read_checkpoint(tmp_path / "old.pt")["format"] == FORMAT
    loaded, _ = load_generator(tmp_path / "old.pt")
    assert loaded.config.flow.family == "coupling"
    _same_density(model, loaded)


def _generate_format_1(path, model, **layout) -> None:
    """What ``confflow generate`` wrote before format 2: the model described by a layout."""
    config = model.config.to_dict()
    config["target"]["params"] = {"smiles": "CCO"}
    options = config["flow"]["options"]
    data = {
        "format": "confflow-checkpoint/1",
        "version": "0.1.0",
        "fingerprint": model.fingerprint,
        "model_config": config,
        "layout": {"model": "torsional", "reference": options["reference"], **layout},
        "energy": "mmff94",
        "model": model.state_dict(),
    }
    _as_format_1(path, data)


def test_format_1_checkpoint_of_generate_migrates(tmp_path):
    model = _model("torsional").eval()
    _generate_format_1(tmp_path / "old.pt", model)
    loaded, _ = load_generator(tmp_path / "old.pt")
    assert loaded.config.flow.family == "torsional"
    assert loaded.fingerprint == model.fingerprint
    _same_density(model, loaded)
    _generate_format_1(tmp_path / "relaxed.pt", model, relaxed=True)
    with pytest.raises(CheckpointError, match="former --relax minimisation"):
        load_generator(tmp_path / "relaxed.pt")


def _foreign(path, kind: str) -> None:
    if kind == "newer":
        torch.save({"format": f"confflow-checkpoint/{FORMAT_VERSION + 1}", "version": "9"}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "objects":
        torch.save({"args": argparse.Namespace(a=1)}, path)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a checkpoint")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("newer", f"format {FORMAT_VERSION + 1}; this confflow"),
        ("tensor", "not a confflow checkpoint (a torch file holding a Tensor)"),
        ("objects", "not a confflow checkpoint (it holds Python objects"),
        ("zip", "corrupt or not a confflow checkpoint"),
    ],
)
def test_foreign_or_newer_file_is_one_line(kind, message, tmp_path, capsys):
    path = tmp_path / "x.pt"
    _foreign(path, kind)
    with pytest.raises(CheckpointError, match=r"^checkpoint "):
        load_generator(path)
    assert main(["sample", str(path), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_format_1_checkpoint_of_another_kind_keeps_its_config(tmp_path):
    old = {"format": "confflow-checkpoint/1", "version": "0.1.0", "fingerprint": "f"}
    torch.save({**old, "model_config": {"steps": 3}, "model": {}}, tmp_path / "fm.pt")
    data = read_checkpoint(tmp_path / "fm.pt")
    assert data["format"] == FORMAT and data["model_config"] == {"steps": 3}


def test_molecular_state_dict_keeps_the_flat_layout_of_format_1():
    """Checkpoints written before the registry name their layers flow.transform.transforms.i."""
    config = BGConfig(
        TargetConfig("smiles", {"smiles": "CCO"}), flow=FlowConfig(layers=2, hidden=(8,))
    )
    keys = list(build_boltzmann_generator(config).state_dict())
    assert "flow.transform.transforms.0.conditioner.0.weight" in keys
    assert not any(".transforms.0.transforms." in k for k in keys)


@pytest.mark.parametrize("kind", ["torsional", "cartesian"])
def test_generate_checkpoint_loads_with_load_generator(kind, tmp_path):
    """A model saved by confflow generate is rebuilt by the one loader (and sampled by CLI)."""
    from confflow.generate.config import GenerateConfig
    from confflow.generate.model import build_model, load_model, model_layout, save_model
    from confflow.generate.molecule import load_molecule

    config = GenerateConfig(smiles="CCO", out=tmp_path / "c.sdf", model=kind)
    molecule = load_molecule("CCO")
    frames = molecule.embed(2, seed=0, num_threads=1, mmff=True)
    layout = model_layout(molecule, config, frames, frames.float())
    model = build_model(molecule, config, layout).eval()
    save_model(tmp_path / "model.pt", model, config, layout)
    loaded, _ = load_generator(tmp_path / "model.pt")
    assert loaded.fingerprint == model.fingerprint
    _same_density(model, loaded)
    again, _ = load_model(tmp_path / "model.pt", molecule, config)
    _same_density(model, again)
    out = tmp_path / "s.npz"
    assert main(["sample", str(tmp_path / "model.pt"), "-n", "8", "--out", str(out)]) == 0
