"""Checks made before MMFF parameters are read: the molecule, the options, MMFF's atom typing.

Bad options or a molecule with implicit hydrogens raise ``ValueError``; a molecule RDKit's MMFF
cannot type raises :class:`MMFFTypingError`, naming the untyped atoms by element and index.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from rdkit.ForceField.rdForceField import MMFFMolProperties

from confflow.errors import InputError

__all__ = ["MMFFTypingError", "check_options", "typed_properties"]

_TYPE_LINE = re.compile(r"^\s*([A-Za-z]+)\s+#(\d+)\s+(\d+)\s")


class MMFFTypingError(InputError):
    """RDKit's MMFF cannot assign atom types (or parameters) to some atoms of the molecule."""


def check_options(
    mol: Chem.Mol,
    variant: str,
    dielectric_model: str,
    dielectric_constant: float,
    nonbonded_threshold: float | None,
) -> None:
    """Raises ``ValueError`` unless the molecule and the options suit MMFF's parameters.

    Args:
        mol: must be an RDKit molecule with atoms and explicit hydrogens only.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        dielectric_model: ``"constant"`` or ``"distance"``.
        dielectric_constant: must be positive.
        nonbonded_threshold: ``None`` or positive (nm); needs a conformer of ``mol``.
    """
    if not isinstance(mol, Chem.Mol):
        raise ValueError(f"mol: expected an RDKit Chem.Mol, got {type(mol).__name__}")
    if mol.GetNumAtoms() == 0:
        raise ValueError("mol: the molecule has no atoms")
    implicit = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumImplicitHs() > 0]
    if implicit:
        raise ValueError(
            f"mol: atoms {implicit} carry implicit hydrogens; add them with Chem.AddHs first"
        )
    if variant not in ("MMFF94", "MMFF94s"):
        raise ValueError(f"variant: expected 'MMFF94' or 'MMFF94s', got {variant!r}")
    if dielectric_model not in ("constant", "distance"):
        raise ValueError(
            f"dielectric_model: expected 'constant' or 'distance', got {dielectric_model!r}"
        )
    if not dielectric_constant > 0:
        raise ValueError(f"dielectric_constant: must be positive, got {dielectric_constant}")
    if nonbonded_threshold is not None:
        if not nonbonded_threshold > 0:
            raise ValueError(
                f"nonbonded_threshold: must be positive (nm), got {nonbonded_threshold}"
            )
        if mol.GetNumConformers() == 0:
            raise ValueError("nonbonded_threshold: needs a conformer of mol, which has none")


def typed_properties(work: Chem.Mol, mol: Chem.Mol, variant: str) -> MMFFMolProperties:
    """RDKit's MMFF properties of ``work``, which must have every MMFF parameter.

    Args:
        work: the copy of ``mol`` the parameters are read from (MMFF aromaticity is set on it).
        mol: the caller's molecule, left untouched; a fresh copy is typed again, verbosely, to
            name the atoms MMFF cannot type.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.

    Raises:
        MMFFTypingError: atoms MMFF cannot type, or missing parameters.
    """
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work, mmffVariant=variant)
    if props is None:
        bad = _untypable_atoms(Chem.Mol(mol), variant)
        names = ", ".join(bad) if bad else "unknown atoms"
        raise MMFFTypingError(f"mol: MMFF cannot type atoms {names}")
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(work):
        raise MMFFTypingError("mol: MMFF parameters are missing for some terms of this molecule")
    return props


def _untypable_atoms(mol: Chem.Mol, variant: str) -> list[str]:
    """Atoms left with MMFF type 0, read from RDKit's verbose typing table.

    RDKit's C++ code prints that table (at high verbosity) to a standard stream, so file
    descriptors 1 and 2 are both pointed at a temporary file while it runs.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+") as capture:
        for fd in saved:
            os.dup2(capture.fileno(), fd)
        try:
            rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant, mmffVerbosity=2)
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        capture.seek(0)
        text = capture.read()
    bad = []
    for line in text.splitlines():
        match = _TYPE_LINE.match(line)
        if match and int(match.group(3)) == 0:
            bad.append(f"{match.group(1)}{int(match.group(2)) - 1}")
    return bad
