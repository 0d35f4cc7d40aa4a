"""Molecules: parsing and checks, stereo, ETKDG conformers, file formats, symmetry-aware RMSD.

Positions are nm inside confflow; Angstrom only in SDF/PDB/XYZ files.
"""

from confflow.chem.errors import MoleculeError, StereoWarning
from confflow.chem.io import from_mdtraj, read_sdf, to_mdtraj, write_pdb, write_sdf, write_xyz
from confflow.chem.molecule import DEFAULT_MAX_ATOMS, Molecule
from confflow.chem.rmsd import deduplicate, heavy_atom_rmsd

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "Molecule",
    "MoleculeError",
    "StereoWarning",
    "deduplicate",
    "from_mdtraj",
    "heavy_atom_rmsd",
    "read_sdf",
    "to_mdtraj",
    "write_pdb",
    "write_sdf",
    "write_xyz",
]
