"""``confflow reweight --energy gfn2[:solvent]`` on a samples file of a molecule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from tblite.interface import Calculator

from confflow.chem import Molecule
from confflow.energies import MMFFEnergy, kT
from confflow.energies.xtb import HARTREE_KJ_MOL

CLI = [sys.executable, "-m", "confflow"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ANGSTROM_PER_BOHR = 0.529177210903
SMILES = "CCCO"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple:
    """A samples file as ``confflow sample`` writes it: 40 propanol conformers, MMFF94."""
    molecule = Molecule.from_smiles(SMILES)
    mol = Chem.Mol(molecule.rdkit_mol)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=40, randomSeed=5))
    AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=20)  # partly relaxed: varied energies
    x = np.stack([mol.GetConformer(i).GetPositions() / 10.0 for i in ids])
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(torch.from_numpy(x)).numpy()
    log_q = np.random.default_rng(0).normal(size=len(x))
    log_w = -energy / kT(300.0) - log_q
    path = tmp_path_factory.mktemp("rw") / "s.npz"
    target = json.dumps({"kind": "smiles", "params": {"smiles": SMILES}})
    np.savez(path, x=x, energy=energy, log_q=log_q, log_w=log_w, temperature=300.0, target=target)
    return path, x, energy, log_w


def test_reweight_to_gfn2_water(samples, tmp_path):
    path, x, energy, log_w = samples
    report, out = tmp_path / "r.json", tmp_path / "s_gfn2.npz"
    cv = ["--cv", "torsion:0,1,2,3", "--macrostate", "a=-3.2:0", "--macrostate", "b=0:3.2"]
    done = run("reweight", str(path), "--energy", "gfn2:water", *cv, "--json", str(report),
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "of the force field's" in done.stdout
    result = json.loads(report.read_text())
    assert result["level"]["name"] == "gfn2:water"
    assert result["level"]["failed"] == 0
    assert result["level"]["ess_change"] > 0
    assert "a->b" in result["free_energies"]
    data = np.load(out)
    assert str(data["level"]) == "gfn2:water"
    for i in (0, 17, 39):
        calc = Calculator(
            "GFN2-xTB", np.array([6, 6, 6, 8] + [1] * 8), x[i] * 10 / ANGSTROM_PER_BOHR
        )
        calc.set("verbosity", 0)
        calc.add("alpb-solvation", "water")
        expected = calc.singlepoint().get("energy") * HARTREE_KJ_MOL
        assert data["energy_gfn2"][i] == pytest.approx(expected, abs=1e-5)
    shift = data["log_w"] - log_w + (data["energy_gfn2"] - energy) / kT(300.0)
    assert np.ptp(shift) < 1e-6
    np.testing.assert_array_equal(data["log_w_force_field"], log_w)
    # the ESS printed is that of the level's weights
    w = np.exp(data["log_w"] - data["log_w"].max())
    assert result["ess"] == pytest.approx(w.sum() ** 2 / (w**2).sum() / len(w), rel=1e-9)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--energy", "gfn2:notasolvent"], "--energy gfn2:notasolvent"),
        (["--energy", "gfn9"], "unknown method"),
        (["--out", "x.npz"], "--out"),
        (["--macrostate", "a=0:1"], "needs --cv"),
    ],
)
def test_bad_level_options_exit_2(samples, args, match):
    done = run("reweight", str(samples[0]), *args)
    assert done.returncode == 2, done.stderr
    assert match in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
