"""The harmonic reference: Hessians, symmetry numbers and populations with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from confflow.chem import Molecule
from confflow.chem.conformation import ConformationLabeler, substituent_position
from confflow.chem.minima import _hessian, _vibrations, class_populations, harmonic_minima
from confflow.energies import MMFFEnergy
from confflow.reweighting import torsion


@pytest.fixture(scope="module")
def cyclohexane():
    return harmonic_minima(Molecule.from_smiles("C1CCCCC1"), n_conformers=100)


def test_hessian_has_six_rigid_modes_and_positive_vibrations(cyclohexane):
    molecule = Molecule.from_smiles("C1CCCCC1")
    x = cyclohexane.x[0]
    h = _hessian(MMFFEnergy(molecule.rdkit_mol).double(), x)
    np.testing.assert_allclose(h, h.T, atol=0)
    values = np.linalg.eigvalsh(h)
    scale = values[-1]
    assert int((np.abs(values) < 1e-5 * scale).sum()) == 6
    vib = _vibrations(h, x.numpy())
    assert vib.shape == (3 * molecule.n_atoms - 6,) and vib.min() > 1e-3 * scale


def test_free_energy_is_invariant_to_rigid_motion(cyclohexane):
    molecule = Molecule.from_smiles("C1CCCCC1")
    energy = MMFFEnergy(molecule.rdkit_mol).double()
    x = cyclohexane.x[0]
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))
    moved = x @ q.T + 0.7
    a = np.log(_vibrations(_hessian(energy, x), x.numpy())).sum()
    b = np.log(_vibrations(_hessian(energy, moved), moved.numpy())).sum()
    assert a == pytest.approx(b, rel=1e-6)


def test_cyclohexane_symmetry_numbers_chair_6_twist_boat_4(cyclohexane):
    labels = ConformationLabeler(Molecule.from_smiles("C1CCCCC1")).labels(cyclohexane.x)
    sigma = dict(zip(labels, cyclohexane.symmetry.tolist(), strict=False))
    assert sigma["ring 0-1-2-3-4-5 chair"] == 6  # D3 (proper rotations of D3d)
    assert sigma["ring 0-1-2-3-4-5 twist-boat"] == 4  # D2
    assert cyclohexane.population[0] > 0.99


def test_small_symmetric_molecules():
    assert harmonic_minima(Molecule.from_smiles("O"), n_conformers=2).symmetry.tolist() == [2]
    assert harmonic_minima(Molecule.from_smiles("C"), n_conformers=2).symmetry.tolist() == [12]


def test_butane_has_anti_and_two_mirror_gauche_minima():
    minima = harmonic_minima(Molecule.from_smiles("CCCC"), n_conformers=60)
    assert len(minima.energy) == 3
    gap = (minima.energy[1:] - minima.energy[0]).tolist()
    assert gap[0] == pytest.approx(gap[1], abs=1e-6)
    assert 2.5 < gap[0] < 4.5  # MMFF94 gauche-anti ~3.3 kJ/mol
    gauche = float(minima.population[1:].sum())
    assert 0.2 < gauche < 0.45  # two gauche minima at ~3.3 kJ/mol and 300 K
    assert math.isclose(float(minima.population.sum()), 1.0, rel_tol=1e-12)


def test_methylcyclohexane_axial_population():
    molecule = Molecule.from_smiles("CC1CCCCC1")
    minima = harmonic_minima(molecule, n_conformers=100)
    axial = substituent_position(minima.x, (1, 2, 3, 4, 5, 6), 1, 0)
    pops = class_populations(minima, ["ax" if a else "eq" for a in axial.tolist()])
    assert 0.03 < pops["ax"] < 0.15  # MMFF94 axial penalty 5.7 kJ/mol, with basin widths
    assert pops["ax"] + pops["eq"] == pytest.approx(1.0)


def test_secondary_amide_cis_minimum_is_found():
    """ETKDG and distance geometry embed amides trans; the isomer flips find the cis minimum."""
    minima = harmonic_minima(Molecule.from_smiles("CNC(C)=O"), n_conformers=40)
    omega = torch.stack([torsion(minima.x, (3, 2, 1, 0))]).abs()[0]
    cis = omega < math.pi / 2
    assert bool(cis.any()) and bool((~cis).any())
    gap = float(minima.energy[cis].min() - minima.energy[~cis].min())
    assert 6.0 < gap < 12.0  # MMFF94: cis N-methylacetamide ~9 kJ/mol above trans
