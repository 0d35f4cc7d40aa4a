"""Base densities: standard normal, uniform on an interval or circle, products over a layout."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from confflow.domains import Domain, Kind

__all__ = ["Distribution", "DomainProduct", "StandardNormal", "Uniform", "UniformCircle"]


class Distribution(nn.Module):
    """A density over ``[B, D]`` vectors with a known domain layout.

    Subclasses implement ``_log_prob`` and ``_sample``; public methods validate.

    Attributes:
        domain: layout of the ``D`` coordinates.
    """

    domain: Domain

    def __init__(self) -> None:
        super().__init__()
        # Tracks the module's device and default float dtype for sampling.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def features(self) -> int:
        """Number of coordinates ``D``."""
        return self.domain.dim

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density ``[B]`` of ``x`` ``[B, D]`` (nats, w.r.t. Lebesgue measure)."""
        name = type(self).__name__
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(
                f"{name}.log_prob: expected [B, {self.features}], got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}.log_prob: input contains NaN or infinite values")
        return self._log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draws ``[n, D]`` samples (module's device and dtype)."""
        if n < 1:
            raise ValueError(f"{type(self).__name__}.sample: n must be >= 1, got {n}")
        return self._sample(n, generator)

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _rand(self, fn, n: int, generator: torch.Generator | None) -> Tensor:
        a = self._anchor
        return fn(n, self.features, generator=generator, device=a.device, dtype=a.dtype)


class DomainProduct(Distribution):
    """Independent coordinates: standard normal on real lines, uniform on intervals and circles.

    Args:
        domain: layout of the ``D`` coordinates.
    """

    def __init__(self, domain: Domain) -> None:
        super().__init__()
        self.domain = domain
        low, high = domain.bounds()
        bounded = ~domain.mask(Kind.REAL)
        log_volume = torch.log(high[bounded] - low[bounded]).sum()
        n_real = domain.dim - int(bounded.sum())
        self._log_norm = -float(log_volume) - 0.5 * n_real * math.log(2 * math.pi)
        self.register_buffer("real", ~bounded, persistent=False)
        # float64 copies, cast at sampling time so float64 samples keep exact bounds.
        self._low64 = torch.where(bounded, low, 0)
        self._span64 = torch.where(bounded, high - low, 1)

    def _log_prob(self, x: Tensor) -> Tensor:
        quad = torch.where(self.real, x * x, torch.zeros_like(x)).sum(-1)
        outside = self.domain.outside(x).any(-1)
        logp = self._log_norm - 0.5 * quad
        return torch.where(outside, torch.full_like(logp, -math.inf), logp)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        normal = self._rand(torch.randn, n, generator)
        if self.domain.is_real:
            return normal
        a = self._anchor
        low = self._low64.to(device=a.device, dtype=a.dtype)
        span = self._span64.to(device=a.device, dtype=a.dtype)
        uniform = self._rand(torch.rand, n, generator) * span + low
        return torch.where(self.real, normal, uniform)


class StandardNormal(DomainProduct):
    """Standard normal ``N(0, I)`` on ``R^D``.

    Args:
        features: dimension ``D``.
    """

    def __init__(self, features: int) -> None:
        super().__init__(Domain.real(features))


class Uniform(DomainProduct):
    """Uniform on the box ``(low, high)^D``.

    Args:
        features: dimension ``D``.
        low: lower bound.
        high: upper bound.
    """

    def __init__(self, features: int, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__(Domain.interval(features, low, high))


class UniformCircle(DomainProduct):
    """Uniform on the torus ``[-pi, pi)^D`` (radians).

    Args:
        features: dimension ``D``.
    """

    def __init__(self, features: int) -> None:
        super().__init__(Domain.circle(features))
