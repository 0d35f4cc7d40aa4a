"""Conformers stored on RDKit molecules: nm tensors in confflow, Angstrom inside RDKit.

RDKit keeps each conformer's coordinates in Angstrom; confflow's positions are ``[C, N, 3]``
tensors in nm. These two functions are the only places where one becomes the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem

__all__ = ["ANGSTROM_PER_NM", "add_conformers", "conformer_positions"]

#: Angstrom per nanometre.
ANGSTROM_PER_NM = 10.0


def add_conformers(mol: Chem.Mol, x: np.ndarray) -> None:
    """Adds one 3-D conformer per frame of ``x``, in place.

    Args:
        mol: molecule with ``N`` atoms; its existing conformers are kept.
        x: ``[C, N, 3]`` positions in nm (stored in Angstrom).
    """
    for frame in np.asarray(x, dtype=np.float64) * ANGSTROM_PER_NM:
        conf = Chem.Conformer(len(frame))
        for i, p in enumerate(frame):
            conf.SetAtomPosition(i, p.tolist())
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)


def conformer_positions(mol: Chem.Mol, ids: Sequence[int] | None = None) -> torch.Tensor:
    """Positions ``[C, N, 3]`` float64 in nm of the conformers ``ids`` (default: all of them).

    Args:
        mol: molecule with at least one conformer.
        ids: conformer ids, in the order wanted.
    """
    confs = mol.GetConformers() if ids is None else [mol.GetConformer(i) for i in ids]
    arr = np.stack([c.GetPositions() for c in confs])
    return torch.from_numpy(arr / ANGSTROM_PER_NM)
