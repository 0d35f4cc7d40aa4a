"""MMFF94 as an openmm.System against RDKit's MMFF and the torch MMFFEnergy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import unit
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from confflow.energies.mmff import MMFFEnergy
from confflow.energies.mmff_openmm import (
    MMFF_FORCE_GROUPS,
    mmff_openmm_system,
    mmff_parameters_to_system,
)
from confflow.energies.mmff_params import mmff_parameters

SUBSET = Path(__file__).resolve().parents[1] / "data" / "mmff94"
KCAL = 4.184
E_TOL = 1e-3  # kcal/mol
G_TOL = 1e-3  # kcal/mol/A


def _subset(variant: str = "MMFF94") -> list[Chem.Mol]:
    """The shipped records of the MMFF94 validation suite (see tests/data/mmff94/README.md)."""
    path = SUBSET / f"{variant}_subset.sdf"
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None]


def _openmm_eval(
    system: openmm.System, pos_nm: np.ndarray, platform: str = "Reference"
) -> tuple[float, np.ndarray]:
    """Energy in kJ/mol and forces [N, 3] in kJ/mol/nm of one configuration."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
    )
    context.setPositions(pos_nm)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


def _rdkit_eval(mol: Chem.Mol, pos_a: np.ndarray, variant: str = "MMFF94", distance=False):
    ref = Chem.Mol(mol)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(ref, mmffVariant=variant)
    props.SetMMFFDielectricModel(2 if distance else 1)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(ref, props)
    flat = pos_a.ravel().tolist()
    return ff.CalcEnergy(flat), np.asarray(ff.CalcGrad(flat)).reshape(pos_a.shape)


def _check(mol, system, pos_a, variant="MMFF94", distance=False):
    energy, forces = _openmm_eval(system, pos_a / 10.0)
    e_ref, g_ref = _rdkit_eval(mol, pos_a, variant, distance)
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else Chem.MolToSmiles(mol)
    de = abs(energy / KCAL - e_ref)
    dg = np.abs(-forces / KCAL / 10.0 - g_ref).max()
    assert de <= E_TOL, f"{name}: OpenMM energy differs from RDKit by {de:.2e} kcal/mol"
    assert dg <= G_TOL, f"{name}: OpenMM forces differ from RDKit by {dg:.2e} kcal/mol/A"


def test_system_matches_rdkit_on_suite_molecules():
    rng = np.random.default_rng(0)
    mols = _subset()[::2]
    assert len(mols) >= 50
    for mol in mols:
        system = mmff_openmm_system(mol)
        assert system.getNumConstraints() == 0
        base = mol.GetConformer().GetPositions()
        _check(mol, system, base)
        _check(mol, system, base + rng.normal(scale=0.1, size=base.shape))


def test_mmff94s_and_distance_dielectric_match_rdkit():
    for mol in _subset("MMFF94s")[::3]:
        pos = mol.GetConformer().GetPositions()
        _check(mol, mmff_openmm_system(mol, variant="MMFF94s"), pos, variant="MMFF94s")
        system = mmff_openmm_system(mol, dielectric_model="distance")
        _check(mol, system, pos, distance=True)


def test_force_groups_match_torch_terms():
    for mol in _subset()[::8]:
        pos = mol.GetConformer().GetPositions() / 10.0
        context = openmm.Context(
            mmff_openmm_system(mol),
            openmm.VerletIntegrator(0.001),
            openmm.Platform.getPlatformByName("Reference"),
        )
        context.setPositions(pos)
        terms = MMFFEnergy(mol).term_energies(torch.as_tensor(pos[None]))
        expected = {name: float(terms[name][0]) for name in MMFF_FORCE_GROUPS if name in terms}
        expected["nonbonded"] = float(terms["vdw"][0] + terms["electrostatic"][0])
        for name, group in MMFF_FORCE_GROUPS.items():
            state = context.getState(getEnergy=True, groups={group})
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            assert abs(energy - expected[name]) <= 1e-6 * max(1.0, abs(energy)) + 1e-8, name


def _ligand() -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    AllChem.EmbedMolecule(mol, randomSeed=11)
    return mol


def test_molecular_dynamics_runs_and_stays_bonded():
    mol = _ligand()
    system = mmff_openmm_system(mol)
    integrator = openmm.LangevinMiddleIntegrator(300.0, 5.0, 0.0005)
    integrator.setRandomNumberSeed(3)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.GetConformer().GetPositions() / 10.0)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    integrator.step(500)
    state = context.getState(getEnergy=True, getPositions=True)
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(energy)
    params = mmff_parameters(mol)
    lengths = np.linalg.norm(pos[params.bond_idx[:, 0]] - pos[params.bond_idx[:, 1]], axis=1)
    assert np.abs(10.0 * lengths - params.bond_r0).max() < 0.3, "a bond stretched beyond 0.3 A"
    ref, _ = _rdkit_eval(mol, 10.0 * np.asarray(pos))
    assert abs(energy / KCAL - ref) <= E_TOL


@pytest.mark.parametrize("platform", ["CPU", "CUDA", "OpenCL"])
def test_other_platforms_agree_with_reference(platform):
    names = [
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    ]
    if platform not in names:
        pytest.skip(f"OpenMM platform {platform} is not available")
    mol = _ligand()
    system = mmff_openmm_system(mol)
    pos = mol.GetConformer().GetPositions() / 10.0
    ref, f_ref = _openmm_eval(system, pos)
    try:
        energy, forces = _openmm_eval(system, pos, platform=platform)
    except openmm.OpenMMException as exc:
        pytest.skip(f"OpenMM platform {platform} cannot start here: {exc}")
    # single/mixed precision platforms: relative accuracy of float32
    assert abs(energy - ref) <= 1e-5 * max(1.0, abs(ref)) + 1e-3
    assert np.abs(forces - f_ref).max() <= 1e-4 * np.abs(f_ref).max() + 1e-2


def test_masses_are_checked():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    params = mmff_parameters(mol)
    with pytest.raises(ValueError, match="masses: expected 9 positive masses"):
        mmff_parameters_to_system(params, [12.0] * 8)
    system = mmff_parameters_to_system(params, [a.GetMass() for a in mol.GetAtoms()])
    assert system.getNumParticles() == 9
    assert system.getNumForces() == len(MMFF_FORCE_GROUPS)
