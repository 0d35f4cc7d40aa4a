"""Reference OpenMM systems: alanine dipeptide in vacuum and in two implicit solvents.

All three are built from files that ship with OpenMM and openmmtools (no downloads), without
constraints and without a periodic box:

* ``"aldp-vacuum"`` — Amber99SB-ILDN (``amber99sbildn.xml``), ``NoCutoff``.
* ``"aldp"`` — Amber99SB-ILDN + ``amber99_obc.xml`` (a :class:`openmm.GBSAOBCForce`, OBC2).
* ``"aldp-ff96"`` — openmmtools' ``AlanineDipeptideImplicit``: Amber ff96 from its ``prmtop``
  with OpenMM's OBC1 model (a :class:`openmm.CustomGBForce`), built exactly as openmmtools
  builds it (``implicitSolvent=OBC1``, no cutoff) but without importing ``openmmtools``.

Example:
    >>> ref = alanine_dipeptide("aldp")
    >>> ref.system.getNumParticles(), ref.positions.shape
    (22, (22, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

__all__ = [
    "ALANINE_DIPEPTIDE_SYSTEMS",
    "ALDP_PHI",
    "ALDP_PSI",
    "ReferenceSystem",
    "alanine_dipeptide",
]

#: Names accepted by :func:`alanine_dipeptide`.
ALANINE_DIPEPTIDE_SYSTEMS: tuple[str, ...] = ("aldp-vacuum", "aldp", "aldp-ff96")

#: Atom indices (0-based) of the backbone torsion phi (C-N-CA-C) in every alanine dipeptide
#: system.
ALDP_PHI: tuple[int, int, int, int] = (4, 6, 8, 14)

#: Atom indices (0-based) of the backbone torsion psi (N-CA-C-N) in every alanine dipeptide
#: system.
ALDP_PSI: tuple[int, int, int, int] = (6, 8, 14, 16)


@dataclass(frozen=True)
class ReferenceSystem:
    """An OpenMM system with its topology and a starting structure.

    Attributes:
        name: one of :data:`ALANINE_DIPEPTIDE_SYSTEMS`.
        system: the :class:`openmm.System` (no constraints, no periodic box).
        topology: the matching :class:`openmm.app.Topology`.
        positions: ``[N, 3]`` float64 starting positions in nm.
        temperature: the reference temperature in K.
    """

    name: str
    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    temperature: float = 300.0


def _openmmtools_data() -> Path:
    # find_spec locates the package without importing it (its import is slow and chatty).
    spec = find_spec("openmmtools")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("aldp systems need the openmmtools package for its data files")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "alanine-dipeptide-gbsa"


def alanine_dipeptide(name: str = "aldp") -> ReferenceSystem:
    """Builds one of the alanine dipeptide reference systems.

    Args:
        name: ``"aldp-vacuum"``, ``"aldp"`` or ``"aldp-ff96"`` (see the module docstring).

    Returns:
        The :class:`ReferenceSystem` at 300 K, positions in nm.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in ALANINE_DIPEPTIDE_SYSTEMS:
        raise ValueError(
            f"name: unknown alanine dipeptide system {name!r}; "
            f"choose one of {', '.join(ALANINE_DIPEPTIDE_SYSTEMS)}"
        )
    data = _openmmtools_data()
    if name == "aldp-ff96":
        prmtop = app.AmberPrmtopFile(str(data / "alanine-dipeptide.prmtop"))
        system = prmtop.createSystem(
            implicitSolvent=app.OBC1, constraints=None, nonbondedCutoff=None
        )
        crd = app.AmberInpcrdFile(str(data / "alanine-dipeptide.crd"))
        positions = crd.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return ReferenceSystem(name, system, prmtop.topology, np.asarray(positions, np.float64))
    pdb = app.PDBFile(str(data / "alanine-dipeptide.pdb"))
    files = ["amber99sbildn.xml"] + (["amber99_obc.xml"] if name == "aldp" else [])
    system = app.ForceField(*files).createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False
    )
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return ReferenceSystem(name, system, pdb.topology, np.asarray(positions, np.float64))
