"""A replay buffer of weighted samples: each target evaluation serves many training steps.

FAB (:mod:`confflow.training.fab`) keeps its AIS end points here with their weights for
``p^2 / q``; the importance-weighted forward KL (:func:`~confflow.training.energy_loss` with
``forward_replay``) keeps the flow's recent samples with their weights ``p / q_old``. Each
weight refers to the density that drew its sample, so samples of different steps pool into one
self-normalised estimate.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A first-in first-out buffer of samples with their log-weights and the flow's ``log q``.

    Args:
        capacity: samples kept (the oldest leave first).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.x: Tensor | None = None
        self.log_w = torch.zeros(0, dtype=torch.float64)
        self.log_q = torch.zeros(0, dtype=torch.float64)

    def __len__(self) -> int:
        return int(self.log_w.numel())

    def add(self, x: Tensor, log_w: Tensor, log_q: Tensor) -> None:
        """Adds samples ``x [B, *S]`` with their log-weights and ``log q`` (``[B]``, nats)."""
        keep = torch.isfinite(log_w) & torch.isfinite(log_q)
        x, log_w, log_q = x[keep].detach(), log_w[keep].double(), log_q[keep].double()
        self.x = (x if self.x is None else torch.cat([self.x, x]))[-self.capacity :]
        self.log_w = torch.cat([self.log_w.to(log_w.device), log_w])[-self.capacity :]
        self.log_q = torch.cat([self.log_q.to(log_q.device), log_q])[-self.capacity :]

    def draw(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n]`` indices drawn with probability ``softmax(log_w)``, without replacement."""
        n = min(n, len(self))
        probs = torch.softmax(self.log_w, 0)
        return torch.multinomial(probs.float() + 1e-30, n, replacement=False, generator=generator)

    def reweight(self, index: Tensor, log_q_now: Tensor) -> None:
        """Moves the drawn samples' weights to FAB's current target ``p^2 / q_now``."""
        log_q_now = log_q_now.detach().double()
        self.log_w[index] += self.log_q[index] - log_q_now
        self.log_q[index] = log_q_now
