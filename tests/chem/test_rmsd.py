import math

import pytest
import torch

from confflow.chem import Molecule, deduplicate, heavy_atom_rmsd


def rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_rmsd_is_zero_for_rigid_motion_and_positive_otherwise():
    mol = Molecule.from_smiles("CCCCO")
    x = mol.embed(3, seed=4)
    moved = x @ rotation(0.7).T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert heavy_atom_rmsd(mol, moved, x[0])[0] < 1e-6
    rmsd = heavy_atom_rmsd(mol, x, x[0])
    assert rmsd.shape == (3,)
    assert float(rmsd[0]) < 1e-6


def test_rmsd_is_symmetry_aware():
    mol = Molecule.from_smiles("CC(C)O")  # C0 and C2 are equivalent methyls
    x = mol.embed(1, seed=1)
    swapped = x.clone()
    swapped[:, [0, 2]] = x[:, [2, 0]]
    heavy = list(mol.heavy_atoms)
    naive = (swapped[0, heavy] - x[0, heavy]).pow(2).sum(-1).mean().sqrt()
    assert naive > 0.05
    assert float(heavy_atom_rmsd(mol, swapped, x[0])[0]) < 1e-6


def test_deduplicate_keeps_lowest_energy_of_each_cluster():
    mol = Molecule.from_smiles("OCCCCO")
    x = mol.embed(3, seed=11)
    distinct = heavy_atom_rmsd(mol, x, x[0])
    assert float(distinct[1:].min()) > 0.01
    g = torch.Generator().manual_seed(0)
    noisy = x + 1e-4 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    stack = torch.cat([x, noisy])  # conformer b and b + 3 are duplicates
    energies = torch.tensor([5.0, 1.0, 3.0, 0.5, 2.0, 4.0])
    kept = deduplicate(mol, stack, threshold=0.005, energies=energies)
    assert kept.tolist() == [3, 1, 2]
    assert deduplicate(mol, stack, threshold=0.005).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="threshold must be >= 0 nm"):
        deduplicate(mol, stack, threshold=-1.0)
