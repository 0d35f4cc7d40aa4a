"""Sinusoidal embedding of the flow time ``t`` in ``[0, 1]`` for vector fields."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["TimeEmbedding", "broadcast_time"]


def broadcast_time(t: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """Returns the time as a ``[batch]`` tensor with ``like``'s dtype and device.

    Args:
        t: a scalar, a 0-d tensor (as ODE solvers pass it) or a ``[batch]`` tensor.
        batch: batch size ``B``.
        like: tensor whose dtype and device the result takes.

    Raises:
        ValueError: a tensor time that is neither a scalar nor ``[batch]``.
    """
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t: expected a scalar or [{batch}] times, got shape {tuple(t.shape)}")
    return t


class TimeEmbedding(nn.Module):
    """``t [B] -> [B, dim]``: ``t`` followed by ``cos(pi k t), sin(pi k t)``, ``k = 1 .. n``.

    Args:
        frequencies: number ``n >= 1`` of frequencies; ``dim = 1 + 2 n``.
    """

    def __init__(self, frequencies: int = 8) -> None:
        super().__init__()
        if frequencies < 1:
            raise ValueError(f"TimeEmbedding: frequencies must be >= 1, got {frequencies}")
        self.dim = 1 + 2 * frequencies
        freqs = math.pi * torch.arange(1, frequencies + 1, dtype=torch.float64)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """``[B]`` times -> ``[B, dim]`` features."""
        arg = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([t[:, None], torch.cos(arg), torch.sin(arg)], dim=-1)
