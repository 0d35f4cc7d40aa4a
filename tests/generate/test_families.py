"""``confflow generate --model <family>``: every family of the registry as a Cartesian model.

Ethanol. Every family: its layout and model, saved and reloaded, are the same model. Two
families over internal coordinates (an autoregressive flow and a CNF) also run end to end with
tiny budgets: the report names the family and the written conformers carry the density of the
reloaded model. The equivariant CNFs run the same code path, but their exact divergences cost
seconds (EGNN) to minutes (e3nn) per conformer on one CPU thread, too slow for the suite.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rdkit import Chem

from confflow.generate import GenerateConfig, run_generate
from confflow.generate.config import FAMILY_MODELS
from confflow.generate.data import seed_conformers
from confflow.generate.model import build_model, load_model, model_layout, save_model
from confflow.generate.molecule import load_molecule

SMILES = "CCO"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("family", FAMILY_MODELS)
def test_family_model_round_trips_through_its_checkpoint(family, tmp_path):
    molecule = load_molecule(SMILES)
    config = GenerateConfig(SMILES, tmp_path / "e.sdf", model=family, progress=False)
    seeds, _ = seed_conformers(molecule, 16, 1)
    layout = model_layout(molecule, config, seeds, seeds)
    assert layout["model"] == "cartesian" and layout["family"] == family
    model = build_model(molecule, config, layout)
    assert model.config.flow.family == family
    with torch.no_grad():
        for p in model.flow.parameters():  # away from the identity map
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    save_model(tmp_path / "model.pt", model, config, layout)
    again, saved = load_model(tmp_path / "model.pt", molecule, config)
    assert saved == layout and again.config == model.config
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)
    if family != "e3nn-cnf":  # its exact divergence takes minutes per conformer on a CPU
        x = seeds[:2].float()
        with torch.no_grad():
            torch.testing.assert_close(again.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("family", ["maf", "cnf"])
def test_family_model_generates_weighted_conformers(family, tmp_path):
    config = GenerateConfig(
        SMILES,
        tmp_path / "ethanol.sdf",
        budget=1.0,
        md_ns=0.002,
        n=32,
        model=family,
        progress=False,
        device="cpu",
    )
    result = run_generate(config)
    report = json.loads(result.sdf.with_suffix(".json").read_text())
    assert report["model"] == "cartesian" and report["family"] == family
    records = list(Chem.SDMolSupplier(str(result.sdf), removeHs=False))
    assert len(records) == result.n_written > 0
    log_q = torch.tensor([float(r.GetProp("log_q")) for r in records], dtype=torch.float64)
    model, _ = load_model(result.checkpoint, load_molecule(SMILES), config)
    x = torch.from_numpy(np.stack([r.GetConformer().GetPositions() for r in records])) / 10.0
    with torch.no_grad():
        again = model.log_prob(x.float()).double()
    # the written density is the reloaded model's (SDF positions carry 1e-4 Angstrom)
    torch.testing.assert_close(again, log_q, atol=0.05, rtol=0)
