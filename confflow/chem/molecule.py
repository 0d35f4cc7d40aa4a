"""The :class:`Molecule`: an RDKit molecule with explicit hydrogens, checked once at the edge.

Atom order is stable and documented:

* from SMILES, heavy atoms keep the order in which they are written and hydrogens are appended
  after them (each heavy atom's hydrogens together, in heavy-atom order), as ``Chem.AddHs`` does;
* from files (SDF/MOL, PDB), topologies (OpenMM, mdtraj) and RDKit molecules that already carry
  explicit hydrogens, the input order is preserved exactly.

Positions are in nm everywhere inside confflow; Angstrom appears only in files.

Example:
    >>> mol = Molecule.from_smiles("C[C@H](N)C(=O)O")
    >>> mol.n_atoms, mol.heavy_atoms[:3]
    (13, (0, 1, 2))
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from confflow.chem.checks import (
    as_positions,
    assign_bond_orders,
    checked,
    read_text,
    sanitize,
)
from confflow.chem.conformers import ANGSTROM_PER_NM, add_conformers, conformer_positions
from confflow.chem.errors import MoleculeError, StereoWarning
from confflow.chem.stereo import (
    assign_stereo_from_3d,
    enumerate_isomers,
    has_3d,
    unspecified_stereo,
)
from confflow.chem.topology import mol_from_graph

if TYPE_CHECKING:
    import mdtraj
    import openmm

__all__ = ["ANGSTROM_PER_NM", "DEFAULT_MAX_ATOMS", "Molecule", "StereoPolicy"]

#: Largest number of atoms (hydrogens included) accepted unless the caller raises the limit.
DEFAULT_MAX_ATOMS = 300

#: What to do with unspecified stereo: warn (default), raise, or pick the first isomer.
StereoPolicy = Literal["warn", "error", "first"]


class Molecule:
    """A checked molecule with explicit hydrogens, its stereo and optional conformers.

    Build one with a ``from_*`` constructor; the constructor checks the input once (empty,
    fragments, valences, radicals, atom limit) and raises :class:`MoleculeError` with a
    one-line message naming the input.

    Args:
        mol: RDKit molecule; hydrogens are added if missing.
        source: short description of the input for messages, e.g. ``"SMILES 'CCO'"``.
        largest_fragment: keep the largest fragment (by heavy atoms) of a salt or mixture
            instead of raising.
        max_atoms: largest accepted number of atoms, hydrogens included.
        stereo: ``"warn"`` (warn about unspecified stereo), ``"error"`` (raise) or ``"first"``
            (pick the first stereoisomer that :meth:`stereoisomers` enumerates).

    Attributes:
        rdkit_mol: the RDKit molecule with explicit hydrogens (conformers, if any, in Angstrom).
        source: description of the input.
        unspecified_stereo: human-readable descriptions of unspecified stereo elements, e.g.
            ``"atom 1 (C)"`` or ``"bond 3-4 (C=C)"``; empty when everything is specified.
    """

    def __init__(
        self,
        mol: Chem.Mol,
        source: str = "RDKit mol",
        *,
        largest_fragment: bool = False,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        stereo: StereoPolicy = "warn",
    ) -> None:
        if stereo not in ("warn", "error", "first"):
            raise ValueError(f"{source}: stereo must be 'warn', 'error' or 'first', got {stereo!r}")
        mol = checked(mol, source, largest_fragment, max_atoms)
        self.source = source
        self.max_atoms = max_atoms
        self.rdkit_mol = mol
        self.unspecified_stereo = unspecified_stereo(mol)
        if self.unspecified_stereo:
            listed = ", ".join(self.unspecified_stereo)
            if stereo == "error":
                raise MoleculeError(f"{source}: unspecified stereo at {listed}")
            if stereo == "first":
                self.rdkit_mol = self.stereoisomers(max_isomers=1)[0].rdkit_mol
                self.unspecified_stereo = ()
            else:
                warnings.warn(
                    f"{source}: unspecified stereo at {listed}; conformers will mix isomers "
                    "(use stereo='first' or Molecule.stereoisomers())",
                    StereoWarning,
                    stacklevel=3,
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_smiles(
        cls,
        smiles: str,
        *,
        largest_fragment: bool = False,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        stereo: StereoPolicy = "warn",
    ) -> Molecule:
        """Parses a SMILES string; hydrogens are appended after the heavy atoms.

        Raises:
            MoleculeError: empty or unparsable SMILES, rejected element or valence, radicals,
                several fragments (unless ``largest_fragment``), too many atoms.
        """
        source = f"SMILES {smiles!r}"
        if not isinstance(smiles, str) or not smiles.strip():
            raise MoleculeError(f"{source}: empty input")
        with rdBase.BlockLogs():
            raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            raise MoleculeError(f"{source}: invalid SMILES (RDKit could not parse it)")
        return cls(
            raw, source, largest_fragment=largest_fragment, max_atoms=max_atoms, stereo=stereo
        )

    @classmethod
    def from_rdkit(
        cls, mol: Chem.Mol, *, largest_fragment: bool = False, max_atoms: int = DEFAULT_MAX_ATOMS
    ) -> Molecule:
        """Wraps an RDKit molecule (copied); stereo is taken from 3-D coordinates if present."""
        if not isinstance(mol, Chem.Mol):
            raise MoleculeError(f"RDKit mol: expected rdkit.Chem.Mol, got {type(mol).__name__}")
        mol = Chem.Mol(mol)
        assign_stereo_from_3d(mol)
        return cls(mol, "RDKit mol", largest_fragment=largest_fragment, max_atoms=max_atoms)

    @classmethod
    def from_sdf(
        cls,
        path: str | Path,
        *,
        require_3d: bool = True,
        largest_fragment: bool = False,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ) -> Molecule:
        """Reads the first record of an SDF/MOL file, keeping its atom order and hydrogens.

        Args:
            path: ``.sdf`` or ``.mol`` file (coordinates in Angstrom).
            require_3d: raise if the record has no 3-D coordinates (2-D depiction or all z = 0).
            largest_fragment: keep the largest fragment instead of raising on several.
            max_atoms: largest accepted number of atoms, hydrogens included.

        Raises:
            MoleculeError: missing/empty/unreadable file, no 3-D coordinates when required, or
                any molecule check.
        """
        path = Path(path)
        source = f"file '{path.name}'"
        text = read_text(path, source)
        with rdBase.BlockLogs():
            mol = Chem.MolFromMolBlock(text.split("$$$$")[0], removeHs=False, sanitize=False)
        if mol is None:
            raise MoleculeError(f"{source}: not a readable MOL/SDF record")
        if require_3d and not has_3d(mol):
            raise MoleculeError(f"{source}: record has no 3-D coordinates (2-D or flat z = 0)")
        sanitize(mol, source)
        if has_3d(mol):
            assign_stereo_from_3d(mol)
        return cls(mol, source, largest_fragment=largest_fragment, max_atoms=max_atoms)

    @classmethod
    def from_pdb(
        cls,
        path: str | Path,
        *,
        template_smiles: str | None = None,
        charge: int = 0,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ) -> Molecule:
        """Reads a PDB file with explicit hydrogens; atom order of the file is kept.

        PDB files carry no bond orders: they come from ``template_smiles`` when given, else
        they are perceived from the 3-D coordinates with the total ``charge``.

        Raises:
            MoleculeError: missing/unreadable file, failed bond-order assignment, or any
                molecule check.
        """
        path = Path(path)
        source = f"file '{path.name}'"
        text = read_text(path, source)
        with rdBase.BlockLogs():
            mol = Chem.MolFromPDBBlock(text, removeHs=False, sanitize=False)
        if mol is None or mol.GetNumAtoms() == 0:
            raise MoleculeError(f"{source}: no atoms could be read from the PDB")
        mol = assign_bond_orders(mol, source, template_smiles, charge)
        return cls(mol, source, max_atoms=max_atoms)

    @classmethod
    def from_openmm(
        cls,
        topology: openmm.app.Topology,
        positions: openmm.unit.Quantity | np.ndarray,
        *,
        charge: int = 0,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ) -> Molecule:
        """Builds a molecule from an OpenMM ``Topology`` and positions (nm), in topology order.

        Bond orders are taken from the topology where every bond has one, else perceived from
        the positions with the total ``charge``.

        Args:
            topology: ``openmm.app.Topology`` with bonds.
            positions: ``[N, 3]`` nm, an OpenMM ``Quantity`` or an array in nm.
            charge: total formal charge, used when bond orders must be perceived.
            max_atoms: largest accepted number of atoms, hydrogens included.
        """
        from openmm import unit

        if unit.is_quantity(positions):
            positions = positions.value_in_unit(unit.nanometer)
        atoms = [a.element.atomic_number for a in topology.atoms()]
        bonds = [(b[0].index, b[1].index, b.order) for b in topology.bonds()]
        source = "OpenMM topology"
        return cls(
            mol_from_graph(atoms, bonds, positions, source, charge), source, max_atoms=max_atoms
        )

    @classmethod
    def from_mdtraj(
        cls,
        topology: mdtraj.Topology,
        positions: np.ndarray,
        *,
        charge: int = 0,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ) -> Molecule:
        """Builds a molecule from an ``mdtraj.Topology`` and positions ``[N, 3]`` in nm.

        Same bond-order rule as :meth:`from_openmm`; atom order is the topology's.
        """
        atoms = [a.element.atomic_number for a in topology.atoms]
        bonds = [(b[0].index, b[1].index, b.order) for b in topology.bonds]
        source = "mdtraj topology"
        return cls(
            mol_from_graph(atoms, bonds, positions, source, charge), source, max_atoms=max_atoms
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        """Number of atoms ``N``, hydrogens included."""
        return self.rdkit_mol.GetNumAtoms()

    @property
    def elements(self) -> tuple[str, ...]:
        """Element symbols ``[N]`` in atom order."""
        return tuple(a.GetSymbol() for a in self.rdkit_mol.GetAtoms())

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        """Atomic numbers ``[N]`` in atom order."""
        return tuple(a.GetAtomicNum() for a in self.rdkit_mol.GetAtoms())

    @property
    def heavy_atoms(self) -> tuple[int, ...]:
        """Indices of the non-hydrogen atoms."""
        return tuple(a.GetIdx() for a in self.rdkit_mol.GetAtoms() if a.GetAtomicNum() > 1)

    @property
    def bonds(self) -> tuple[tuple[int, int], ...]:
        """Bonded atom pairs ``(i, j)`` with ``i < j``, in RDKit bond order."""
        out = []
        for b in self.rdkit_mol.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            out.append((min(i, j), max(i, j)))
        return tuple(out)

    @property
    def formal_charge(self) -> int:
        """Total formal charge (elementary charges)."""
        return Chem.GetFormalCharge(self.rdkit_mol)

    @property
    def smiles(self) -> str:
        """Canonical isomeric SMILES without explicit hydrogens."""
        return Chem.MolToSmiles(Chem.RemoveHs(self.rdkit_mol))

    @property
    def positions(self) -> torch.Tensor | None:
        """Conformers stored on the RDKit molecule, ``[C, N, 3]`` float64 nm, or ``None``."""
        if self.rdkit_mol.GetNumConformers() == 0:
            return None
        return conformer_positions(self.rdkit_mol)

    def __repr__(self) -> str:
        return f"Molecule({self.smiles!r}, n_atoms={self.n_atoms})"

    # ------------------------------------------------------------------ stereo
    def stereoisomers(self, max_isomers: int = 32) -> list[Molecule]:
        """Enumerates the isomers of the unspecified stereo elements (specified ones are kept).

        Args:
            max_isomers: largest number of isomers returned (deterministic order).

        Returns:
            Molecules with every stereo element specified; ``[self]`` when nothing is open.
        """
        if not self.unspecified_stereo:
            return [self]
        return [
            Molecule(iso, f"{self.source} isomer", max_atoms=self.max_atoms)
            for iso in enumerate_isomers(self.rdkit_mol, max_isomers)
        ]

    # ------------------------------------------------------------------ conformers
    def embed(
        self, n_conformers: int, *, seed: int = 0, num_threads: int = 0, mmff: bool = False
    ) -> torch.Tensor:
        """Seed conformers with ETKDGv3 (seeded, multi-threaded), optionally MMFF94-minimised.

        Args:
            n_conformers: number of conformers ``C``.
            seed: random seed >= 0 (same seed, same conformers; RDKit gets ``seed + 1``).
            num_threads: worker threads; 0 uses every core RDKit sees.
            mmff: minimise each conformer with MMFF94 (RDKit) after embedding.

        Returns:
            ``[C, N, 3]`` float64 positions in nm, in this molecule's atom order.

        Raises:
            MoleculeError: ETKDG failed, or MMFF94 has no parameters for the molecule.
        """
        if n_conformers < 1:
            raise ValueError(f"{self.source}: n_conformers must be >= 1, got {n_conformers}")
        work = Chem.Mol(self.rdkit_mol)
        work.RemoveAllConformers()
        params = rdDistGeom.ETKDGv3()
        # RDKit's randomSeed 0 embeds every conformer from the same seed (identical copies)
        params.randomSeed = int(seed) + 1
        params.numThreads = int(num_threads)
        ids = list(rdDistGeom.EmbedMultipleConfs(work, n_conformers, params))
        if len(ids) < n_conformers:
            params.useRandomCoords = True
            work.RemoveAllConformers()
            ids = list(rdDistGeom.EmbedMultipleConfs(work, n_conformers, params))
        if len(ids) < n_conformers:
            raise MoleculeError(
                f"{self.source}: ETKDG embedded only {len(ids)} of {n_conformers} conformers"
            )
        if mmff:
            if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(work):
                raise MoleculeError(f"{self.source}: MMFF94 has no parameters for this molecule")
            rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
                work, numThreads=int(num_threads), maxIters=2000
            )
        return conformer_positions(work, ids)

    def with_positions(self, x: torch.Tensor) -> Chem.Mol:
        """A copy of the RDKit molecule with conformers ``x`` [C, N, 3] nm (stored in Angstrom)."""
        x = as_positions(x, self.n_atoms, self.source)
        mol = Chem.Mol(self.rdkit_mol)
        mol.RemoveAllConformers()
        add_conformers(mol, x.detach().cpu().double().numpy())
        return mol
