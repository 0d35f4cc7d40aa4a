"""Relaxation of torsional samples: MMFF minimisation with the free torsions held.

The torsional generator samples torsions at a frozen local structure. Minimising the MMFF
energy over every other degree of freedom at those torsions gives the *adiabatic* (relaxed)
conformer ``x*(theta)``, whose energy ``E(x*(theta))`` is a much closer approximation of the
flexible molecule's torsional free energy than the frozen-geometry energy: bond angles open
and close with the torsions as they do in molecular dynamics.

Torsions are held by RDKit's MMFF torsion constraints, a penalty ``k (dphi / deg)^2`` with
``k = 100`` kcal/mol by default, so the minimiser stops within about 1e-3 degrees of each
target. (Much stiffer restraints spoil the minimiser's conditioning: with ``k = 1e5`` it reported
convergence after removing 1% of the strain that ``k = 100`` removes.)
At that point the residual force is along the torsion gradients only, so the returned conformer
is the exact constrained minimum at *its own* torsions, which callers should read back from it.
"""

from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers, rdMolTransforms
from torch import Tensor

from confflow.chem.conformers import ANGSTROM_PER_NM

__all__ = ["relax_at_torsions"]


def relax_at_torsions(
    mol: Chem.Mol,
    x: Tensor,
    torsions: tuple[tuple[int, int, int, int], ...],
    variant: str = "MMFF94",
    force_constant: float = 100.0,
    max_iters: int = 2000,
) -> tuple[Tensor, int]:
    """Minimises the MMFF energy of each conformer with its ``torsions`` held.

    Args:
        mol: RDKit molecule with explicit hydrogens (its conformers are not used).
        x: ``[B, N, 3]`` positions in nm.
        torsions: atom quadruples ``(i, j, k, l)`` whose dihedral angles stay at their values
            in each conformer.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        force_constant: stiffness ``k`` of the torsion restraints ``k (dphi / deg)^2``, in
            kcal/mol (RDKit's convention: per squared degree).
        max_iters: iteration limit of RDKit's minimiser per conformer.

    Returns:
        ``([B, N, 3]`` relaxed positions in nm (float64, CPU), number of conformers whose
        minimisation hit ``max_iters``).

    Raises:
        ValueError: MMFF cannot type the molecule, or ``x`` has the wrong shape.
    """
    n = mol.GetNumAtoms()
    if x.dim() != 3 or tuple(x.shape[1:]) != (n, 3):
        raise ValueError(f"relax_at_torsions: expected positions [B, {n}, 3], got {tuple(x.shape)}")
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    conf = Chem.Conformer(n)
    work.AddConformer(conf, assignId=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work, mmffVariant=variant)
    if props is None:
        raise ValueError(f"relax_at_torsions: MMFF ({variant}) cannot type the molecule")
    positions = x.detach().to("cpu", torch.float64).numpy() * ANGSTROM_PER_NM
    out = np.empty_like(positions)
    unconverged = 0
    conformer = work.GetConformer()
    for b, pos in enumerate(positions):
        conformer.SetPositions(pos)
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props)
        for quad in torsions:
            angle = rdMolTransforms.GetDihedralDeg(conformer, *quad)
            ff.MMFFAddTorsionConstraint(*quad, False, angle, angle, force_constant)
        ff.Initialize()
        unconverged += ff.Minimize(maxIts=max_iters) != 0
        out[b] = np.asarray(ff.Positions()).reshape(n, 3)
    return torch.from_numpy(out / ANGSTROM_PER_NM), unconverged
