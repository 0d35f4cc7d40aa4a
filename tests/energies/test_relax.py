"""Relaxation at held torsions: RDKit MMFF minimisation with torsion restraints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers, rdMolTransforms

from confflow.coordinates import TorsionalEmbedding
from confflow.energies import MMFFEnergy, RelaxedTorsionalEnergy, TorsionalEnergy
from confflow.energies.relax import relax_at_torsions
from tests.coordinates.conftest import molecule

TORSIONS = ((0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 5, 6))  # ethyl, ester, ester-ring of benzocaine


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


def _relaxed_energy(smiles: str = "CCCCO"):
    mol = molecule(smiles)
    emb = TorsionalEmbedding(mol, mol.embed(1, seed=1, mmff=True)[0])
    cartesian = MMFFEnergy(mol.rdkit_mol).double()
    return mol, emb, RelaxedTorsionalEnergy(cartesian, emb, mol.rdkit_mol).double()


def test_relaxed_torsional_energy_is_the_mmff_energy_of_its_relaxed_conformers():
    _, emb, energy = _relaxed_energy()
    theta = (2 * torch.rand(6, emb.dim, dtype=torch.float64, generator=_gen(0)) - 1) * math.pi
    x = energy.positions(theta)
    e = energy.energy(theta)
    # x holds theta to about 1e-3 degrees, against torques of up to ~200 kJ/mol/rad
    assert torch.allclose(e, energy.cartesian.energy(x), rtol=0, atol=1e-2)  # kJ/mol
    held = (emb.project(x) - theta + math.pi) % (2 * math.pi) - math.pi
    assert held.abs().max() < math.radians(1e-2)
    frozen = TorsionalEnergy(energy.cartesian, emb).energy(theta)
    assert (e <= frozen + 1e-6).all()
    assert (frozen - e).max() > 1.0  # relaxation matters away from the reference (kJ/mol)
    with energy.frozen():
        assert torch.equal(energy.energy(theta), frozen)
        assert torch.equal(energy.positions(theta), emb.embed(theta))


def test_relaxed_torsional_gradient_matches_finite_differences_of_relaxed_energies():
    """Envelope theorem: dE/dtheta at the relaxed structure is the total derivative."""
    _, emb, energy = _relaxed_energy()
    theta = (2 * torch.rand(2, emb.dim, dtype=torch.float64, generator=_gen(1)) - 1) * math.pi
    theta.requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(theta).sum(), theta)
    h = 1e-3  # rad; the minimiser's tolerance sets the floor of the difference quotient
    for k in range(emb.dim):
        step = torch.zeros_like(theta)
        step[:, k] = h
        with torch.no_grad():
            numeric = (energy.energy(theta + step) - energy.energy(theta - step)) / (2 * h)
        assert torch.allclose(grad[:, k], numeric, rtol=2e-2, atol=0.5), (k, grad[:, k], numeric)


def test_frozen_energy_with_a_correction_subtracts_it_with_its_gradient():
    _, emb, energy = _relaxed_energy()
    theta = torch.randn(4, emb.dim, dtype=torch.float64, generator=_gen(2), requires_grad=True)
    frozen = TorsionalEnergy(energy.cartesian, emb)
    with energy.frozen(lambda t, e: t[:, 0].square() + 0.25 * e):
        corrected = energy.energy(theta)
    (grad,) = torch.autograd.grad(corrected.sum(), theta)
    (grad_frozen,) = torch.autograd.grad(frozen.energy(theta).sum(), theta)
    expected_energy = 0.75 * frozen.energy(theta) - theta[:, 0].square()
    assert torch.allclose(corrected, expected_energy)
    expected = 0.75 * grad_frozen
    expected[:, 0] -= 2 * theta[:, 0].detach()
    assert torch.allclose(grad, expected)
    assert not energy._frozen and energy._correction is None  # restored after the block


def test_relaxed_torsional_energy_rejects_other_energies_and_molecules():
    mol, emb, energy = _relaxed_energy()
    with pytest.raises(ValueError, match="relaxation uses MMFF"):
        RelaxedTorsionalEnergy(TorsionalEnergy(energy.cartesian, emb), emb, mol.rdkit_mol)
    other = molecule("CCCCCO")
    with pytest.raises(ValueError, match="molecule of 18 atoms"):
        RelaxedTorsionalEnergy(energy.cartesian, emb, other.rdkit_mol)


def test_minimisations_cut_short_are_counted():
    mol, x = _benzocaine(2)
    _, unconverged = relax_at_torsions(mol, x, TORSIONS, max_iters=1)
    assert unconverged == 2
