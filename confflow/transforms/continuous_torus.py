"""A torus-aware vector field for CNFs over internal coordinates.

Torsions enter the network through ``(cos, sin)``, so the velocity is ``2 pi`` periodic in
every circular coordinate and the flow it generates on ``R^D`` descends to the torus (the
:class:`~confflow.transforms.continuous.CNF` wraps circular outputs to ``[-pi, pi)``).
Interval coordinates get a velocity scaled by ``(x - low)(high - x)``, which vanishes at the
bounds, so no path leaves its interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from confflow.domains import Domain, Kind
from confflow.nn.embedding import DomainEmbedding
from confflow.nn.mlp import MLP
from confflow.nn.time_embedding import TimeEmbedding, broadcast_time
from confflow.transforms.continuous import CNF, ODEConfig

__all__ = ["TorusVectorField", "torus_cnf"]


class TorusVectorField(nn.Module):
    """MLP vector field ``v(t, x)`` on a mixed real / interval / circle layout.

    Args:
        domain: layout of the ``D`` coordinates.
        hidden: hidden widths of the MLP.
        frequencies: time-embedding frequencies.
        activation: activation name (smooth ones keep the ODE well behaved).
        context_features: size of an optional ``[B, C]`` context appended to the input.
    """

    def __init__(
        self,
        domain: Domain,
        hidden: Sequence[int] = (128, 128),
        frequencies: int = 4,
        activation: str = "silu",
        context_features: int = 0,
    ) -> None:
        super().__init__()
        self.domain = domain
        self.embed = DomainEmbedding(domain)
        self.time = TimeEmbedding(frequencies)
        self.context_features = context_features
        width = self.embed.out_features + self.time.dim + context_features
        self.net = MLP(width, domain.dim, hidden, activation, zero_init=False)
        low, high = domain.bounds()
        interval = domain.mask(Kind.INTERVAL)
        half = torch.where(interval, (high - low) / 2, torch.ones_like(low))
        self.register_buffer("interval", interval, persistent=False)
        self.register_buffer("low", torch.where(interval, low, 0.0), persistent=False)
        self.register_buffer("high", torch.where(interval, high, 0.0), persistent=False)
        self.register_buffer("half_width", half, persistent=False)

    def forward(self, t: Tensor | float, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Velocity ``[B, D]`` at coordinates ``x`` ``[B, D]`` (radians for angles).

        Raises:
            ValueError: wrong shape, or context missing / unexpected.
        """
        if x.dim() != 2 or x.shape[1] != self.domain.dim:
            raise ValueError(f"x: expected [B, {self.domain.dim}], got {tuple(x.shape)}")
        if (context is None) != (self.context_features == 0):
            raise ValueError(
                f"context: the field expects {self.context_features} context features, got "
                f"{None if context is None else tuple(context.shape)}"
            )
        tt = self.time(broadcast_time(t, x.shape[0], x))
        parts = [self.embed(x), tt] + ([] if context is None else [context])
        v = self.net(torch.cat(parts, dim=-1))
        if bool(self.interval.any()):
            lo, hi, half = (b.to(x.dtype) for b in (self.low, self.high, self.half_width))
            damp = (x - lo) * (hi - x) / half**2
            v = torch.where(self.interval, v * damp, v)
        return v


def torus_cnf(
    domain: Domain,
    hidden: Sequence[int] = (128, 128),
    config: ODEConfig | None = None,
    context_features: int = 0,
) -> CNF:
    """A :class:`CNF` over ``domain`` with a :class:`TorusVectorField`.

    Args:
        domain: layout of the internal coordinates (torsions as circles).
        hidden: MLP widths.
        config: solver settings.
        context_features: size of an optional context.
    """
    field = TorusVectorField(domain, hidden, context_features=context_features)
    return CNF(field, (domain.dim,), config, domain=domain)
