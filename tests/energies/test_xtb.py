"""GFN-xTB energies through tblite: equal to tblite's own Calculator, units, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from tblite.interface import Calculator

from confflow.chem import Molecule
from confflow.energies import XTBEnergy
from confflow.energies.xtb import BOHR_NM, HARTREE_KJ_MOL
from confflow.errors import InputError, RunError
from confflow.xtb import XTBLevel

ANGSTROM_PER_BOHR = 0.529177210903
#: Three molecules, neutral and charged: (SMILES, total charge).
MOLECULES = (("CCO", 0), ("CC(=O)[O-]", -1), ("C[NH3+]", 1))
N_CONFORMERS = 20


def _conformers(smiles: str, n: int) -> tuple[Molecule, np.ndarray]:
    """A molecule and ``n`` ETKDG conformers in Angstrom (not minimised: varied geometries)."""
    molecule = Molecule.from_smiles(smiles)
    mol = Chem.Mol(molecule.rdkit_mol)
    ids = AllChem.EmbedMultipleConfs(mol, numConfs=n, randomSeed=7)
    assert len(ids) == n
    return molecule, np.stack([mol.GetConformer(i).GetPositions() for i in ids])


def _reference(numbers, angstrom: np.ndarray, charge: int, solvent: str | None):
    """tblite's Calculator used directly, in atomic units."""
    energies, gradients = [], []
    for pos in angstrom:
        calc = Calculator("GFN2-xTB", np.asarray(numbers), pos / ANGSTROM_PER_BOHR, charge=charge)
        calc.set("verbosity", 0)
        if solvent is not None:
            calc.add("alpb-solvation", solvent)
        result = calc.singlepoint()
        energies.append(result.get("energy"))
        gradients.append(result.get("gradient"))
    return np.array(energies), np.stack(gradients)


@pytest.mark.parametrize("solvent", [None, "water"])
@pytest.mark.parametrize(("smiles", "charge"), MOLECULES)
def test_energies_and_gradients_equal_tblite(smiles, charge, solvent):
    molecule, angstrom = _conformers(smiles, N_CONFORMERS)
    level = "gfn2" if solvent is None else f"gfn2:{solvent}"
    energy = XTBEnergy.from_molecule(molecule, level, workers=2)
    assert energy.settings.charge == charge
    result = energy.evaluate(torch.from_numpy(angstrom / 10.0))
    assert not result.failures
    ref_energy, ref_gradient = _reference(molecule.atomic_numbers, angstrom, charge, solvent)
    hartree = result.energy.numpy() / HARTREE_KJ_MOL
    per_bohr = result.gradient.numpy() / (HARTREE_KJ_MOL / BOHR_NM)
    np.testing.assert_allclose(hartree, ref_energy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(per_bohr, ref_gradient, rtol=0, atol=1e-7)
    # the conformers differ: the test compares 20 different numbers, not one
    assert np.ptp(ref_energy) > 1e-4


def test_gradient_is_the_derivative_of_the_energy_in_nm():
    molecule, angstrom = _conformers("CCO", 1)
    energy = XTBEnergy.from_molecule(molecule, "gfn2", accuracy=0.01)
    x = torch.from_numpy(angstrom / 10.0).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(x).sum(), x)
    _, forces = energy.energy_and_forces(x.detach())
    torch.testing.assert_close(grad, -forces)
    step = 1e-5  # nm
    for atom, axis in ((0, 0), (2, 1), (8, 2)):
        shift = torch.zeros_like(x)
        shift[0, atom, axis] = step
        with torch.no_grad():
            diff = (energy.energy(x + shift) - energy.energy(x - shift)) / (2 * step)
        assert float(diff[0]) == pytest.approx(float(grad[0, atom, axis]), rel=1e-4, abs=1e-3)


def test_gfn1_and_gbsa_levels_differ_from_gfn2():
    molecule, angstrom = _conformers("CCO", 1)
    x = torch.from_numpy(angstrom / 10.0)
    values = {
        name: float(XTBEnergy.from_molecule(molecule, name).energy(x)[0])
        for name in ("gfn2", "gfn1", "gfn2:water", "gfn2:gbsa:water")
    }
    assert len({round(v, 3) for v in values.values()}) == 4
    # solvation stabilises ethanol by a few kJ/mol, not by hundreds
    assert 0.0 < values["gfn2"] - values["gfn2:water"] < 60.0


def test_open_shell_with_its_unpaired_electron():
    mol = Chem.AddHs(Chem.MolFromSmiles("[CH3]"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    x = torch.from_numpy(mol.GetConformer().GetPositions() / 10.0)[None]
    energy = XTBEnergy((6, 1, 1, 1), "gfn2", uhf=1)
    assert torch.isfinite(energy.energy(x)).all()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("gfn3", "unknown method"),
        ("gfn2:pcm:water", "expected METHOD"),
        ("gfn2:notasolvent", "notasolvent|solvent"),
    ],
)
def test_bad_levels_are_input_errors(spec, match):
    with pytest.raises(InputError, match=match):
        XTBEnergy((8, 1, 1), spec)


def test_element_without_parameters_is_named():
    with pytest.raises(InputError, match="87"):
        XTBEnergy((87, 1), "gfn2")


def test_impossible_charge_and_spin_is_refused():
    with pytest.raises(InputError, match="7 electrons"):
        XTBEnergy((7,), "gfn2", charge=0, uhf=0)  # a nitrogen atom has 7 electrons
    with pytest.raises(InputError, match="unpaired"):
        XTBEnergy((6, 1, 1, 1), "gfn2", uhf=0)  # methyl without its radical electron


def test_scf_failure_is_recorded_per_conformer_and_raised_by_energy():
    molecule, angstrom = _conformers("CCO", 3)
    energy = XTBEnergy.from_molecule(molecule, "gfn2", max_iter=1)
    x = torch.from_numpy(angstrom / 10.0)
    result = energy.evaluate(x)
    assert sorted(result.failures) == [0, 1, 2]
    assert "SCF" in result.failures[0]
    assert not result.ok.any()
    assert torch.isnan(result.energy).all()
    with pytest.raises(RunError, match=r"conformer 0: .*SCF.*2 more"):
        energy.energy(x)


def test_level_names_round_trip():
    for spec in ("gfn2", "gfn1", "gfn2:water", "gfn2:gbsa:water"):
        assert XTBLevel.parse(spec).name == spec
    assert XTBLevel.parse("GFN2:Water") == XTBLevel("gfn2", "water")
