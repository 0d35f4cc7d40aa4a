"""Maximum-likelihood fitting of a flow to samples (forward KL)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.distributions.flow import Flow

__all__ = ["fit_maximum_likelihood"]


def fit_maximum_likelihood(
    flow: Flow,
    data: Tensor,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    warmup: int = 50,
    clip: float = 10.0,
    seed: int = 0,
) -> list[float]:
    """Fits ``flow`` to ``data`` by minimising the mean negative log-likelihood.

    AdamW with a linear warm-up and cosine decay, gradient-norm clipping, mini-batches drawn
    with a seeded generator. Steps with a non-finite loss are skipped.

    Args:
        flow: the model (trained in place).
        data: ``[N, D]`` training samples in the flow's data domain.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup: warm-up steps.
        clip: maximum gradient norm.
        seed: seed of the mini-batch draw.

    Returns:
        The training loss (mean NLL in nats) of every step; ``nan`` for skipped steps.
    """
    if data.dim() != 2 or data.shape[0] < 2:
        raise ValueError(
            f"fit_maximum_likelihood: data must be [N >= 2, D], got {tuple(data.shape)}"
        )
    if steps < 1 or batch_size < 1:
        raise ValueError("fit_maximum_likelihood: steps and batch_size must be positive")
    flow.train()
    opt = torch.optim.AdamW(flow.parameters(), lr=lr, weight_decay=weight_decay)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    for _ in range(steps):
        idx = torch.randint(data.shape[0], (batch_size,), generator=gen)
        loss = -flow.log_prob(data[idx]).mean()
        if not torch.isfinite(loss):
            history.append(math.nan)
            opt.zero_grad(set_to_none=True)
            sched.step()
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), clip)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    flow.eval()
    return history
