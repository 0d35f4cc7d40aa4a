"""What MD runs on: an :class:`openmm.System` with its topology, start and labels.

Three ways in:

* :meth:`MDSystem.from_openmm` — any ``openmm.System`` with positions and a topology;
* :func:`named_system` — the alanine dipeptide reference systems of
  :mod:`confflow.energies.systems` (``"aldp"``, ``"aldp-ff96"``, ``"aldp-vacuum"``);
* :func:`smiles_system` — any molecule through the MMFF94 ``openmm.System`` of
  :mod:`confflow.energies.mmff_openmm`, started from an ETKDG conformer minimised with MMFF94.
"""

from __future__ import annotations

from dataclasses import dataclass

import mdtraj
import numpy as np
import openmm
from openmm import app

from confflow.md.config import MDInputError

__all__ = ["NAMED_SYSTEMS", "MDSystem", "named_system", "resolve_system", "smiles_system"]

#: Names accepted by :func:`named_system`, with their force fields.
NAMED_SYSTEMS: dict[str, str] = {
    "aldp": "Amber99SB-ILDN + amber99_obc.xml (GBSAOBCForce, OBC2), no constraints",
    "aldp-ff96": "Amber ff96 + OBC1 (CustomGBForce), openmmtools AlanineDipeptideImplicit",
    "aldp-vacuum": "Amber99SB-ILDN in vacuum, no constraints",
}


@dataclass(frozen=True)
class MDSystem:
    """An OpenMM system ready for MD.

    Attributes:
        name: label stored in the metadata, e.g. ``"aldp"`` or ``"smiles:CCO"``.
        forcefield: human-readable force-field description.
        system: the :class:`openmm.System`.
        topology: matching :class:`mdtraj.Topology` (written into the HDF5 trajectory).
        positions: ``[N, 3]`` float64 starting positions in nm.
    """

    name: str
    forcefield: str
    system: openmm.System
    topology: mdtraj.Topology
    positions: np.ndarray

    @classmethod
    def from_openmm(
        cls,
        system: openmm.System,
        positions: np.ndarray,
        topology: app.Topology | mdtraj.Topology,
        name: str = "openmm-system",
        forcefield: str = "user openmm.System",
    ) -> MDSystem:
        """Wraps any OpenMM system.

        Args:
            system: the :class:`openmm.System`.
            positions: ``[N, 3]`` positions in nm.
            topology: OpenMM or mdtraj topology with ``N`` atoms.
            name: label for the metadata.
            forcefield: force-field description for the metadata.

        Raises:
            MDInputError: positions of the wrong shape or not finite, or a topology with a
                different number of atoms.
        """
        x = np.asarray(positions, dtype=np.float64)
        n = system.getNumParticles()
        if x.shape != (n, 3) or not np.isfinite(x).all():
            raise MDInputError(
                f"positions: expected finite [{n}, 3] nm for {name}, got shape {x.shape}"
            )
        top = (
            topology
            if isinstance(topology, mdtraj.Topology)
            else mdtraj.Topology.from_openmm(topology)
        )
        if top.n_atoms != n:
            raise MDInputError(f"topology: {top.n_atoms} atoms, but {name} has {n} particles")
        return cls(name, forcefield, system, top, x)


def named_system(name: str) -> MDSystem:
    """One of the alanine dipeptide reference systems (see :data:`NAMED_SYSTEMS`).

    Raises:
        MDInputError: unknown ``name``.
    """
    if name not in NAMED_SYSTEMS:
        raise MDInputError(
            f"system: unknown system {name!r}; choose one of {', '.join(NAMED_SYSTEMS)}"
        )
    from confflow.energies.systems import alanine_dipeptide

    ref = alanine_dipeptide(name)
    return MDSystem.from_openmm(ref.system, ref.positions, ref.topology, name, NAMED_SYSTEMS[name])


def smiles_system(smiles: str, seed: int = 1) -> MDSystem:
    """An MMFF94 ``openmm.System`` for a SMILES, started from a minimised ETKDG conformer.

    Stereo left unspecified in the SMILES is fixed to the first enumerated isomer.

    Args:
        smiles: the molecule.
        seed: ETKDG seed.

    Raises:
        MDInputError: invalid SMILES or a molecule MMFF94 cannot type (message from
            :mod:`confflow.chem` or the MMFF builder).
    """
    from confflow.chem import Molecule, to_mdtraj
    from confflow.energies.mmff_openmm import mmff_openmm_system

    try:
        molecule = Molecule.from_smiles(smiles, stereo="first")
        x = molecule.embed(1, seed=seed, num_threads=1, mmff=True)[0]
        system = mmff_openmm_system(molecule.rdkit_mol)
    except ValueError as err:
        raise MDInputError(f"smiles: {err}") from err
    top = to_mdtraj(molecule, x[None]).topology
    return MDSystem.from_openmm(system, x.numpy(), top, f"smiles:{smiles}", "MMFF94 (OpenMM)")


def resolve_system(spec: str, seed: int = 1) -> MDSystem:
    """A system from ``"smiles:<SMILES>"`` or a name in :data:`NAMED_SYSTEMS`.

    Raises:
        MDInputError: unknown name or invalid SMILES.
    """
    if spec.startswith("smiles:"):
        return smiles_system(spec.removeprefix("smiles:"), seed=seed)
    return named_system(spec)
