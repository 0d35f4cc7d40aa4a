"""Analytic test targets over ``[B, D]`` features, with known normalising constants.

Both targets are defined by a dimensionless reduced energy ``u(x)`` at their own
``temperature``; :meth:`~confflow.energies.base.Energy.energy` returns ``kT u(x)`` in kJ/mol so
that ``reduced(x, temperature)`` gives back ``u``. ``log_partition()`` is
``log Z = log integral exp(-u(x)) dx`` and ``log_prob(x) = -u(x) - log Z``.

* :class:`DoubleWell` — ``u(x) = a x_0^4 - b x_0^2 + c x_0 + sum_{k>0} x_k^2 / 2``: a
  (tilted, for ``c != 0``) double well along ``x_0``, standard normal in the other
  dimensions. ``log Z`` is a 1-D integral computed by adaptive quadrature (relative error
  below 1e-10) plus ``(D - 1)/2 log(2 pi)``; exact samples by the inverse CDF on a fine grid.
* :class:`GaussianMixtureEnergy` — ``u(x) = -log sum_k w_k N(x; mu_k, diag(sigma_k^2))``, normalised
  (``log Z = 0``), with exact sampling.

Example:
    >>> import torch
    >>> well = DoubleWell(dim=2)
    >>> x = torch.zeros(3, 2)
    >>> well.reduced(x, well.temperature).tolist()
    [0.0, 0.0, 0.0]
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from confflow.energies.base import Energy, kT

__all__ = ["DoubleWell", "GaussianMixtureEnergy"]


class _AnalyticTarget(Energy):
    """Shared parts: ``[B, D]`` event shape, energies as ``kT u(x)``."""

    def __init__(self, dim: int, temperature: float) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim: must be >= 1, got {dim}")
        self.dim = dim
        self.temperature = temperature
        self._kT = kT(temperature)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(D,)``: one configuration is a feature vector."""
        return (self.dim,)

    def _reduced(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _energy(self, x: Tensor) -> Tensor:
        return self._kT * self._reduced(x)

    def log_partition(self) -> float:
        """``log Z = log integral exp(-u(x)) dx`` at :attr:`temperature`."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Normalised log-density ``-u(x) - log Z`` of ``[B, D]`` points, shape ``[B]``."""
        self._validate(x)
        return -self._reduced(x) - self.log_partition()


class DoubleWell(_AnalyticTarget):
    """A double well along ``x_0``, standard normal in the other dimensions.

    Args:
        dim: ``D >= 1``.
        a, b, c: ``u(x_0) = a x_0^4 - b x_0^2 + c x_0``; ``a > 0`` (confining), ``b``
            sets the barrier (``b^2 / (4 a)`` for ``c = 0``), ``c`` tilts the wells.
        temperature: K; energies are ``kT u`` in kJ/mol.

    Raises:
        ValueError: ``a <= 0``, ``dim < 1`` or non-positive temperature.
    """

    def __init__(
        self,
        dim: int = 2,
        a: float = 1.0,
        b: float = 6.0,
        c: float = 1.0,
        temperature: float = 300.0,
    ) -> None:
        super().__init__(dim, temperature)
        if not a > 0:
            raise ValueError(f"a: the quartic coefficient must be positive, got {a}")
        self.a, self.b, self.c = a, b, c

    def _reduced(self, x: Tensor) -> Tensor:
        s = x[:, 0]
        rest = 0.5 * x[:, 1:].square().sum(-1)
        return self.a * s**4 - self.b * s**2 + self.c * s + rest

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, D]`` float64 exact samples: ``x_0`` by the inverse CDF on a grid, the rest normal.

        The grid has 400,001 points over ``x_0`` in ``[-6, 6] / a^(1/4)`` (the quartic makes
        the mass outside negligible), so a sample's ``x_0`` is exact to the grid spacing.
        """
        half = 6.0 / self.a**0.25
        grid = torch.linspace(-half, half, 400_001, dtype=torch.float64)
        u = self.a * grid**4 - self.b * grid**2 + self.c * grid
        cdf = torch.cumsum(torch.exp(-(u - u.min())), 0)
        cdf = cdf / cdf[-1]
        uniform = torch.rand(n, generator=generator, dtype=torch.float64)
        x0 = grid[torch.searchsorted(cdf, uniform).clamp_max(grid.numel() - 1)]
        rest = torch.randn(n, self.dim - 1, generator=generator, dtype=torch.float64)
        return torch.cat([x0[:, None], rest], 1)

    def log_partition(self) -> float:
        """``log Z``: 1-D quadrature around the wells' minimum plus the Gaussian part."""
        a, b, c = self.a, self.b, self.c
        roots = np.roots([4 * a, 0.0, -2 * b, c])
        real = roots[np.abs(roots.imag) < 1e-12].real
        u_min = float(min(a * s**4 - b * s**2 + c * s for s in real))
        # Shift by the minimum so the integrand peaks at 1; split at the stationary points.
        points = sorted(real.tolist())
        edges = [-np.inf, *points, np.inf]
        total = 0.0
        for lo, hi in itertools.pairwise(edges):
            value, _ = integrate.quad(
                lambda s: math.exp(-(a * s**4 - b * s**2 + c * s - u_min)),
                lo,
                hi,
                epsabs=0.0,
                epsrel=1e-12,
                limit=200,
            )
            total += value
        return math.log(total) - u_min + 0.5 * (self.dim - 1) * math.log(2 * math.pi)


class GaussianMixtureEnergy(_AnalyticTarget):
    """A normalised mixture of diagonal Gaussians (``log Z = 0``).

    Args:
        means: ``[K, D]`` component means.
        stds: ``[K]`` or ``[K, D]`` positive standard deviations.
        weights: ``[K]`` positive weights (normalised here); default uniform.
        temperature: K; energies are ``kT u`` in kJ/mol.

    Raises:
        ValueError: mismatched shapes, non-positive standard deviations or weights.
    """

    def __init__(
        self,
        means: Tensor,
        stds: Tensor,
        weights: Tensor | None = None,
        temperature: float = 300.0,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2:
            raise ValueError(f"means: expected shape [K, D], got {tuple(means.shape)}")
        k, d = means.shape
        super().__init__(d, temperature)
        stds = torch.as_tensor(stds, dtype=torch.float64)
        stds = stds[:, None].expand(k, d) if stds.dim() == 1 else stds
        if stds.shape != (k, d) or not bool((stds > 0).all()):
            raise ValueError(f"stds: expected positive values of shape [{k}] or [{k}, {d}]")
        weights = torch.ones(k) if weights is None else torch.as_tensor(weights)
        weights = weights.to(torch.float64)
        if weights.shape != (k,) or not bool((weights > 0).all()):
            raise ValueError(f"weights: expected {k} positive values, got {tuple(weights.shape)}")
        self.register_buffer("means", means)
        self.register_buffer("stds", stds.contiguous())
        self.register_buffer("log_weights", (weights / weights.sum()).log())

    def _reduced(self, x: Tensor) -> Tensor:
        dt = x.dtype
        z = (x[:, None, :] - self.means.to(dt)) / self.stds.to(dt)  # [B, K, D]
        log_norm = -self.stds.to(dt).log().sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        log_comp = -0.5 * z.square().sum(-1) + log_norm + self.log_weights.to(dt)
        return -torch.logsumexp(log_comp, dim=-1)

    def log_partition(self) -> float:
        """``0``: the mixture is normalised."""
        return 0.0

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples ``[n, D]`` (float64)."""
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(
            n, self.dim, dtype=torch.float64, generator=generator, device=self.means.device
        )
        return self.means[comp] + self.stds[comp] * noise
