"""Symmetry-aware heavy-atom RMSD (RDKit best RMS) and RMSD-based de-duplication.

RDKit's ``GetBestRMS`` aligns the two structures optimally over every symmetry-equivalent atom
mapping of the molecular graph, so equivalent atoms (the oxygens of a carboxylate, the rings
of a biphenyl) do not inflate the RMSD. Hydrogens are removed first. Inputs and outputs are nm.
"""

from __future__ import annotations

import torch
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from confflow.chem.checks import as_positions
from confflow.chem.conformers import ANGSTROM_PER_NM
from confflow.chem.molecule import Molecule

__all__ = ["deduplicate", "heavy_atom_rmsd"]


def _heavy(molecule: Molecule, x: torch.Tensor) -> Chem.Mol:
    return Chem.RemoveHs(molecule.with_positions(x), sanitize=False)


def heavy_atom_rmsd(molecule: Molecule, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Symmetry-aware heavy-atom RMSD after optimal alignment.

    Args:
        molecule: the molecule both position sets belong to.
        x: ``[B, N, 3]`` positions in nm.
        reference: ``[N, 3]`` reference positions in nm.

    Returns:
        ``[B]`` float64 RMSD in nm.
    """
    x = as_positions(x, molecule.n_atoms, molecule.source)
    ref = _heavy(molecule, as_positions(reference, molecule.n_atoms, molecule.source)[:1])
    probe = _heavy(molecule, x)
    out = [
        rdMolAlign.GetBestRMS(probe, ref, prbId=c.GetId()) / ANGSTROM_PER_NM
        for c in probe.GetConformers()
    ]
    return torch.tensor(out, dtype=torch.float64)


def deduplicate(
    molecule: Molecule,
    x: torch.Tensor,
    threshold: float = 0.05,
    energies: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy RMSD de-duplication: keeps a conformer only if it differs from every kept one.

    Conformers are visited in order of increasing energy when ``energies`` are given (so the
    lowest-energy member of each cluster survives), else in input order.

    Args:
        molecule: the molecule.
        x: ``[B, N, 3]`` positions in nm.
        threshold: heavy-atom RMSD in nm at or below which two conformers are duplicates.
        energies: optional ``[B]`` energies (any unit) used for the visiting order.

    Returns:
        ``[K]`` long tensor: indices into ``x`` of the kept conformers, in visiting order.
    """
    if not threshold >= 0:
        raise ValueError(f"deduplicate: threshold must be >= 0 nm, got {threshold}")
    x = as_positions(x, molecule.n_atoms, molecule.source)
    order = range(x.shape[0]) if energies is None else torch.argsort(energies.reshape(-1)).tolist()
    heavy = _heavy(molecule, x)
    conf_ids = [c.GetId() for c in heavy.GetConformers()]
    kept: list[int] = []
    probe = Chem.Mol(heavy)  # aligned in place by RDKit; the reference copy stays untouched
    for b in order:
        if all(
            rdMolAlign.GetBestRMS(probe, heavy, refId=conf_ids[k], prbId=conf_ids[b])
            / ANGSTROM_PER_NM
            > threshold
            for k in kept
        ):
            kept.append(b)
    return torch.tensor(kept, dtype=torch.long)
