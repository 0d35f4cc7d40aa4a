"""Bijections with exact log-determinants (forward = latent -> data)."""

from confflow.transforms.autoregressive import IAF, MAF
from confflow.transforms.base import Compose, Inverse, Transform
from confflow.transforms.coupling import AffineCoupling, SplineCoupling, coupling_masks
from confflow.transforms.elementwise import ElementwiseAffine, Logit, Sigmoid
from confflow.transforms.linear import ActNorm, LULinear, Permutation
from confflow.transforms.splines import RQSpline

__all__ = [
    "IAF",
    "MAF",
    "ActNorm",
    "AffineCoupling",
    "Compose",
    "ElementwiseAffine",
    "Inverse",
    "LULinear",
    "Logit",
    "Permutation",
    "RQSpline",
    "Sigmoid",
    "SplineCoupling",
    "Transform",
    "coupling_masks",
]
