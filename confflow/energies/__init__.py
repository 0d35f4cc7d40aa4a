"""Energies: ``energy(x [B, N, 3] nm) -> [B] kJ/mol`` targets for Boltzmann generators."""

from confflow.energies.base import MOLAR_GAS_CONSTANT, Energy, kT

__all__ = ["MOLAR_GAS_CONSTANT", "Energy", "kT"]
