"""RDKit MMFF minimisation of stored conformers: units, energies and convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit.Chem import rdForceFieldHelpers

from confflow.chem import Molecule, MoleculeError
from confflow.chem.minimise import mmff_minimise
from confflow.energies import MMFFEnergy


def _rdkit_energies(molecule: Molecule, x) -> np.ndarray:
    """kJ/mol of ``x [C, N, 3]`` nm, by RDKit's MMFF94 directly."""
    mol = molecule.with_positions(x)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props)
    return np.array([ff.CalcEnergy((p * 10.0).ravel().tolist()) for p in x.numpy()]) * 4.184


@pytest.mark.parametrize("tight", [False, True])
def test_minimised_conformers_are_lower_and_their_energies_rdkits(tight):
    molecule = Molecule.from_smiles("CCOC(=O)C1CCNCC1")
    start = molecule.embed(4, seed=2, mmff=False)
    x, energy = mmff_minimise(molecule.with_positions(start), tight=tight)
    assert x.shape == start.shape and energy.shape == (4,)
    np.testing.assert_allclose(energy.numpy(), _rdkit_energies(molecule, x), rtol=1e-9)
    assert bool((energy.numpy() < _rdkit_energies(molecule, start)).all())
    # nm, not Angstrom: C-C bonds near 0.153 nm
    assert 0.14 < float((x[0, 0] - x[0, 1]).norm()) < 0.16


def test_tight_minimisation_reaches_a_vanishing_gradient():
    molecule = Molecule.from_smiles("CC1CCCCC1")
    mol = molecule.with_positions(molecule.embed(2, seed=1, mmff=False))
    x, _ = mmff_minimise(mol, tight=True)
    x.requires_grad_(True)
    # the analytic gradient (RDKit's CalcGrad at given positions is not reliable)
    (grad,) = torch.autograd.grad(MMFFEnergy(molecule.rdkit_mol).double().energy(x).sum(), x)
    assert float(grad.abs().max()) < 0.01  # kJ/mol/nm


def test_unparametrised_molecule_is_a_molecule_error():
    molecule = Molecule.from_smiles("C[Se]C")
    with pytest.raises(MoleculeError, match="no parameters"):
        mmff_minimise(molecule.with_positions(molecule.embed(1, seed=1, mmff=False)))
