"""Reweighting flow samples to the Boltzmann distribution, in log space and float64.

* :mod:`~confflow.reweighting.weights` — log-weights, Kish ESS, self-normalised expectations,
  resampling, the largest-weight share;
* :mod:`~confflow.reweighting.free_energy` — free-energy differences between macrostates with
  bootstrap intervals, free-energy profiles along a variable, reweighting to another
  temperature;
* :mod:`~confflow.reweighting.levels` — reweighting to another level of theory (e.g. GFN2-xTB)
  with its ESS;
* :mod:`~confflow.reweighting.observables` — torsions and other collective variables;
* :mod:`~confflow.reweighting.plots` — PNG diagnostics of reweighted ensembles (imported on
  its own, so that matplotlib loads only where a plot is drawn).
"""

from confflow.reweighting.free_energy import (
    FreeEnergyCurve,
    FreeEnergyDifference,
    free_energy_curve,
    free_energy_difference,
    in_range,
    reweight_temperature,
)
from confflow.reweighting.levels import LevelChange, change_level
from confflow.reweighting.observables import torsion
from confflow.reweighting.weights import (
    expectation,
    kish_ess,
    largest_weight_share,
    log_weights,
    normalized_weights,
    resample,
)

__all__ = [
    "FreeEnergyCurve",
    "FreeEnergyDifference",
    "LevelChange",
    "change_level",
    "expectation",
    "free_energy_curve",
    "free_energy_difference",
    "in_range",
    "kish_ess",
    "largest_weight_share",
    "log_weights",
    "normalized_weights",
    "resample",
    "reweight_temperature",
    "torsion",
]
