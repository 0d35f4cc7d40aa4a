"""Cremer-Pople puckering, ring conformation names and axial/equatorial positions."""

from __future__ import annotations

import math

import pytest
import torch

from confflow.chem import Molecule
from confflow.chem.conformation import (
    ConformationLabeler,
    cremer_pople,
    ring_conformation,
    substituent_position,
)
from confflow.energies import MMFFEnergy

RING = (0, 1, 2, 3, 4, 5)


def _hexagon(z: list[float]) -> torch.Tensor:
    """``[1, 6, 3]`` nm: a regular hexagon of 0.15 nm radius with heights ``z``."""
    angle = torch.arange(6, dtype=torch.float64) * math.pi / 3
    return torch.stack([0.15 * angle.cos(), 0.15 * angle.sin(), torch.tensor(z)], 1)[None]


def test_planar_ring_has_no_puckering():
    p = cremer_pople(_hexagon([0.0] * 6), RING)
    assert float(p.amplitude[0]) < 1e-12
    assert ring_conformation(_hexagon([0.0] * 6), RING) == ["planar"]


def test_ideal_chairs_are_the_poles_and_boat_the_equator():
    h = 0.025
    chair = _hexagon([h, -h, h, -h, h, -h])
    other = _hexagon([-h, h, -h, h, -h, h])
    boat = _hexagon([h, -h / 2, -h / 2, h, -h / 2, -h / 2])
    thetas = [float(cremer_pople(x, RING).theta[0]) for x in (chair, other, boat)]
    assert min(thetas[0], math.pi - thetas[0]) < 1e-9
    assert abs(thetas[0] - thetas[1]) == pytest.approx(math.pi, abs=1e-9)
    assert thetas[2] == pytest.approx(math.pi / 2, abs=1e-9)
    assert ring_conformation(torch.cat([chair, other]), RING) == ["chair", "chair"]
    assert ring_conformation(boat, RING) == ["boat"]
    assert float(cremer_pople(chair, RING).amplitude[0]) == pytest.approx(h * math.sqrt(6))


def test_puckering_is_invariant_to_rigid_motion_and_ring_start():
    molecule = Molecule.from_smiles("CC1CCCCC1")
    x = molecule.embed(3, seed=1, mmff=True)
    ring = (1, 2, 3, 4, 5, 6)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))  # proper rotation
    moved = x @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    a, b = cremer_pople(x, ring), cremer_pople(moved, ring)
    torch.testing.assert_close(a.amplitude, b.amplitude)
    torch.testing.assert_close(a.theta, b.theta)
    shifted = cremer_pople(x, ring[2:] + ring[:2])
    torch.testing.assert_close(a.amplitude, shifted.amplitude)


def test_cyclohexane_minima_are_chairs_of_the_literature_amplitude():
    molecule = Molecule.from_smiles("C1CCCCC1")
    x = molecule.embed(20, seed=3, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    chairs = x[energy - energy.min() < 1.0]
    names = ring_conformation(chairs, RING)
    assert set(names) == {"chair"}
    q = cremer_pople(chairs, RING).amplitude
    assert bool(((q > 0.05) & (q < 0.06)).all())  # 0.056 nm (0.56 Angstrom)


def test_methylcyclohexane_equatorial_methyl_is_lower_by_the_axial_penalty():
    molecule = Molecule.from_smiles("CC1CCCCC1")
    x = molecule.embed(40, seed=2, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    ring = (1, 2, 3, 4, 5, 6)
    chair = torch.tensor([n == "chair" for n in ring_conformation(x, ring)])
    axial = substituent_position(x, ring, 1, 0)
    assert not bool(axial[torch.argmin(energy)])
    gap = float(energy[chair & axial].min() - energy[chair & ~axial].min())
    assert 5.0 < gap < 8.0  # MMFF94: 5.7 kJ/mol


def test_labels_name_rings_substituents_and_amides():
    molecule = Molecule.from_smiles("CN1CCCCC1")
    x = molecule.embed(40, seed=2, mmff=True)
    labels = set(ConformationLabeler(molecule).labels(x))
    assert "ring 1-2-3-4-5-6 chair (0 eq)" in labels
    assert "ring 1-2-3-4-5-6 chair (0 ax)" in labels  # the other invertomer
    amide = Molecule.from_smiles("CNC(C)=O")
    y = amide.embed(8, seed=1, mmff=True)
    energy = MMFFEnergy(amide.rdkit_mol).double().energy(y)
    assert ConformationLabeler(amide).labels(y)[int(torch.argmin(energy))] == "amide 2-1 trans"
    butane = Molecule.from_smiles("CCCC")
    assert ConformationLabeler(butane).labels(butane.embed(1, seed=1)) == ["-"]
