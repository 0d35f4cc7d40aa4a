"""Importance weights in log space: ``log w = -u(x) - log q(x)``.

All functions take unnormalised log-weights ``[N]`` (nats) and work in float64 with
log-sum-exp, never exponentiating raw ratios. ``-inf`` marks a sample with zero weight.

Example:
    >>> import torch
    >>> log_w = log_weights(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0]))
    >>> kish_ess(log_w)
    1.0
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "expectation",
    "kish_ess",
    "largest_weight_share",
    "log_weights",
    "normalized_weights",
    "resample",
]


def _check(log_w: Tensor) -> Tensor:
    if not isinstance(log_w, Tensor) or log_w.dim() != 1 or log_w.numel() == 0:
        shape = tuple(log_w.shape) if isinstance(log_w, Tensor) else type(log_w).__name__
        raise ValueError(f"log-weights must be a non-empty [N] tensor, got {shape}")
    if torch.isnan(log_w).any():
        raise ValueError("log-weights contain NaN")
    if torch.isposinf(log_w).any():
        raise ValueError("log-weights contain +inf")
    if not torch.isfinite(log_w).any():
        raise ValueError("every log-weight is -inf: no sample carries weight")
    return log_w.to(torch.float64)


def log_weights(reduced_energy: Tensor, log_q: Tensor) -> Tensor:
    """Unnormalised log-weights ``-u(x) - log q(x)`` in float64.

    Args:
        reduced_energy: ``[N]`` reduced energies ``u = E / kT`` (dimensionless); ``+inf``
            (impossible configurations) gives weight zero.
        log_q: ``[N]`` log-densities of the proposal (nats).

    Returns:
        ``[N]`` float64 log-weights (nats).

    Raises:
        ValueError: shapes differ or are not ``[N]``, NaN anywhere, or ``log_q`` not finite.
    """
    if reduced_energy.dim() != 1 or reduced_energy.shape != log_q.shape:
        raise ValueError(
            f"log_weights: reduced_energy and log_q must both be [N], got "
            f"{tuple(reduced_energy.shape)} and {tuple(log_q.shape)}"
        )
    if torch.isnan(reduced_energy).any():
        raise ValueError("log_weights: reduced_energy contains NaN")
    if not bool(torch.isfinite(log_q).all()):
        raise ValueError("log_weights: log_q contains NaN or infinite values")
    return -reduced_energy.to(torch.float64) - log_q.to(torch.float64)


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


def largest_weight_share(log_w: Tensor) -> float:
    """Heavy-tail diagnostic: the largest normalised weight, in ``[1/N, 1]``.

    A share far above ``1/N`` (say above 1%) means one sample dominates every reweighted
    estimate, whatever the ESS suggests.
    """
    log_w = _check(log_w)
    return float(torch.exp(log_w.max() - torch.logsumexp(log_w, 0)))


def expectation(values: Tensor, log_w: Tensor) -> Tensor:
    """Self-normalised importance-sampling estimate ``sum_i w_i f(x_i) / sum_i w_i``.

    Args:
        values: ``[N]`` or ``[N, K]`` observables ``f(x_i)`` (any units; returned in the same).
        log_w: ``[N]`` unnormalised log-weights.

    Returns:
        ``[]`` or ``[K]`` float64 estimate.

    Raises:
        ValueError: ``values`` not matching ``N``, or non-finite values carrying weight.
    """
    w = normalized_weights(log_w)
    if values.dim() not in (1, 2) or values.shape[0] != w.shape[0]:
        raise ValueError(
            f"expectation: values must be [N] or [N, K] with N = {w.shape[0]}, "
            f"got {tuple(values.shape)}"
        )
    v = values.to(torch.float64)
    carried = (w > 0).reshape(-1, *([1] * (v.dim() - 1))).expand_as(v)
    if not bool(torch.isfinite(v[carried]).all()):
        raise ValueError("expectation: values are not finite where weights are positive")
    v = torch.where(carried, v, torch.zeros_like(v))
    return (w.reshape(-1, *([1] * (v.dim() - 1))) * v).sum(0)


def resample(log_w: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``n`` samples drawn with replacement in proportion to the weights.

    Systematic resampling (one uniform offset, ``n`` evenly spaced points on the weight
    CDF): unbiased, with lower variance than multinomial draws.

    Args:
        log_w: ``[N]`` unnormalised log-weights.
        n: number of indices to draw (``>= 1``).
        generator: optional RNG.

    Returns:
        ``[n]`` long indices into the ``N`` samples, in increasing order.
    """
    if n < 1:
        raise ValueError(f"resample: n must be >= 1, got {n}")
    w = normalized_weights(log_w)
    cdf = torch.cumsum(w, 0)
    cdf[-1] = 1.0
    u0 = torch.rand((), generator=generator, dtype=torch.float64)
    points = (u0 + torch.arange(n, dtype=torch.float64)) / n
    idx = torch.searchsorted(cdf, points, right=True)
    return idx.clamp(max=w.numel() - 1)
