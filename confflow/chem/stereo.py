"""Stereo perception: unspecified stereo elements, isomer enumeration, stereo from 3-D.

RDKit's ``FindPotentialStereo`` lists every atom or double bond that *could* carry stereo.
:func:`unspecified_stereo` keeps the unspecified ones, drops cumulated bonds that end on a
linear atom, and reports nothing when no assignment gives two different molecules (for example
the bridgeheads of adamantane).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from confflow.chem.errors import MoleculeError

if TYPE_CHECKING:
    from confflow.chem.molecule import Molecule

__all__ = [
    "assign_stereo_from_3d",
    "enumerate_isomers",
    "has_3d",
    "rdkit_stereo_kept",
    "unspecified_stereo",
]


def has_3d(mol: Chem.Mol) -> bool:
    """True when the first conformer is 3-D (flagged so, and not flat in z)."""
    if mol.GetNumConformers() == 0:
        return False
    conf = mol.GetConformer()
    return bool(conf.Is3D()) and bool(np.abs(conf.GetPositions()[:, 2]).max() > 1e-4)


def assign_stereo_from_3d(mol: Chem.Mol) -> None:
    """Sets stereo tags from the first conformer, in place, when it is 3-D."""
    if has_3d(mol):
        Chem.AssignStereochemistryFrom3D(mol)


def enumerate_isomers(mol: Chem.Mol, max_isomers: int) -> list[Chem.Mol]:
    """Stereoisomers over the unspecified elements only, in RDKit's deterministic order.

    Args:
        mol: molecule with explicit hydrogens (conformers are dropped).
        max_isomers: largest number of isomers returned, ``>= 1``.

    Returns:
        Copies of ``mol`` with every stereo element assigned.
    """
    if max_isomers < 1:
        raise MoleculeError(f"max_isomers must be >= 1, got {max_isomers}")
    base = Chem.Mol(mol)
    base.RemoveAllConformers()
    opts = StereoEnumerationOptions(onlyUnassigned=True, maxIsomers=max_isomers, unique=True)
    out = []
    for iso in EnumerateStereoisomers(base, options=opts):
        Chem.AssignStereochemistry(iso, cleanIt=True, force=True)
        out.append(iso)
    return out


def unspecified_stereo(mol: Chem.Mol) -> tuple[str, ...]:
    """Unspecified stereo elements, e.g. ``("atom 1 (C)", "bond 3-4 (C=C)")``.

    Returns an empty tuple when every assignment gives the same molecule.
    """
    out = []
    for info in Chem.FindPotentialStereo(mol):
        if info.specified != Chem.StereoSpecified.Unspecified:
            continue
        if info.type == Chem.StereoType.Atom_Tetrahedral:
            atom = mol.GetAtomWithIdx(info.centeredOn)
            out.append(f"atom {info.centeredOn} ({atom.GetSymbol()})")
        elif info.type == Chem.StereoType.Bond_Double:
            bond = mol.GetBondWithIdx(info.centeredOn)
            ends = (bond.GetBeginAtom(), bond.GetEndAtom())
            if any(a.GetHybridization() == Chem.HybridizationType.SP for a in ends):
                continue  # cumulated bond ending on a linear atom: no E/Z
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            out.append(f"bond {i}-{j} ({ends[0].GetSymbol()}={ends[1].GetSymbol()})")
    if out and _n_distinct_isomers(mol, limit=2) < 2:
        return ()  # e.g. adamantane: the potential centres never give two different molecules
    return tuple(out)


def _n_distinct_isomers(mol: Chem.Mol, limit: int) -> int:
    """Number of distinct stereoisomers (canonical SMILES) found, counting up to ``limit``."""
    base = Chem.Mol(mol)
    base.RemoveAllConformers()
    opts = StereoEnumerationOptions(onlyUnassigned=True, maxIsomers=256)
    seen: set[str] = set()
    for iso in EnumerateStereoisomers(base, options=opts):
        seen.add(Chem.MolToSmiles(Chem.RemoveHs(iso)))
        if len(seen) >= limit:
            break
    return len(seen)


def _reference_smiles(molecule: Molecule) -> str:
    return Chem.MolToSmiles(Chem.RemoveHs(molecule.rdkit_mol))


def rdkit_stereo_kept(molecule: Molecule, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: RDKit perceives the input's stereochemistry in each conformer.

    Stereo is assigned from the 3D positions and the canonical isomeric SMILES compared with
    the input's, so every tetrahedral centre (all four neighbours) and double bond counts.

    Args:
        molecule: the molecule (its stereo is the reference).
        x: ``[B, N, 3]`` positions in nm.
    """
    want = _reference_smiles(molecule)
    mol = molecule.with_positions(x)
    out = []
    for conf in mol.GetConformers():
        one = Chem.Mol(mol, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(one)
        out.append(Chem.MolToSmiles(Chem.RemoveHs(one, sanitize=False)) == want)
    return torch.tensor(out, dtype=torch.bool)
