"""Stage 1: parse and validate the input molecule for MMFF and the flow.

Errors are :class:`~confflow.generate.config.GenerateError` (a ``ValueError``) with one line
naming the input and the cause: invalid SMILES, an element MMFF94 does not cover, several
fragments without ``largest_fragment``, or a molecule MMFF94 cannot type.
"""

from __future__ import annotations

from rdkit.Chem import rdForceFieldHelpers

from confflow.chem import Molecule
from confflow.coordinates import rotatable_bonds
from confflow.generate.config import GenerateError

__all__ = ["SUPPORTED_ELEMENTS", "load_molecule", "rotatable_torsions"]

#: Elements of organic molecules that MMFF94 parameterises (covalently bound).
SUPPORTED_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I"})


def load_molecule(smiles: str, largest_fragment: bool = False) -> Molecule:
    """Parses ``smiles`` into a checked molecule with explicit hydrogens and fixed stereo.

    Stereo left unspecified is fixed to the first enumerated isomer (the same choice the MD
    stage and the model's target make), so every stage sees the same molecule.

    Args:
        smiles: the input SMILES.
        largest_fragment: keep the largest fragment of a salt or mixture instead of failing.

    Returns:
        The :class:`~confflow.chem.Molecule`.

    Raises:
        GenerateError: invalid SMILES, unsupported element, disconnected input, fewer than
            four atoms, or a molecule MMFF94 cannot type.
    """
    try:
        molecule = Molecule.from_smiles(smiles, largest_fragment=largest_fragment, stereo="first")
    except ValueError as err:
        message = str(err)
        if "disconnected" in message:
            message = message.replace("largest_fragment=True", "--largest-fragment")
        raise GenerateError(message) from err
    source = molecule.source
    unsupported = sorted(set(molecule.elements) - SUPPORTED_ELEMENTS)
    if unsupported:
        raise GenerateError(
            f"{source}: unsupported element(s) {', '.join(unsupported)} "
            f"(MMFF94 covers {', '.join(sorted(SUPPORTED_ELEMENTS))})"
        )
    if molecule.n_atoms < 4:
        raise GenerateError(f"{source}: {molecule.n_atoms} atoms; need at least 4 for a torsion")
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(molecule.rdkit_mol):
        raise GenerateError(f"{source}: MMFF94 cannot type this molecule (missing parameters)")
    return molecule


def rotatable_torsions(molecule: Molecule) -> list[tuple[int, int, int, int]]:
    """One heavy-atom torsion ``(a, b, c, d)`` per rotatable bond ``b-c`` (atom indices).

    Rotatable bonds are those of :func:`~confflow.coordinates.rotatable_bonds`.

    ``a`` and ``d`` are the lowest-index heavy neighbours; bonds whose ends have no other
    heavy neighbour (e.g. methyl or hydroxyl rotors) are skipped.
    """
    mol = molecule.rdkit_mol
    torsions = []
    for b, c in rotatable_bonds(molecule):
        ends = []
        for atom, other in ((b, c), (c, b)):
            heavy = [
                n.GetIdx()
                for n in mol.GetAtomWithIdx(atom).GetNeighbors()
                if n.GetAtomicNum() > 1 and n.GetIdx() != other
            ]
            ends.append(min(heavy) if heavy else None)
        if None not in ends:
            torsions.append((ends[0], b, c, ends[1]))
    return torsions
