"""Tight-binding levels (GFN2-xTB, GFN1-xTB, with ALPB/GBSA implicit solvent) through tblite.

* :class:`XTBLevel` — a level by name (``gfn2``, ``gfn2:water``, ``gfn1:gbsa:dmso``).
* :func:`single_points` — energies and gradients of many structures, in threads, in atomic
  units; failures recorded per structure.

The torch energy over positions in nm and kJ/mol is :class:`confflow.energies.XTBEnergy`.
"""

from confflow.xtb.calculate import (
    MAX_ATOMIC_NUMBER,
    Settings,
    SinglePoints,
    check_structure,
    single_points,
)
from confflow.xtb.level import METHODS, SOLVATION_MODELS, XTBLevel

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "METHODS",
    "SOLVATION_MODELS",
    "Settings",
    "SinglePoints",
    "XTBLevel",
    "check_structure",
    "single_points",
]
