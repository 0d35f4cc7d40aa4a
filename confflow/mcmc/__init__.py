"""Markov chain Monte Carlo for training and estimation: HMC and annealed importance sampling."""

from confflow.mcmc.ais import AISResult, annealed_importance_sampling
from confflow.mcmc.hmc import HMCState, StepSizes, hmc_step

__all__ = ["AISResult", "HMCState", "StepSizes", "annealed_importance_sampling", "hmc_step"]
