r"""Free-energy differences between macrostates and reweighting across temperatures.

For samples with log-weights ``log w_i`` towards ``p(x) ~ exp(-u(x))`` the free energy of a
macrostate ``A`` (a set of configurations) is, in units of kT, ``F_A`` below, and the free
energy of ``B`` relative to ``A`` is ``F_B - F_A`` (the one sign convention of confflow, shared
with the MD estimators of :mod:`confflow.md`):

.. math::
    F_A = -\log \sum_{i \in A} w_i + \mathrm{const},
    \qquad \Delta F_{A \to B} = F_B - F_A
        = -\log \frac{\sum_{i\in B} w_i}{\sum_{i\in A} w_i}.

Confidence intervals come from a nonparametric bootstrap over samples (independent flow
samples are i.i.d., so no blocking is needed; MD frames are not, see
:func:`free_energy_difference`'s ``block`` argument).

Temperature reweighting: samples weighted towards temperature ``T0`` are reweighted to ``T1``
with ``log w' = log w - E (1/kT1 - 1/kT0)`` (``E`` in kJ/mol).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from confflow.energies.base import kT
from confflow.reweighting.weights import _check

__all__ = [
    "FreeEnergyDifference",
    "free_energy_difference",
    "in_range",
    "reweight_temperature",
]


@dataclass(frozen=True)
class FreeEnergyDifference:
    """The free energy of macrostate ``B`` relative to ``A``, ``F_B - F_A`` in kT, bootstrapped.

    Attributes:
        value: point estimate of ``F_B - F_A = -ln(P(B) / P(A))`` (kT).
        std: bootstrap standard deviation of ``value`` (kT).
        low: lower end of the confidence interval of ``value`` (kT).
        high: upper end of the confidence interval of ``value`` (kT).
        confidence: level of the interval, e.g. 0.95.
        n_a: samples in ``A``; n_b: samples in ``B``.
    """

    value: float
    std: float
    low: float
    high: float
    confidence: float
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, float]:
        """Plain-data form for JSON output."""
        return asdict(self)


def in_range(values: Tensor, low: float, high: float, period: float | None = None) -> Tensor:
    """Macrostate predicate ``low <= v < high``, optionally on a circle.

    Args:
        values: ``[N]`` collective variable (e.g. a torsion in rad).
        low: lower bound, same units.
        high: upper bound, same units.
        period: for circular variables (``2 pi`` for angles): the range runs from ``low``
            upwards to ``high`` modulo ``period`` (so ``(3, -3)`` spans the seam at ``pi``).

    Returns:
        ``[N]`` boolean mask.
    """
    if period is None:
        if not low < high:
            raise ValueError(f"in_range: need low < high, got [{low}, {high})")
        return (values >= low) & (values < high)
    if not period > 0:
        raise ValueError(f"in_range: period must be positive, got {period}")
    width = (high - low) % period
    return torch.remainder(values - low, period) < width


def _delta(log_w: Tensor, in_a: Tensor, in_b: Tensor) -> Tensor:
    """``F_B - F_A = ln(sum_A w / sum_B w)`` (kT) over the last axis of ``log_w [..., N]``."""
    neg = torch.tensor(-math.inf, dtype=torch.float64, device=log_w.device)
    log_a = torch.logsumexp(torch.where(in_a, log_w, neg), -1)
    log_b = torch.logsumexp(torch.where(in_b, log_w, neg), -1)
    return log_a - log_b


def free_energy_difference(
    log_w: Tensor,
    in_a: Tensor,
    in_b: Tensor,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    block: int = 1,
    generator: torch.Generator | None = None,
) -> FreeEnergyDifference:
    """``F_B - F_A`` (kT) between two macrostates, with a bootstrap confidence interval.

    Args:
        log_w: ``[N]`` log-weights towards the target (use zeros for unbiased samples, e.g. MD).
        in_a: ``[N]`` boolean membership of macrostate ``A``.
        in_b: ``[N]`` boolean membership of macrostate ``B``.
        n_bootstrap: bootstrap replicates (``>= 10``).
        confidence: level of the percentile interval, in ``(0, 1)``.
        block: resample contiguous blocks of this many samples (``> 1`` for correlated
            samples such as MD frames; ``1`` for i.i.d. flow samples).
        generator: RNG for the bootstrap.

    Returns:
        The :class:`FreeEnergyDifference`. Bootstrap replicates where a macrostate holds no
        weight are dropped; if more than 5% are, ``std`` is ``inf``.

    Raises:
        ValueError: shapes differ, a macrostate has no sample with weight, bad options.
    """
    log_w = _check(log_w)
    n = log_w.numel()
    for name, mask in (("in_a", in_a), ("in_b", in_b)):
        if mask.shape != (n,) or mask.dtype != torch.bool:
            raise ValueError(
                f"free_energy_difference: {name} must be a boolean [N = {n}] tensor, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if not bool((mask & torch.isfinite(log_w)).any()):
            raise ValueError(f"free_energy_difference: macrostate {name[-1].upper()} is empty")
    if n_bootstrap < 10:
        raise ValueError(f"free_energy_difference: n_bootstrap must be >= 10, got {n_bootstrap}")
    if not 0 < confidence < 1:
        raise ValueError(f"free_energy_difference: confidence must be in (0, 1), got {confidence}")
    if not 1 <= block <= n:
        raise ValueError(f"free_energy_difference: block must be in [1, {n}], got {block}")
    value = float(_delta(log_w, in_a, in_b))
    n_blocks = math.ceil(n / block)
    starts = torch.randint(0, n - block + 1, (n_bootstrap, n_blocks), generator=generator)
    idx = (starts[:, :, None] + torch.arange(block)).reshape(n_bootstrap, -1)[:, :n]
    reps = _delta(log_w[idx], in_a[idx], in_b[idx])
    finite = reps[torch.isfinite(reps)]
    alpha = (1 - confidence) / 2
    if finite.numel() < 0.95 * n_bootstrap:
        std, low, high = math.inf, -math.inf, math.inf
    else:
        std = float(finite.std())
        low = float(torch.quantile(finite, alpha))
        high = float(torch.quantile(finite, 1 - alpha))
    return FreeEnergyDifference(value, std, low, high, confidence, int(in_a.sum()), int(in_b.sum()))


def reweight_temperature(
    log_w: Tensor, energy: Tensor, temperature: float, new_temperature: float
) -> Tensor:
    """Log-weights towards ``exp(-E / kT1)`` from log-weights towards ``exp(-E / kT0)``.

    Args:
        log_w: ``[N]`` log-weights at ``temperature`` (zeros for samples drawn at ``T0``).
        energy: ``[N]`` potential energies in kJ/mol.
        temperature: ``T0`` in K.
        new_temperature: ``T1`` in K.

    Returns:
        ``[N]`` float64 log-weights at ``T1`` (unnormalised).
    """
    log_w = _check(log_w)
    if energy.shape != log_w.shape:
        raise ValueError(
            f"reweight_temperature: energy must be [N = {log_w.numel()}], got {tuple(energy.shape)}"
        )
    if torch.isnan(energy).any():
        raise ValueError("reweight_temperature: energy contains NaN")
    shift = 1 / kT(new_temperature) - 1 / kT(temperature)
    return log_w - energy.to(torch.float64) * shift
