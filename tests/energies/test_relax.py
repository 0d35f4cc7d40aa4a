"""Relaxation at held torsions: RDKit MMFF minimisation with torsion restraints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers, rdMolTransforms

from confflow.energies.relax import relax_at_torsions

TORSIONS = ((0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 5, 6))  # ethyl, ester, ester-ring of benzocaine


def _benzocaine(n: int) -> tuple[Chem.Mol, torch.Tensor]:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccc(N)cc1"))
    AllChem.EmbedMultipleConfs(mol, n, randomSeed=11)
    x = np.stack([c.GetPositions() for c in mol.GetConformers()]) / 10.0
    return mol, torch.as_tensor(x)


def _dihedrals(mol: Chem.Mol, x_nm: torch.Tensor) -> np.ndarray:
    work = Chem.Mol(mol)
    out = []
    for pos in x_nm.numpy() * 10.0:
        conf = work.GetConformer()
        for atom, p in enumerate(pos.tolist()):
            conf.SetAtomPosition(atom, p)
        out.append([rdMolTransforms.GetDihedralDeg(conf, *q) for q in TORSIONS])
    return np.array(out)


def _energies(mol: Chem.Mol, x_nm: torch.Tensor) -> np.ndarray:
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(
        mol, rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    )
    return np.array([ff.CalcEnergy((p * 10.0).ravel().tolist()) for p in x_nm.numpy()])


def test_relaxation_keeps_the_torsions_and_lowers_the_energy():
    mol, x = _benzocaine(4)
    relaxed, unconverged = relax_at_torsions(mol, x, TORSIONS)
    assert relaxed.shape == x.shape and relaxed.dtype == torch.float64 and unconverged == 0
    held = _dihedrals(mol, relaxed) - _dihedrals(mol, x)
    assert np.abs((held + 180.0) % 360.0 - 180.0).max() < 1e-3  # degrees
    before, after = _energies(mol, x), _energies(mol, relaxed)
    assert (after < before - 1.0).all()  # ETKDG geometries are not MMFF minima (kcal/mol)
    again, _ = relax_at_torsions(mol, relaxed, TORSIONS)
    assert np.abs(_energies(mol, again) - after).max() < 1e-3  # a constrained minimum


def test_free_torsions_move_when_not_held():
    mol, x = _benzocaine(2)
    relaxed, _ = relax_at_torsions(mol, x, TORSIONS[1:])
    relaxed_all, _ = relax_at_torsions(mol, x, TORSIONS)
    assert (_energies(mol, relaxed) <= _energies(mol, relaxed_all) + 1e-6).all()


def test_bad_shape_raises():
    mol, x = _benzocaine(1)
    with pytest.raises(ValueError, match="expected positions"):
        relax_at_torsions(mol, x[:, :5], TORSIONS)


def test_minimisations_cut_short_are_counted():
    mol, x = _benzocaine(2)
    _, unconverged = relax_at_torsions(mol, x, TORSIONS, max_iters=1)
    assert unconverged == 2
