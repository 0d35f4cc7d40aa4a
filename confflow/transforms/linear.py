"""Linear bijections on the real line: ActNorm, LU-parametrised linear maps, permutations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from confflow.domains import Domain
from confflow.transforms.base import Transform

__all__ = ["ActNorm", "LULinear", "Permutation"]


class ActNorm(Transform):
    """Per-feature affine map ``y = x * exp(log_scale) + shift`` with data-dependent start.

    The first call of :meth:`inverse` in training mode (data -> latent) sets ``shift`` and
    ``log_scale`` to the batch mean and log standard deviation, so the latent side of that
    batch is standardised (Kingma & Dhariwal 2018, Glow). The state is saved with the module.

    Args:
        features: number of features ``D`` (all on the real line).
        eps: added to the standard deviation at initialisation.
    """

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.features = features
        self.domain = self.latent_domain = Domain.real(features)
        self.eps = eps
        self.shift = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, y: Tensor) -> None:
        if y.shape[0] < 2:
            raise ValueError("ActNorm: data-dependent initialisation needs a batch of >= 2")
        self.shift.copy_(y.mean(0))
        self.log_scale.copy_(torch.log(y.std(0) + self.eps))
        self.initialized.fill_(True)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        y = x * torch.exp(self.log_scale) + self.shift
        return y, self.log_scale.sum().expand(x.shape[0])

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(y)
        x = (y - self.shift) * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).expand(y.shape[0])


class LULinear(Transform):
    """Invertible linear map ``y = W x + b`` with ``W = P L U`` (Kingma & Dhariwal 2018).

    ``P`` is a fixed permutation, ``L`` unit lower-triangular, ``U`` upper-triangular with
    diagonal ``sign * exp(log_diag)``; ``log|det W| = sum(log_diag)``. Starts at a random
    rotation (the LU factors of a random orthogonal matrix).

    Args:
        features: number of features ``D`` (all on the real line).
        seed: seed of the random starting rotation (``None`` draws from torch's global RNG).
    """

    def __init__(self, features: int, seed: int | None = None) -> None:
        super().__init__()
        self.features = features
        self.domain = self.latent_domain = Domain.real(features)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        q, _ = torch.linalg.qr(torch.randn(features, features, generator=gen))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("tril_mask", torch.tril(torch.ones(features, features), -1))
        self.lower = nn.Parameter(lower * self.tril_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_diag = nn.Parameter(torch.log(diag.abs()))
        self.bias = nn.Parameter(torch.zeros(features))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.features, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.tril_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W = P L U`` ``[D, D]``."""
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        y = x @ self.weight().T + self.bias
        return y, self.log_diag.sum().expand(x.shape[0])

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        rhs = self.perm.T @ (y - self.bias).T  # [D, B]
        z = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, z, upper=True).T
        return x, (-self.log_diag.sum()).expand(y.shape[0])


class Permutation(Transform):
    """Fixed reordering of features: ``y[:, j] = x[:, perm[j]]``; ``ladj = 0``.

    Args:
        perm: a permutation of ``range(D)``.
        domain: layout of the latent side (default: all real); the data side is permuted.
    """

    def __init__(self, perm: Sequence[int], domain: Domain | None = None) -> None:
        super().__init__()
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(len(perm))):
            raise ValueError(f"Permutation: {perm} is not a permutation of range({len(perm)})")
        self.features = len(perm)
        self.latent_domain = domain if domain is not None else Domain.real(len(perm))
        if self.latent_domain.dim != len(perm):
            raise ValueError("Permutation: domain size differs from the permutation's")
        self.domain = self.latent_domain[perm]
        self.register_buffer("perm", torch.tensor(perm, dtype=torch.long))
        self.register_buffer("inv_perm", torch.argsort(self.perm))

    @classmethod
    def random(cls, features: int, seed: int | None = None, domain: Domain | None = None):
        """A random permutation (seeded when ``seed`` is given)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return cls(torch.randperm(features, generator=gen).tolist(), domain)

    @classmethod
    def reverse(cls, features: int, domain: Domain | None = None):
        """The order-reversing permutation."""
        return cls(list(range(features - 1, -1, -1)), domain)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return y[:, self.inv_perm], y.new_zeros(y.shape[0])
