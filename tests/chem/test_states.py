"""Tests of the state elements, their descriptor and the grouping of conformers into states."""

from __future__ import annotations

import pytest
import torch

from confflow.chem import Molecule
from confflow.chem.states import (
    StateDescriptor,
    StateElements,
    group_states,
    state_descriptor,
)
from confflow.energies import MMFFEnergy


def _elements(smiles: str) -> tuple[Molecule, StateElements]:
    molecule = Molecule.from_smiles(smiles, stereo="first")
    return molecule, StateElements.from_molecule(molecule)


@pytest.mark.parametrize(
    ("smiles", "rings", "centres", "bonds", "macro"),
    [
        ("CC1CCCCC1", 1, 1, 0, 0),  # ring; C1 carries the methyl's side
        ("CN1CCCCC1", 1, 1, 0, 0),  # the ring nitrogen inverts
        ("CC1(C)CCCCC1", 1, 0, 0, 0),  # gem-dimethyl: its two sides are alike
        ("CN(C)C(C)=O", 0, 0, 1, 0),  # amide N is planar, the C(=O)-N bond isomerises
        ("CC(=O)OC", 0, 0, 1, 0),  # ester
        ("c1ccccc1C", 0, 0, 0, 0),  # aromatic ring: no states
        ("C1CCc2ccccc2C1", 1, 0, 0, 0),  # tetralin: the saturated ring flips
        ("C1CCCCCCCCCC1", 0, 0, 0, 1),  # macrocycle
        ("CCN(C)CCC", 0, 1, 0, 0),  # acyclic amine, three different neighbours
        ("CN(C)CC", 0, 0, 0, 0),  # dimethylamino: its invertomers are relabellings
    ],
)
def test_elements_of_known_molecules(smiles, rings, centres, bonds, macro):
    _, elements = _elements(smiles)
    assert len(elements.rings) == rings
    assert len(elements.centres) == centres
    assert len(elements.isomer_bonds) == bonds
    assert len(elements.macrocycles) == macro
    assert elements.empty == (rings + centres + bonds == 0)


def test_ring_atoms_are_in_ring_order():
    molecule, elements = _elements("CC1CCCCC1")
    ring = elements.rings[0]
    bonded = {tuple(sorted(b)) for b in molecule.bonds}
    for i in range(len(ring)):
        assert tuple(sorted((ring[i], ring[(i + 1) % len(ring)]))) in bonded


def test_secondary_amide_minimum_is_trans():
    molecule, elements = _elements("CNC(C)=O")
    x = molecule.embed(8, seed=3, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    cis = state_descriptor(elements, x).cis[:, 0]
    assert not bool(cis[torch.argmin(energy)])


def test_mirror_image_negates_the_descriptor():
    molecule, elements = _elements("CN1CCCC(C)C1")
    x = molecule.embed(4, seed=1, mmff=True)
    d, m = state_descriptor(elements, x), state_descriptor(elements, -x)
    torch.testing.assert_close(m.ring_torsions, -d.ring_torsions)
    assert torch.equal(m.chirality, -d.chirality)
    assert torch.equal(m.cis, d.cis)


def test_methylcyclohexane_chairs_with_axial_and_equatorial_methyl_are_four_states():
    molecule, elements = _elements("CC1CCCCC1")
    x = molecule.embed(64, seed=1, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    low = energy - energy.min() < 10.0  # chairs only (twist-boats are ~25 kJ/mol up)
    pool = torch.cat([x[low], -x[low]])
    labels = group_states(state_descriptor(elements, pool))
    assert int(labels.max()) + 1 == 4
    # mirror images fall into other states, the same for every member of a state
    n = int(low.sum())
    pairs = {(int(a), int(b)) for a, b in zip(labels[:n], labels[n:], strict=True)}
    assert len(pairs) == len({a for a, _ in pairs})
    assert all(a != b for a, b in pairs)


def test_grouping_is_single_linkage_within_tolerance():
    torsions = torch.tensor([[0.0], [0.5], [1.0], [2.5]])
    empty = torch.zeros(4, 0)
    descriptor = StateDescriptor(torsions, empty.to(torch.int8), empty.bool())
    assert group_states(descriptor, tolerance=0.6).tolist() == [0, 0, 0, 1]
    assert group_states(descriptor, tolerance=0.4).tolist() == [0, 1, 2, 3]
