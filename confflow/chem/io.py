"""Writers and readers for conformer ensembles: SDF (with SD tags), PDB, XYZ and mdtraj.

Positions are ``[B, N, 3]`` tensors in nm inside confflow; the files hold Angstrom. Each writer
takes the :class:`~confflow.chem.molecule.Molecule` whose atom order the positions follow and
writes its file atomically (:mod:`confflow.atomic`).

Example:
    >>> import tempfile
    >>> mol = Molecule.from_smiles("CCO")
    >>> x = mol.embed(3, seed=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "ethanol.sdf"
    ...     write_sdf(path, mol, x, energies=torch.tensor([1.0, 2.0, 3.0]))
    ...     same, y, tags = read_sdf(path)
    >>> y.shape, tags["energy_kJ_per_mol"].tolist()
    (torch.Size([3, 9, 3]), [1.0, 2.0, 3.0])
    >>> bool((y - x).abs().max() < 1e-4)
    True
"""

from __future__ import annotations

from pathlib import Path

import mdtraj
import numpy as np
import torch
from rdkit import Chem, rdBase

from confflow.atomic import atomic_path, write_text
from confflow.chem.checks import as_positions
from confflow.chem.conformers import ANGSTROM_PER_NM
from confflow.chem.errors import MoleculeError
from confflow.chem.molecule import Molecule
from confflow.chem.topology import BOND_TYPES

__all__ = ["from_mdtraj", "read_sdf", "to_mdtraj", "write_pdb", "write_sdf", "write_xyz"]

#: SD tag names written by :func:`write_sdf` (energy in kJ/mol).
SD_TAGS = {
    "energies": "energy_kJ_per_mol",
    "log_likelihoods": "log_likelihood",
    "weights": "weight",
}


def write_sdf(
    path: str | Path,
    molecule: Molecule,
    x: torch.Tensor,
    *,
    energies: torch.Tensor | None = None,
    log_likelihoods: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> None:
    """Writes one SDF record per conformer, with optional per-conformer SD tags.

    Args:
        path: output file.
        molecule: the molecule the positions belong to.
        x: ``[B, N, 3]`` positions in nm (written in Angstrom).
        energies: ``[B]`` potential energies in kJ/mol (tag ``energy_kJ_per_mol``).
        log_likelihoods: ``[B]`` model log-densities ``log q(x)`` (tag ``log_likelihood``).
        weights: ``[B]`` importance weights (tag ``weight``).

    Raises:
        MoleculeError: wrong position shape or a tag of the wrong length.
    """
    x = as_positions(x, molecule.n_atoms, molecule.source)
    tags = {}
    for key, values in (
        ("energies", energies),
        ("log_likelihoods", log_likelihoods),
        ("weights", weights),
    ):
        if values is None:
            continue
        arr = torch.as_tensor(values).detach().cpu().double().reshape(-1)
        if arr.numel() != x.shape[0]:
            raise MoleculeError(f"{key}: expected {x.shape[0]} values, got {arr.numel()}")
        tags[SD_TAGS[key]] = arr.tolist()
    mol = molecule.with_positions(x)
    with atomic_path(path) as tmp, Chem.SDWriter(str(tmp)) as writer:
        for b, conf in enumerate(mol.GetConformers()):
            for name, values in tags.items():
                mol.SetProp(name, repr(values[b]))
            writer.write(mol, confId=conf.GetId())


def read_sdf(path: str | Path) -> tuple[Molecule, torch.Tensor, dict[str, torch.Tensor]]:
    """Reads a multi-record SDF of one molecule (as written by :func:`write_sdf`).

    Returns:
        ``(molecule, x, tags)``: the molecule of the first record, positions ``[B, N, 3]`` nm
        (float64) and every numeric SD tag present on all records as a ``[B]`` float64 tensor.

    Raises:
        MoleculeError: unreadable file, or records that are not the same molecule.
    """
    path = Path(path)
    source = f"file '{path.name}'"
    molecule = Molecule.from_sdf(path)
    with rdBase.BlockLogs():
        records = list(Chem.SDMolSupplier(str(path), removeHs=False, sanitize=False))
    frames, props = [], []
    for i, rec in enumerate(records):
        if rec is None or rec.GetNumAtoms() != molecule.n_atoms:
            raise MoleculeError(f"{source}: record {i} is unreadable or a different molecule")
        frames.append(rec.GetConformer().GetPositions() / ANGSTROM_PER_NM)
        props.append(rec.GetPropsAsDict())
    tags = {}
    for name in props[0]:
        try:
            tags[name] = torch.tensor([float(p[name]) for p in props], dtype=torch.float64)
        except (KeyError, TypeError, ValueError):
            continue
    return molecule, torch.from_numpy(np.stack(frames)), tags


def write_pdb(path: str | Path, molecule: Molecule, x: torch.Tensor) -> None:
    """Writes the conformers ``x`` ``[B, N, 3]`` nm as MODEL records of a PDB file (Angstrom)."""
    mol = molecule.with_positions(x)
    with atomic_path(path) as tmp, Chem.PDBWriter(str(tmp)) as writer:
        for conf in mol.GetConformers():
            writer.write(mol, confId=conf.GetId())


def write_xyz(path: str | Path, molecule: Molecule, x: torch.Tensor) -> None:
    """Writes a multi-frame XYZ file (Angstrom), one frame per conformer of ``x`` [B, N, 3] nm."""
    x = as_positions(x, molecule.n_atoms, molecule.source)
    lines = []
    for b, frame in enumerate(x.detach().cpu().double().numpy() * ANGSTROM_PER_NM):
        lines.append(str(molecule.n_atoms))
        lines.append(f"{molecule.smiles} conformer {b}")
        for sym, (px, py, pz) in zip(molecule.elements, frame, strict=True):
            lines.append(f"{sym:<2s} {px:16.8f} {py:16.8f} {pz:16.8f}")
    write_text(path, "\n".join(lines) + "\n")


def to_mdtraj(molecule: Molecule, x: torch.Tensor) -> mdtraj.Trajectory:
    """Converts conformers ``x`` ``[B, N, 3]`` nm to an ``mdtraj.Trajectory`` (nm, same order).

    The topology has one residue ``MOL`` with every atom, named element + index, and the
    molecule's bonds with their orders.
    """
    x = as_positions(x, molecule.n_atoms, molecule.source)
    top = mdtraj.Topology()
    chain = top.add_chain()
    residue = top.add_residue("MOL", chain)
    atoms = [
        top.add_atom(
            f"{a.GetSymbol()}{a.GetIdx()}", mdtraj.element.get_by_symbol(a.GetSymbol()), residue
        )
        for a in molecule.rdkit_mol.GetAtoms()
    ]
    orders = {bond_type: order for order, bond_type in BOND_TYPES.items()}
    for bond in molecule.rdkit_mol.GetBonds():
        top.add_bond(
            atoms[bond.GetBeginAtomIdx()],
            atoms[bond.GetEndAtomIdx()],
            order=orders.get(bond.GetBondType()),
        )
    return mdtraj.Trajectory(x.detach().cpu().numpy().astype(np.float32), top)


def from_mdtraj(traj: mdtraj.Trajectory, molecule: Molecule) -> torch.Tensor:
    """Positions ``[B, N, 3]`` float64 nm of a trajectory whose atoms follow ``molecule``'s order.

    Raises:
        MoleculeError: the trajectory's atom count or elements differ from the molecule's.
    """
    elements = tuple(a.element.symbol for a in traj.topology.atoms)
    if elements != molecule.elements:
        raise MoleculeError(
            f"mdtraj trajectory: elements/atom order differ from {molecule.source} "
            f"({traj.n_atoms} vs {molecule.n_atoms} atoms)"
        )
    return torch.from_numpy(np.asarray(traj.xyz, dtype=np.float64))
