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

A free-energy profile along a collective variable ``s`` is the same sum over histogram bins,
``F_b = -log P(s in b)`` (:func:`free_energy_curve`).

Temperature reweighting: samples weighted towards temperature ``T0`` are reweighted to ``T1``
with ``log w' = log w - E (1/kT1 - 1/kT0)`` (``E`` in kJ/mol).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from confflow.energies.base import kT
from confflow.errors import InputError
from confflow.reweighting.weights import _check

__all__ = [
    "FreeEnergyCurve",
    "FreeEnergyDifference",
    "free_energy_curve",
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


@dataclass(frozen=True)
class FreeEnergyCurve:
    """A free-energy profile ``F_b = -ln P(s in bin b)`` (kT) along a variable ``s``, bootstrapped.

    ``P`` is normalised over the samples inside the bins' range, so ``F`` needs no shift:
    ``sum_b exp(-F_b) = 1``. Empty bins have ``F = inf``.

    Attributes:
        centres: ``[B]`` bin centres, in the units of ``s``.
        value: ``[B]`` point estimate of ``F_b`` (kT).
        std: ``[B]`` bootstrap standard deviation of ``value`` (kT); NaN where fewer than two
            replicates put weight in the bin (or without bootstrap).
        low: ``[B]`` 16th percentile of the bootstrap replicates (kT); NaN as for ``std``.
        high: ``[B]`` 84th percentile (kT): ``[low, high]`` is a 68% interval.
        counts: ``[B]`` samples with nonzero weight in each bin.
    """

    centres: Tensor
    value: Tensor
    std: Tensor
    low: Tensor
    high: Tensor
    counts: Tensor


def _bin_free_energy(log_w: Tensor, bins: Tensor, n_bins: int) -> Tensor:
    """``-ln(sum_{i in b} w_i / sum_i w_i)`` (kT) per bin, by log-sum-exp; ``[n_bins]``."""
    neg = torch.full((n_bins,), -math.inf, dtype=torch.float64)
    top = neg.scatter_reduce(0, bins, log_w, "amax")
    finite_top = torch.where(torch.isfinite(top), top, 0.0)
    sums = torch.zeros(n_bins, dtype=torch.float64).index_add_(
        0, bins, torch.exp(log_w - finite_top[bins])
    )
    log_bin = torch.log(sums) + finite_top
    return torch.logsumexp(log_bin, 0) - log_bin


def free_energy_curve(
    values: Tensor,
    log_w: Tensor,
    edges: Tensor,
    n_bootstrap: int = 100,
    generator: torch.Generator | None = None,
) -> FreeEnergyCurve:
    """Free-energy profile of weighted samples along a variable, with bootstrap errors.

    Samples outside ``[edges[0], edges[-1]]`` are left out; bins are half-open
    ``[e_b, e_{b+1})`` except the last, which is closed (as in :func:`numpy.histogram`).

    Args:
        values: ``[N]`` collective variable of the samples (any unit, e.g. rad).
        log_w: ``[N]`` log-weights towards the target (zeros for unbiased samples); ``-inf``
            for zero weight.
        edges: ``[B + 1]`` increasing bin edges, in the units of ``values``.
        n_bootstrap: bootstrap replicates over samples (``0`` for none: ``std``, ``low`` and
            ``high`` are then NaN).
        generator: RNG for the bootstrap.

    Returns:
        The :class:`FreeEnergyCurve`.

    Raises:
        InputError: shapes differ, edges not increasing, no weight inside the range, bad
            ``n_bootstrap``.

    Example:
        >>> import torch
        >>> curve = free_energy_curve(
        ...     torch.tensor([0.1, 0.2, 0.7]), torch.zeros(3), torch.tensor([0.0, 0.5, 1.0]),
        ...     n_bootstrap=0)
        >>> [round(float(f), 4) for f in curve.value], curve.counts.tolist()
        ([0.4055, 1.0986], [2, 1])
    """
    log_w = _check(log_w)
    values = torch.as_tensor(values, dtype=torch.float64)
    edges = torch.as_tensor(edges, dtype=torch.float64)
    if values.shape != log_w.shape:
        raise InputError(
            f"free_energy_curve: values must be [N = {log_w.numel()}], got {tuple(values.shape)}"
        )
    if edges.dim() != 1 or edges.numel() < 2 or not bool((edges.diff() > 0).all()):
        raise InputError("free_energy_curve: edges must be [B + 1 >= 2] and strictly increasing")
    if n_bootstrap < 0:
        raise InputError(f"free_energy_curve: n_bootstrap must be >= 0, got {n_bootstrap}")
    n_bins = edges.numel() - 1
    bins = torch.bucketize(values, edges, right=True) - 1
    bins = torch.where(values == edges[-1], n_bins - 1, bins)
    inside = (bins >= 0) & (bins < n_bins) & torch.isfinite(log_w)
    if not bool(inside.any()):
        raise InputError("free_energy_curve: no sample with weight lies inside the edges")
    bins, log_w = bins[inside], log_w[inside]
    value = _bin_free_energy(log_w, bins, n_bins)
    counts = torch.bincount(bins, minlength=n_bins)
    nan = torch.full((n_bins,), math.nan, dtype=torch.float64)
    std, low, high = nan, nan, nan
    if n_bootstrap > 0:
        n = log_w.numel()
        reps = torch.stack(
            [
                _bin_free_energy(log_w[idx], bins[idx], n_bins)
                for idx in torch.randint(0, n, (n_bootstrap, n), generator=generator)
            ]
        )
        reps = torch.where(torch.isfinite(reps), reps, math.nan)
        enough = (~torch.isnan(reps)).sum(0) >= 2
        mean = reps.nanmean(0)
        var = ((reps - mean) ** 2).nansum(0) / ((~torch.isnan(reps)).sum(0) - 1).clamp(min=1)
        std = torch.where(enough, var.sqrt(), math.nan)
        low = torch.where(enough, reps.nanquantile(0.16, 0), math.nan)
        high = torch.where(enough, reps.nanquantile(0.84, 0), math.nan)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return FreeEnergyCurve(centres, value, std, low, high, counts)


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
