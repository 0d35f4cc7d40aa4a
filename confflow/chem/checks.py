"""Input checks shared by the :class:`~confflow.chem.Molecule` constructors.

Each check raises :class:`~confflow.chem.MoleculeError` with a one-line message that starts
with the input's description (``"SMILES 'CCO'"``, ``"file 'x.sdf'"``) and names the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdDetermineBonds

from confflow.chem.errors import MoleculeError
from confflow.chem.stereo import assign_stereo_from_3d

__all__ = [
    "as_positions",
    "assign_bond_orders",
    "checked",
    "read_text",
    "sanitize",
]


def as_positions(x: torch.Tensor, n_atoms: int, source: str) -> torch.Tensor:
    """Checks ``x`` is ``[C, N, 3]`` (or ``[N, 3]``, promoted) and finite."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or tuple(x.shape[1:]) != (n_atoms, 3):
        raise MoleculeError(
            f"{source}: positions must be [C, {n_atoms}, 3] nm, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise MoleculeError(f"{source}: positions contain NaN or infinite values")
    return x


def read_text(path: Path, source: str) -> str:
    """The text of an input file; raises for a missing or empty file."""
    if not path.is_file():
        raise MoleculeError(f"{source}: no such file")
    text = path.read_text()
    if not text.strip():
        raise MoleculeError(f"{source}: empty input (file is empty)")
    return text


def sanitize(mol: Chem.Mol, source: str) -> None:
    """Sanitises in place; RDKit's complaint (element, valence, aromaticity) becomes one line."""
    if mol.GetNumAtoms() == 0:
        raise MoleculeError(f"{source}: empty input (no atoms)")
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several unrelated classes here
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MoleculeError(f"{source}: rejected by RDKit: {reason}") from None


def assign_bond_orders(
    mol: Chem.Mol, source: str, template_smiles: str | None, charge: int
) -> Chem.Mol:
    """Bond orders for a connectivity-only molecule with a 3-D conformer.

    From ``template_smiles`` when given (hydrogens may be missing: they are added later), else
    perceived from the geometry with the total ``charge``, which needs explicit hydrogens.
    """
    if template_smiles is not None:
        with rdBase.BlockLogs():
            template = Chem.MolFromSmiles(template_smiles)
        if template is None:
            raise MoleculeError(f"{source}: invalid template SMILES {template_smiles!r}")
        try:
            work = AllChem.AssignBondOrdersFromTemplate(template, mol)
        except ValueError as exc:
            reason = " ".join(str(exc).split())
            raise MoleculeError(f"{source}: template does not match: {reason}") from None
        sanitize(work, source)
        assign_stereo_from_3d(work)
        return work
    if all(a.GetAtomicNum() != 1 for a in mol.GetAtoms()):
        raise MoleculeError(
            f"{source}: no hydrogen atoms; bond orders can only be perceived with explicit "
            "hydrogens (add them, or give a template SMILES)"
        )
    work = Chem.Mol(mol)
    for atom in work.GetAtoms():
        atom.SetNoImplicit(True)
    try:
        with rdBase.BlockLogs():
            rdDetermineBonds.DetermineBondOrders(work, charge=int(charge))
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MoleculeError(f"{source}: could not assign bond orders: {reason}") from None
    sanitize(work, source)
    assign_stereo_from_3d(work)
    return work


def checked(mol: Chem.Mol, source: str, largest_fragment: bool, max_atoms: int) -> Chem.Mol:
    """Sanitises, adds hydrogens and runs every molecule check."""
    if mol is None or mol.GetNumAtoms() == 0:
        raise MoleculeError(f"{source}: empty input (no atoms)")
    mol = Chem.Mol(mol)
    sanitize(mol, source)
    frags = Chem.GetMolFrags(mol, asMols=False, sanitizeFrags=False)
    if len(frags) > 1:
        if not largest_fragment:
            raise MoleculeError(
                f"{source}: {len(frags)} disconnected fragments "
                "(pass largest_fragment=True to keep the largest, e.g. for salts)"
            )
        mol = _largest_fragment(mol, frags)
    radicals = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumRadicalElectrons() > 0]
    if radicals:
        raise MoleculeError(f"{source}: radical (unpaired electrons) at atom(s) {radicals}")
    has_conformer = mol.GetNumConformers() > 0
    mol = Chem.AddHs(mol, addCoords=has_conformer)
    if mol.GetNumAtoms() > max_atoms:
        raise MoleculeError(
            f"{source}: {mol.GetNumAtoms()} atoms exceed the limit max_atoms={max_atoms}"
        )
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol


def _largest_fragment(mol: Chem.Mol, frags: Sequence[Sequence[int]]) -> Chem.Mol:
    def size(frag: Sequence[int]) -> tuple[int, int]:
        heavy = sum(mol.GetAtomWithIdx(i).GetAtomicNum() > 1 for i in frag)
        return heavy, len(frag)

    keep = set(max(frags, key=size))
    rw = Chem.RWMol(mol)
    for idx in sorted(set(range(mol.GetNumAtoms())) - keep, reverse=True):
        rw.RemoveAtom(idx)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out
