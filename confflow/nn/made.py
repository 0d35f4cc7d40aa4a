"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from confflow.nn.mlp import make_activation

__all__ = ["MADE", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask ``[out, in]``."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in] -> [B, out]`` with masked weights."""
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Autoregressive network: outputs for coordinate ``i`` depend only on coordinates ``< i``.

    Args:
        degrees: for each input unit, the (1-based) index of the coordinate it encodes; several
            units may share a coordinate (a circle's cos and sin).
        features: number of coordinates ``D``.
        params_per_dim: outputs per coordinate ``P``; the output is ``[B, D, P]``.
        hidden: hidden widths.
        context_features: extra inputs seen by every output (degree 0).
        activation: activation name.
        zero_init: zero the last layer so a flow layer using it starts at the identity.
    """

    def __init__(
        self,
        degrees: Sequence[int],
        features: int,
        params_per_dim: int,
        hidden: Sequence[int] = (256, 256),
        context_features: int = 0,
        activation: str = "relu",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if features < 1 or not hidden:
            raise ValueError("MADE: needs at least one feature and one hidden layer")
        self.features = features
        self.params_per_dim = params_per_dim
        d_in = torch.tensor([*degrees, *([0] * context_features)])
        layers: list[nn.Module] = []
        prev = d_in
        for width in hidden:
            # Hidden degrees cycle through 1..D-1: a unit of degree m sees coordinates <= m.
            if features == 1:
                d_h = torch.zeros(width, dtype=torch.long)
            else:
                d_h = 1 + torch.arange(width) % (features - 1)
            layers += [
                MaskedLinear((d_h[:, None] >= prev[None, :]).long()),
                make_activation(activation),
            ]
            prev = d_h
        d_out = torch.arange(1, features + 1).repeat_interleave(params_per_dim)
        last = MaskedLinear((d_out[:, None] > prev[None, :]).long())
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in + context] -> [B, D, P]`` autoregressive parameters."""
        return self.net(x).unflatten(-1, (self.features, self.params_per_dim))
