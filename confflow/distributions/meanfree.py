"""Isotropic Gaussian on the centre-of-mass-free subspace of ``N`` positions in 3-d."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.distributions.base import Distribution
from confflow.domains import Domain

__all__ = ["MeanFreeNormal"]


class MeanFreeNormal(Distribution):
    r"""``N(0, std^2 I)`` on ``{x in R^{N x 3}: sum_i x_i = 0}``, a ``3(N-1)``-dim subspace.

    With an orthonormal basis of the subspace the coordinates are i.i.d. normal, so

    .. math:: \log p(x) = -\frac{|x|^2}{2 \sigma^2} - \frac{3(N-1)}{2} \log(2 \pi \sigma^2),

    a density with respect to the ``3(N-1)``-dimensional Lebesgue measure of the subspace.
    Samples are i.i.d. normal positions minus their mean, which is that distribution.

    Args:
        n_atoms: number of points ``N`` (>= 2).
        std: standard deviation ``sigma`` per subspace coordinate (nm for positions).

    Example:
        >>> base = MeanFreeNormal(4)
        >>> x = base.sample(3)
        >>> x.shape, bool(x.sum(1).abs().max() < 1e-5)
        (torch.Size([3, 4, 3]), True)
    """

    def __init__(self, n_atoms: int, std: float = 1.0) -> None:
        super().__init__()
        if n_atoms < 2:
            raise ValueError(f"n_atoms: need at least 2 points, got {n_atoms}")
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"std: must be positive and finite, got {std}")
        self.n_atoms = n_atoms
        self.std = float(std)
        self.domain = Domain.real(3 * n_atoms)
        self.dof = 3 * (n_atoms - 1)
        self._log_norm = -0.5 * self.dof * math.log(2 * math.pi * self.std**2)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density ``[B]`` (nats) of centred positions ``x`` ``[B, N, 3]``.

        Raises:
            ValueError: wrong shape, non-finite values, or a centroid away from the origin
                (more than ``1e-4 * std`` in float32, ``1e-8 * std`` in float64).
        """
        if x.dim() != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(
                f"MeanFreeNormal.log_prob: expected [B, {self.n_atoms}, 3], got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("MeanFreeNormal.log_prob: input contains NaN or infinite values")
        tol = (1e-8 if x.dtype == torch.float64 else 1e-4) * self.std
        offset = float(x.mean(dim=1).abs().max())
        if offset > tol:
            raise ValueError(
                f"MeanFreeNormal.log_prob: positions are not centred (centroid {offset:.3g})"
            )
        return self._log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draws ``[n, N, 3]`` centred samples (module's device and dtype)."""
        if n < 1:
            raise ValueError(f"MeanFreeNormal.sample: n must be >= 1, got {n}")
        return self._sample(n, generator)

    def _log_prob(self, x: Tensor) -> Tensor:
        return self._log_norm - 0.5 * (x * x).sum(dim=(1, 2)) / self.std**2

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        a = self._anchor
        z = torch.randn(n, self.n_atoms, 3, generator=generator, device=a.device, dtype=a.dtype)
        return (z - z.mean(dim=1, keepdim=True)) * self.std
