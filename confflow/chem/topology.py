"""RDKit molecules from a molecular graph: elements, bonds (orders optional) and 3-D positions.

OpenMM and mdtraj topologies carry elements and bonds, but bond orders only sometimes. When
every bond has an order it is used; otherwise the orders are perceived from the positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rdkit import Chem

from confflow.chem.checks import assign_bond_orders, sanitize
from confflow.chem.conformers import add_conformers
from confflow.chem.errors import MoleculeError
from confflow.chem.stereo import assign_stereo_from_3d

__all__ = ["BOND_TYPES", "mol_from_graph"]

#: RDKit bond type of each integer bond order used by OpenMM and mdtraj topologies.
BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def mol_from_graph(
    atoms: Sequence[int],
    bonds: Sequence[tuple[int, int, int | None]],
    positions: np.ndarray,
    source: str,
    charge: int,
) -> Chem.Mol:
    """A sanitised molecule with one conformer, atoms in the given order.

    Args:
        atoms: ``N`` atomic numbers.
        bonds: ``(i, j, order)`` per bond; ``order`` 1, 2, 3 or ``None`` (unknown).
        positions: ``[N, 3]`` positions in nm.
        source: description of the input for messages.
        charge: total formal charge, used when bond orders must be perceived.

    Raises:
        MoleculeError: no atoms, positions of the wrong shape, or failed bond-order perception.
    """
    if len(atoms) == 0:
        raise MoleculeError(f"{source}: empty input (no atoms)")
    xyz = np.asarray(positions, dtype=np.float64)
    if xyz.shape != (len(atoms), 3):
        raise MoleculeError(
            f"{source}: positions must be [{len(atoms)}, 3] nm, got {tuple(xyz.shape)}"
        )
    rw = Chem.RWMol()
    for z in atoms:
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    known = all(order in BOND_TYPES for _, _, order in bonds)
    for i, j, order in bonds:
        rw.AddBond(i, j, BOND_TYPES[order] if known else Chem.BondType.SINGLE)
    mol = rw.GetMol()
    add_conformers(mol, xyz[None])
    if not known:
        return assign_bond_orders(mol, source, None, charge)
    sanitize(mol, source)
    assign_stereo_from_3d(mol)
    return mol
