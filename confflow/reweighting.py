"""Importance weights in log space: ``log w = log p~(x) - log q(x)``.

All functions take unnormalised log-weights and work in float64 with log-sum-exp, never
exponentiating raw ratios.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kish_ess", "normalized_weights"]


def _check(log_w: Tensor) -> Tensor:
    if log_w.dim() != 1 or log_w.numel() == 0:
        raise ValueError(f"log-weights must be a non-empty [N] tensor, got {tuple(log_w.shape)}")
    if torch.isnan(log_w).any():
        raise ValueError("log-weights contain NaN")
    if not torch.isfinite(log_w).any():
        raise ValueError("every log-weight is -inf: no sample carries weight")
    return log_w.to(torch.float64)


def normalized_weights(log_w: Tensor) -> Tensor:
    """Self-normalised weights ``[N]`` (float64, summing to 1) from log-weights ``[N]``."""
    log_w = _check(log_w)
    return torch.exp(log_w - torch.logsumexp(log_w, 0))


def kish_ess(log_w: Tensor) -> float:
    """Kish effective sample size as a fraction of ``N``: ``(sum w)^2 / (N sum w^2)``.

    Args:
        log_w: ``[N]`` unnormalised log-weights (nats); ``-inf`` marks zero weight.

    Returns:
        ESS / N in ``[1/N, 1]``.
    """
    log_w = _check(log_w)
    log_ess = 2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)
    return float(torch.exp(log_ess) / log_w.numel())
