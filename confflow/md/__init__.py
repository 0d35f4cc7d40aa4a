"""Reference data with OpenMM: Langevin MD, replica exchange, resumable output, free energies.

Example:
    >>> from confflow.md import MDConfig, named_system, run_md
    >>> result = run_md(named_system("aldp"), MDConfig(ns=0.01), "runs/aldp")  # doctest: +SKIP
"""

from confflow.md.config import MDConfig, MDInputError, ReplicaConfig
from confflow.md.free_energy import (
    FreeEnergyEstimate,
    MacrostateFreeEnergy,
    block_standard_error,
    integrated_autocorrelation_time,
    macrostate_free_energy,
)
from confflow.md.io import Frames, RunDirectory, read_frames
from confflow.md.langevin import LangevinDriver
from confflow.md.replica_exchange import ReplicaExchangeDriver, geometric_ladder
from confflow.md.runner import MDResult, run_md
from confflow.md.systems import NAMED_SYSTEMS, MDSystem, named_system, resolve_system, smiles_system

__all__ = [
    "NAMED_SYSTEMS",
    "Frames",
    "FreeEnergyEstimate",
    "LangevinDriver",
    "MDConfig",
    "MDInputError",
    "MDResult",
    "MDSystem",
    "MacrostateFreeEnergy",
    "ReplicaConfig",
    "ReplicaExchangeDriver",
    "RunDirectory",
    "block_standard_error",
    "geometric_ladder",
    "integrated_autocorrelation_time",
    "macrostate_free_energy",
    "named_system",
    "read_frames",
    "resolve_system",
    "run_md",
    "smiles_system",
]
