"""Base densities, flows (base + transform) and toy densities with known normalisers."""

from confflow.distributions.base import (
    Distribution,
    DomainProduct,
    StandardNormal,
    Uniform,
    UniformCircle,
)
from confflow.distributions.circular_mixture import (
    CircularMixtureProduct,
    WrappedNormalMixture,
    fit_wrapped_normal_mixture,
)
from confflow.distributions.flow import Flow
from confflow.distributions.meanfree import MeanFreeNormal
from confflow.distributions.toy import GaussianMixture, TorusMixture

__all__ = [
    "CircularMixtureProduct",
    "Distribution",
    "DomainProduct",
    "Flow",
    "GaussianMixture",
    "MeanFreeNormal",
    "StandardNormal",
    "TorusMixture",
    "Uniform",
    "UniformCircle",
    "WrappedNormalMixture",
    "fit_wrapped_normal_mixture",
]
