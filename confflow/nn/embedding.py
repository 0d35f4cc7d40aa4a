"""Conditioner inputs from a domain layout: circles enter as (cos, sin)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from confflow.domains import Domain, Kind

__all__ = ["DomainEmbedding", "with_context"]


class DomainEmbedding(nn.Module):
    """Maps coordinates to network inputs that respect their topology.

    Real-line coordinates pass unchanged, intervals are rescaled to ``[-1, 1]``, and each
    circular coordinate becomes the pair ``(cos, sin)``, so a conditioner sees a continuous
    function of the angle across the ``-pi/pi`` seam.

    Args:
        domain: layout of the ``D`` input coordinates.

    Attributes:
        out_features: number of outputs (``D`` plus one per circle).
        source: for each output unit, the index of the coordinate it comes from (used to give
            MADE degrees to the units).
    """

    def __init__(self, domain: Domain) -> None:
        super().__init__()
        self.passthrough = all(k == Kind.REAL for k in domain.kinds)
        circle = domain.circular_indices
        self.out_features = domain.dim + len(circle)
        self.source = list(range(domain.dim)) + list(circle)
        low, high = domain.bounds()
        interval = domain.mask(Kind.INTERVAL)
        scale = torch.where(interval, 2.0 / (high - low), torch.ones_like(low))
        offset = torch.where(interval, -(high + low) / (high - low), torch.zeros_like(low))
        # Circles are replaced by cos in place; sin is appended.
        self.register_buffer("scale", scale.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("circle", domain.mask(Kind.CIRCLE), persistent=False)
        self.register_buffer("circle_idx", torch.tensor(circle, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, D] -> [B, out_features]``."""
        if self.passthrough:
            return x
        z = x * self.scale.to(x.dtype) + self.offset.to(x.dtype)
        if self.circle_idx.numel() == 0:
            return z
        z = torch.where(self.circle, torch.cos(x), z)
        return torch.cat([z, torch.sin(x.index_select(-1, self.circle_idx))], dim=-1)


def with_context(h: Tensor, context: Tensor | None, context_features: int, owner: str) -> Tensor:
    """A conditioner's input: embedded coordinates, then the context if the owner takes one.

    Args:
        h: ``[B, F]`` embedded coordinates (the output of :class:`DomainEmbedding`).
        context: ``[B, C]`` context, or ``None``; ignored when ``context_features`` is 0.
        context_features: ``C``, the context size the owner was built for (0: none).
        owner: name of the layer, for the error message.

    Returns:
        ``[B, F + C]`` (``[B, F]`` when ``context_features`` is 0).

    Raises:
        ValueError: the owner takes a context and none was given.
    """
    if not context_features:
        return h
    if context is None:
        raise ValueError(f"{owner}: this layer needs a context")
    return torch.cat([h, context], dim=1)
