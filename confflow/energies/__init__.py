"""Energies: ``energy(x [B, N, 3] nm) -> [B] kJ/mol`` targets for Boltzmann generators.

* :class:`MMFFEnergy` — MMFF94/MMFF94s in torch, parameters from RDKit.
* :class:`OpenMMSystemEnergy` — torch-native evaluation of a non-periodic ``openmm.System``.
* :class:`OpenMMBridge` / :class:`OpenMMEnergy` — OpenMM itself (any System), batched.
* :func:`mmff_openmm_system` — MMFF94 as an ``openmm.System`` for molecular dynamics.
* :class:`CappedEnergy` / :func:`linlog_cap` — smooth energy cap for training.
* :class:`TorsionalEnergy` — a Cartesian energy over free torsions at fixed or locally relaxed
  structure (:class:`LocalRelaxation`, batched in torch); :func:`relax_at_torsions` — RDKit's
  MMFF minimisation with torsions held, the reference for the relaxation;
  :class:`LevelTorsionalEnergy` — another energy (GFN2-xTB) at a torsional energy's conformers.
* :class:`XTBEnergy` — GFN2-xTB / GFN1-xTB (tblite) with implicit solvent, in processes.
* :class:`DoubleWell`, :class:`GaussianMixtureEnergy` — analytic targets with known normalisers.
"""

from confflow.energies.analytic import DoubleWell, GaussianMixtureEnergy
from confflow.energies.base import MOLAR_GAS_CONSTANT, Energy, kT
from confflow.energies.bridge import OpenMMBridge, OpenMMEnergy, available_platforms
from confflow.energies.cap import CappedEnergy, linlog_cap
from confflow.energies.local_relax import LocalRelaxation
from confflow.energies.mmff import MMFF_TERMS, MMFFEnergy
from confflow.energies.mmff_openmm import mmff_openmm_system
from confflow.energies.mmff_params import MMFFTypingError
from confflow.energies.openmm_gb import UnsupportedCustomGBError
from confflow.energies.openmm_torch import OpenMMSystemEnergy, UnsupportedForceError
from confflow.energies.relax import relax_at_torsions
from confflow.energies.systems import (
    ALANINE_DIPEPTIDE_SYSTEMS,
    ALDP_PHI,
    ALDP_PSI,
    ReferenceSystem,
    alanine_dipeptide,
)
from confflow.energies.torsional import LevelTorsionalEnergy, TorsionalEnergy
from confflow.energies.xtb import XTBEnergy, XTBResult

__all__ = [
    "ALANINE_DIPEPTIDE_SYSTEMS",
    "ALDP_PHI",
    "ALDP_PSI",
    "MMFF_TERMS",
    "MOLAR_GAS_CONSTANT",
    "CappedEnergy",
    "DoubleWell",
    "Energy",
    "GaussianMixtureEnergy",
    "LevelTorsionalEnergy",
    "LocalRelaxation",
    "MMFFEnergy",
    "MMFFTypingError",
    "OpenMMBridge",
    "OpenMMEnergy",
    "OpenMMSystemEnergy",
    "ReferenceSystem",
    "TorsionalEnergy",
    "UnsupportedCustomGBError",
    "UnsupportedForceError",
    "XTBEnergy",
    "XTBResult",
    "alanine_dipeptide",
    "available_platforms",
    "kT",
    "linlog_cap",
    "mmff_openmm_system",
    "relax_at_torsions",
]
