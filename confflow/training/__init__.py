"""Training of flows."""

from confflow.training.ml import fit_maximum_likelihood

__all__ = ["fit_maximum_likelihood"]
