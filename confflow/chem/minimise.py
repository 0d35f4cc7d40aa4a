"""RDKit MMFF force fields and minimisation of stored conformers.

Positions come back in nm and energies in kJ/mol; RDKit works in Angstrom and kcal/mol.
"""

from __future__ import annotations

import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from torch import Tensor

from confflow.chem.conformers import ANGSTROM_PER_NM
from confflow.chem.errors import MoleculeError

__all__ = ["mmff_force_field", "mmff_minimise"]

#: kJ per kcal (thermochemical calorie).
KJ_PER_KCAL = 4.184


def mmff_force_field(mol: Chem.Mol, variant: str = "MMFF94", conf_id: int = -1):
    """RDKit's MMFF force field of one conformer of ``mol``, initialised.

    Raises:
        MoleculeError: the variant has no parameters for the molecule.
    """
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    if props is None:
        raise MoleculeError(f"{variant} has no parameters for this molecule")
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=conf_id)
    ff.Initialize()  # without it, CalcGrad(positions) is not the gradient at those positions
    return ff


def mmff_minimise(
    mol: Chem.Mol, variant: str = "MMFF94", tight: bool = False
) -> tuple[Tensor, Tensor]:
    """Minimises every conformer of ``mol`` with RDKit's MMFF (the molecule is not changed).

    Args:
        mol: molecule with ``C`` conformers of ``N`` atoms.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        tight: minimise to a gradient of 1e-7 (restarting until converged, for Hessians at the
            minimum) instead of RDKit's default tolerances within 2,000 iterations.

    Returns:
        ``(x, energy)``: ``[C, N, 3]`` float64 positions in nm and ``[C]`` float64 energies in
        kJ/mol.

    Raises:
        MoleculeError: the variant has no parameters for the molecule.
    """
    positions, energies = [], []
    for conf in mol.GetConformers():
        ff = mmff_force_field(mol, variant, conf.GetId())
        if tight:
            for _ in range(20):
                if ff.Minimize(maxIts=10000, forceTol=1e-7, energyTol=1e-12) == 0:
                    break
        else:
            ff.Minimize(maxIts=2000)
        positions.append(torch.tensor(ff.Positions(), dtype=torch.float64).view(-1, 3))
        energies.append(ff.CalcEnergy())
    x = torch.stack(positions) / ANGSTROM_PER_NM
    return x, torch.tensor(energies, dtype=torch.float64) * KJ_PER_KCAL
