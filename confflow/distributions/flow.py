"""``Flow``: a base density pushed through a transform, with exact log-likelihoods."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from confflow.distributions.base import Distribution
from confflow.transforms.base import Transform

__all__ = ["Flow"]


class Flow(nn.Module):
    """The density of ``x = T(z)``, ``z ~ base``: ``log q(x) = log p(z) - log|det dT/dz|``.

    Args:
        base: the latent density.
        transform: latent -> data bijection (its ``forward`` samples).
    """

    def __init__(self, base: Distribution, transform: Transform) -> None:
        super().__init__()
        if transform.latent_domain is not None and transform.latent_domain != base.domain:
            raise ValueError(
                "Flow: the base density's domain differs from the transform's latent domain"
            )
        self.base = base
        self.transform = transform

    def sample(
        self,
        n: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draws samples with their exact log-density.

        Args:
            n: number of samples (must equal the context's batch when one is given).
            context: optional ``[n, C]`` conditioning.
            generator: optional RNG for the latent draw.

        Returns:
            ``(x, log_q)``: samples ``[n, ...]`` and ``log q(x)`` ``[n]`` in nats.
        """
        if context is not None and context.shape[0] != n:
            raise ValueError(f"Flow.sample: context batch {context.shape[0]} != n = {n}")
        z = self.base.sample(n, generator)
        log_p = self.base._log_prob(z)
        x, ladj = self.transform._forward(z, context)
        return x, log_p - ladj

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density ``[B]`` (nats) of data ``x`` ``[B, ...]``."""
        z, ladj = self.transform.inverse(x, context)
        return self.base._log_prob(z) + ladj

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, context)
