"""Torsion space at fixed local structure: rigid rotations, round trips, the energy wrapper."""

import math

import pytest
import torch
from rdkit.Chem import rdMolTransforms

from confflow.coordinates import TorsionalEmbedding, rotatable_bonds
from confflow.energies import MMFFEnergy, TorsionalEnergy
from tests.coordinates.conftest import molecule


def _angles(x: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    u = x[..., triples[:, 0], :] - x[..., triples[:, 1], :]
    v = x[..., triples[:, 2], :] - x[..., triples[:, 1], :]
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))


def _local_structure(mol, x: torch.Tensor) -> torch.Tensor:
    """Every bond length, bond angle and dihedral about a non-rotatable bond of ``x``.

    Dihedrals about bonds of sp atoms (undefined on a straight line) are left out.
    """
    linear = {
        a.GetIdx()
        for a in mol.rdkit_mol.GetAtoms()
        if a.GetDegree() == 2 and str(a.GetHybridization()) == "SP"
    }
    bonds = torch.tensor(mol.bonds)
    nbrs = {a: set() for a in range(mol.n_atoms)}
    for a, b in mol.bonds:
        nbrs[a].add(b)
        nbrs[b].add(a)
    triples = torch.tensor([(a, j, c) for j in nbrs for a in nbrs[j] for c in nbrs[j] if a < c])
    rotatable = set(rotatable_bonds(mol))
    quads = [
        (a, j, k, d)
        for j, k in mol.bonds
        if (min(j, k), max(j, k)) not in rotatable and not {j, k} & linear
        for a in nbrs[j] - {k}
        for d in nbrs[k] - {j, a}
    ]
    parts = [
        (x[..., bonds[:, 0], :] - x[..., bonds[:, 1], :]).norm(dim=-1),
        _angles(x, triples),
    ]
    if quads:
        q = torch.tensor(quads)
        b0 = x[..., q[:, 0], :] - x[..., q[:, 1], :]
        b1 = x[..., q[:, 2], :] - x[..., q[:, 1], :]
        b2 = x[..., q[:, 3], :] - x[..., q[:, 2], :]
        n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
        # cos and sin of the dihedral, both smooth (no wrap at +-pi)
        parts += [(n1 * n2).sum(-1) / (n1.norm(dim=-1) * n2.norm(dim=-1))]
    return torch.cat(parts, dim=-1)


SMILES = [
    "CCCCC",  # alkane: methyl and backbone rotors
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",  # ibuprofen: ring, stereocentre, acid
    "C[C@H](N)C(=O)N[C@@H](CC1=CC=CC=C1)C(=O)O",  # dipeptide: amide, two stereocentres
    "CC#CCOC1CCCC1",  # alkyne next to a rotor, saturated ring
    "OC(=O)/C=C/c1ccccc1",  # E double bond between rotors
]


@pytest.mark.parametrize("smiles", SMILES)
def test_torsions_rotate_rigidly(smiles):
    """Any torsions keep every bond, angle and rigid dihedral of the reference (float64)."""
    mol = molecule(smiles)
    ref = mol.embed(1, seed=3, mmff=True)[0]
    emb = TorsionalEmbedding(mol, ref)
    assert emb.dim == len(rotatable_bonds(mol)) > 0
    theta = (2 * torch.rand(50, emb.dim, dtype=torch.float64) - 1) * math.pi
    x = emb.embed(theta)
    want = _local_structure(mol, ref)
    assert torch.allclose(
        _local_structure(mol, x), want.expand_as(_local_structure(mol, x)), atol=1e-9
    )
    back = torch.remainder(emb.project(x) - theta + math.pi, 2 * math.pi) - math.pi
    assert back.abs().max() < 1e-9


def test_torsions_are_dihedrals_of_the_bonds():
    """Each free torsion is the IUPAC dihedral of its atoms, as RDKit measures it."""
    mol = molecule("CCCCO")
    ref = mol.embed(1, seed=1, mmff=True)[0]
    emb = TorsionalEmbedding(mol, ref)
    assert {tuple(sorted(t[1:3])) for t in emb.torsions} == set(rotatable_bonds(mol))
    theta = torch.tensor([[0.3, -1.2, 2.5, -2.9]], dtype=torch.float64)
    x = emb.embed(theta)
    conf_mol = mol.with_positions(x)
    conf = conf_mol.GetConformer()
    for t, value in zip(emb.torsions, theta[0].tolist(), strict=True):
        measured = math.radians(rdMolTransforms.GetDihedralDeg(conf, *t))
        assert math.isclose(math.remainder(measured - value, 2 * math.pi), 0.0, abs_tol=1e-6)


def test_reference_torsions_reproduce_the_reference():
    """Embedding the reference's own torsions gives the reference back (up to pose)."""
    mol = molecule("CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O")
    ref = mol.embed(1, seed=2, mmff=True)[0]
    emb = TorsionalEmbedding(mol, ref)
    x = emb.embed(emb.project(ref[None]))
    energy = MMFFEnergy(mol.rdkit_mol).double()
    assert torch.allclose(energy.energy(x), energy.energy(ref[None]), atol=1e-8)


def test_torsional_energy_and_its_gradient():
    """E(theta) = MMFF(embed(theta)); autograd gradient matches finite differences."""
    mol = molecule("CCCCO")
    ref = mol.embed(1, seed=1, mmff=True)[0]
    emb = TorsionalEmbedding(mol, ref)
    energy = TorsionalEnergy(MMFFEnergy(mol.rdkit_mol), emb).double()
    assert energy.event_shape == (emb.dim,)
    theta = (2 * torch.rand(4, emb.dim, dtype=torch.float64) - 1) * math.pi
    cart = MMFFEnergy(mol.rdkit_mol).double().energy(emb.embed(theta))
    assert torch.allclose(energy.energy(theta), cart, rtol=0, atol=1e-10)
    assert torch.autograd.gradcheck(lambda t: energy.energy(t), (theta.requires_grad_(),))


def test_rigid_molecule_has_no_torsions_and_bad_reference_fails():
    mol = molecule("c1ccccc1")
    assert TorsionalEmbedding(mol, mol.embed(1, seed=0)[0]).dim == 0
    with pytest.raises(ValueError, match="reference must be finite positions"):
        TorsionalEmbedding(mol, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="TorsionalEnergy: energy of"):
        TorsionalEnergy(
            MMFFEnergy(molecule("CCO").rdkit_mol), TorsionalEmbedding(mol, mol.embed(1, seed=0)[0])
        )
