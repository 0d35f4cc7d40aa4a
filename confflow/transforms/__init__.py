"""Bijections with exact log-determinants (forward = latent -> data)."""

from confflow.transforms.autoregressive import IAF, MAF
from confflow.transforms.base import Compose, Inverse, Transform
from confflow.transforms.continuous import CNF, IntegrationError, ODEConfig
from confflow.transforms.continuous_torus import TorusVectorField, torus_cnf
from confflow.transforms.coupling import AffineCoupling, SplineCoupling, coupling_masks
from confflow.transforms.elementwise import ElementwiseAffine, ElementwiseSpline, Logit, Sigmoid
from confflow.transforms.linear import ActNorm, LULinear, Permutation
from confflow.transforms.splines import RQSpline

__all__ = [
    "CNF",
    "IAF",
    "MAF",
    "ActNorm",
    "AffineCoupling",
    "Compose",
    "ElementwiseAffine",
    "ElementwiseSpline",
    "IntegrationError",
    "Inverse",
    "LULinear",
    "Logit",
    "ODEConfig",
    "Permutation",
    "RQSpline",
    "Sigmoid",
    "SplineCoupling",
    "TorusVectorField",
    "Transform",
    "coupling_masks",
    "torus_cnf",
]
