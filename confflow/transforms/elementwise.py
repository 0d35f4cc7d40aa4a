"""Elementwise bijections: learnable affine and spline maps, sigmoid/logit (line <-> interval)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from confflow.domains import Domain
from confflow.transforms.base import Inverse, Transform
from confflow.transforms.splines import RQSpline

__all__ = ["ElementwiseAffine", "ElementwiseSpline", "Logit", "Sigmoid", "conditional_affine"]


def conditional_affine(
    v: Tensor, raw: Tensor, inverse: bool, scale_bound: float = 3.0
) -> tuple[Tensor, Tensor]:
    """Affine map with conditioner outputs: ``y = x * exp(s) + t``, ``s = c * tanh(raw_s / c)``.

    The soft clamp ``c = scale_bound`` of the log-scale keeps training stable.

    Args:
        v: ``[B, D]`` inputs (latent side, or data side when ``inverse``).
        raw: ``[B, D, 2]`` raw shift and log-scale from a conditioner.
        inverse: map data -> latent instead of latent -> data.
        scale_bound: the bound ``c`` of the log-scale.

    Returns:
        ``(out, ladj)``, both ``[B, D]``; ``ladj`` is the elementwise log-derivative.
    """
    shift, log_scale = raw.unbind(-1)
    log_scale = scale_bound * torch.tanh(log_scale / scale_bound)
    if inverse:
        return (v - shift) * torch.exp(-log_scale), -log_scale
    return v * torch.exp(log_scale) + shift, log_scale


class ElementwiseAffine(Transform):
    """``y = x * exp(log_scale) + shift`` per feature, on the real line.

    Args:
        features: number of features ``D``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.domain = self.latent_domain = Domain.real(features)
        self.shift = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        y = x * torch.exp(self.log_scale) + self.shift
        return y, self.log_scale.sum().expand(x.shape[0])

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        x = (y - self.shift) * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).expand(y.shape[0])


class ElementwiseSpline(Transform):
    """Unconditional rational-quadratic spline per coordinate, over a mixed domain.

    The spline of each coordinate's kind (:mod:`confflow.transforms.splines`) with learnable
    parameters shared by all samples: a flow for one dimension (e.g. a single torsion), or a
    marginal layer in front of couplings. Starts as the identity map.

    Args:
        domain: layout of the ``D`` coordinates.
        bins: number of spline bins ``K``.
        bound: half-width of the spline region on real-line coordinates.
    """

    def __init__(self, domain: Domain, bins: int = 8, bound: float = 5.0) -> None:
        super().__init__()
        self.domain = self.latent_domain = domain
        self.spline = RQSpline(domain, bins, bound)
        self.raw = nn.Parameter(torch.zeros(domain.dim, self.spline.params_per_dim))

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        y, ladj = self.spline(x, self.raw.expand(x.shape[0], -1, -1))
        return y, ladj.sum(-1)

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        x, ladj = self.spline.inverse(y, self.raw.expand(y.shape[0], -1, -1))
        return x, ladj.sum(-1)


class Sigmoid(Transform):
    """``y = low + (high - low) * sigmoid(x)``: real line -> open interval ``(low, high)``.

    Near the interval's ends the map is ill-conditioned in float arithmetic (``dy/dx`` tends
    to 0), so latent values beyond about ``|x| > 30`` (float64) cannot round-trip exactly.

    Args:
        features: number of features ``D``.
        low: lower end of the interval (units of the data).
        high: upper end of the interval.
    """

    def __init__(self, features: int, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        if not low < high:
            raise ValueError(f"Sigmoid: need low < high, got [{low}, {high}]")
        self.features = features
        self.low, self.high = float(low), float(high)
        self.latent_domain = Domain.real(features)
        self.domain = Domain.interval(features, low, high)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        span = self.high - self.low
        y = self.low + span * torch.sigmoid(x)
        ladj = (math.log(span) + F.logsigmoid(x) + F.logsigmoid(-x)).sum(-1)
        return y, ladj

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        span = self.high - self.low
        # Distances to both ends, each computed directly for precision near either end.
        a = (y - self.low) / span
        b = (self.high - y) / span
        x = torch.log(a) - torch.log(b)
        ladj = -(math.log(span) + torch.log(a) + torch.log(b)).sum(-1)
        return x, ladj


class Logit(Inverse):
    """The inverse of :class:`Sigmoid`: open interval ``(low, high)`` -> real line.

    Args:
        features: number of features ``D``.
        low: lower end of the interval (units of the data).
        high: upper end of the interval.
    """

    def __init__(self, features: int, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__(Sigmoid(features, low, high))
