"""Densities with exact log-likelihoods and exact samplers, for tests, demos and benchmarks.

* :class:`TorusMixture` — a correlated, multimodal density on the 2-torus (radians).
* :class:`GaussianMixture` — a Gaussian mixture on ``R^D``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Categorical, MultivariateNormal, VonMises

from confflow.distributions.base import Distribution
from confflow.domains import Domain, wrap_angle

__all__ = ["GaussianMixture", "TorusMixture"]


def _log_von_mises(theta: Tensor, mu: Tensor, kappa: Tensor) -> Tensor:
    """Log-density of the von Mises distribution; ``log I0(k) = log(i0e(k)) + k`` for stability."""
    return (
        kappa * (torch.cos(theta - mu) - 1)
        - math.log(2 * math.pi)
        - torch.log(torch.special.i0e(kappa))
    )


class TorusMixture(Distribution):
    r"""Mixture on the 2-torus of correlated von Mises components.

    Component ``c``: :math:`\phi_1 \sim \mathrm{vM}(\mu_c, \kappa_c)` and
    :math:`\phi_2 - \phi_1 - \delta_c \sim \mathrm{vM}(0, \lambda_c)`, so each component is a
    ridge along :math:`\phi_2 = \phi_1 + \delta_c` with an exactly known normaliser.

    Args:
        weights: mixture weights (normalised internally).
        mu: ``mu_c`` per component, radians.
        kappa: ``kappa_c`` per component.
        delta: ``delta_c`` per component, radians.
        lam: ``lambda_c`` per component.
    """

    def __init__(
        self,
        weights: Sequence[float] = (0.6, 0.4),
        mu: Sequence[float] = (-1.5, 1.8),
        kappa: Sequence[float] = (2.0, 4.0),
        delta: Sequence[float] = (1.0, -2.0),
        lam: Sequence[float] = (3.0, 6.0),
    ) -> None:
        super().__init__()
        self.domain = Domain.circle(2)
        w = torch.tensor(weights, dtype=torch.float64)
        self.register_buffer("log_w", torch.log(w / w.sum()))
        for name, v in (("mu", mu), ("kappa", kappa), ("delta", delta), ("lam", lam)):
            self.register_buffer(name, torch.tensor(v, dtype=torch.float64))

    def _log_prob(self, x: Tensor) -> Tensor:
        x = x.to(torch.float64)[:, :, None]  # [B, 2, 1] against components [C]
        a = _log_von_mises(x[:, 0], self.mu, self.kappa)
        b = _log_von_mises(x[:, 1] - x[:, 0] - self.delta, torch.zeros_like(self.lam), self.lam)
        return torch.logsumexp(self.log_w + a + b, dim=-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        with torch.random.fork_rng():
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            c = Categorical(logits=self.log_w).sample((n,))
            phi1 = VonMises(self.mu[c], self.kappa[c]).sample()
            noise = VonMises(torch.zeros_like(phi1), self.lam[c]).sample()
        phi2 = phi1 + self.delta[c] + noise
        return wrap_angle(torch.stack([phi1, phi2], dim=-1))


class GaussianMixture(Distribution):
    """Mixture of full-covariance Gaussians on ``R^D``.

    Args:
        weights: ``[C]`` mixture weights (normalised internally).
        means: ``[C, D]`` component means.
        covariances: ``[C, D, D]`` positive-definite covariances.
    """

    def __init__(self, weights: Sequence[float], means: Tensor, covariances: Tensor) -> None:
        super().__init__()
        means = torch.as_tensor(means, dtype=torch.float64)
        self.domain = Domain.real(means.shape[1])
        w = torch.tensor(weights, dtype=torch.float64)
        self.register_buffer("log_w", torch.log(w / w.sum()))
        self.register_buffer("means", means)
        self.register_buffer(
            "scale_tril", torch.linalg.cholesky(torch.as_tensor(covariances, dtype=torch.float64))
        )

    @classmethod
    def default_2d(cls) -> GaussianMixture:
        """A three-component, anisotropic mixture in the plane."""
        means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
        covs = torch.tensor(
            [[[0.6, 0.4], [0.4, 0.6]], [[0.3, -0.1], [-0.1, 0.8]], [[1.0, 0.0], [0.0, 0.15]]]
        )
        return cls((0.4, 0.35, 0.25), means, covs)

    def _components(self) -> MultivariateNormal:
        return MultivariateNormal(self.means, scale_tril=self.scale_tril)

    def _log_prob(self, x: Tensor) -> Tensor:
        lp = self._components().log_prob(x.to(torch.float64)[:, None, :])
        return torch.logsumexp(self.log_w + lp, dim=-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        c = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.features, generator=generator, dtype=torch.float64)
        return self.means[c] + (self.scale_tril[c] @ eps[:, :, None]).squeeze(-1)
