r"""The MBAR free energy of a torsion macrostate from umbrella-sampling windows, with its error.

The windows' biases (:class:`~confflow.md.umbrella.UmbrellaConfig`) are removed with MBAR
(:mod:`confflow.md.mbar`). Errors come from a block bootstrap: every window's series is cut into
contiguous blocks, blocks are resampled with replacement within each window and MBAR is solved
again, so correlation inside a window is kept. As with any umbrella sampling, the estimate is
only as good as the sampling of the slow motions orthogonal to the torsion within each window;
check it against an independent estimate (independent chains; for ``aldp`` also replica
exchange, ``datasets/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import logsumexp

from confflow.md.config import MDInputError
from confflow.md.free_energy import MacrostateFreeEnergy
from confflow.md.mbar import mbar_free_energies, mbar_log_weights

if TYPE_CHECKING:  # the windows' module imports this one
    from confflow.md.umbrella import UmbrellaConfig

__all__ = ["UmbrellaEstimate", "umbrella_free_energy"]


@dataclass(frozen=True)
class UmbrellaEstimate(MacrostateFreeEnergy):
    """``F_B - F_A`` in kT of a torsion macrostate B and its complement A, from umbrella sampling.

    Attributes:
        delta_f: ``F_B - F_A = -ln(P(B) / P(A))`` in kT under the unbiased distribution.
        stderr: block-bootstrap standard error in kT.
        fraction: ``P(B)`` under the unbiased distribution.
        n_frames: frames over all windows.
        n_windows: windows.
        n_bootstrap: bootstrap replicates.
        profile_edges: ``[M + 1]`` torsion bin edges in rad.
        profile: ``[M]`` free energy of each torsion bin in kT (minimum 0; ``inf`` if empty).
    """

    n_windows: int
    n_bootstrap: int
    profile_edges: np.ndarray
    profile: np.ndarray


def _delta_f(log_w: np.ndarray, in_b: np.ndarray) -> float:
    """``F_B - F_A = ln(P(A) / P(B))`` in kT, A the complement of B."""
    return float(logsumexp(log_w[~in_b]) - logsumexp(log_w[in_b]))


def umbrella_free_energy(
    umbrella: UmbrellaConfig,
    temperature: float,
    series: list[np.ndarray],
    in_b: Callable[[np.ndarray], np.ndarray],
    *,
    n_blocks: int = 10,
    n_segments: int = 1,
    n_bootstrap: int = 100,
    profile_bins: int = 72,
    seed: int = 0,
) -> UmbrellaEstimate:
    """MBAR free energy ``F_B - F_A`` of a torsion macrostate B relative to its complement A.

    The standard error comes from a block bootstrap.

    Args:
        umbrella: the windows.
        temperature: temperature of the windows in K.
        series: per-window torsion series ``[T_k]`` in rad, in time order; with
            ``n_segments > 1``, each the concatenation of that many equally long independent
            runs (chains, as :func:`read_umbrella` returns them).
        in_b: maps torsions (rad) to booleans, True in macrostate B (e.g. ``lambda t: t > 0``);
            A is the rest.
        n_blocks: contiguous blocks per window and segment for the bootstrap (a block never
            spans two segments).
        n_segments: independent runs in each window's series.
        n_bootstrap: bootstrap replicates.
        profile_bins: bins of the free-energy profile over ``(-pi, pi]``.
        seed: bootstrap seed.

    Raises:
        MDInputError: a series per window missing, a window not made of ``n_segments`` equal
            segments of at least ``n_blocks`` frames, or a macrostate that no sample (or every
            sample) falls in.
    """
    if len(series) != umbrella.n_windows:
        raise MDInputError(f"series: expected {umbrella.n_windows} windows, got {len(series)}")
    if n_segments < 1 or any(len(s) % n_segments for s in series):
        raise MDInputError(f"series: every window must split into {n_segments} equal segments")
    if min(len(s) for s in series) < n_blocks * n_segments:
        raise MDInputError(
            f"series: every segment needs >= n_blocks ({n_blocks}) frames, "
            f"{n_blocks * n_segments} per window"
        )
    theta = np.concatenate(series)
    mask = np.asarray(in_b(theta), dtype=bool)
    if mask.all() or not mask.any():
        raise MDInputError("in_b: every sample falls on one side; the macrostates are not sampled")
    counts = np.array([len(s) for s in series])
    bias = umbrella.bias_kt(theta, temperature)
    f = mbar_free_energies(bias, counts)
    log_w = mbar_log_weights(bias, counts, f)
    edges = np.linspace(-math.pi, math.pi, profile_bins + 1)
    hist = np.bincount(
        np.clip(np.digitize(theta, edges[1:-1]), 0, profile_bins - 1),
        weights=np.exp(log_w),
        minlength=profile_bins,
    )
    with np.errstate(divide="ignore"):
        profile = -np.log(hist)
    profile -= profile[np.isfinite(profile)].min()

    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    segment = counts // n_segments
    sizes = segment // n_blocks  # block length per window; a segment's remainder is dropped
    n_picks = n_blocks * n_segments
    sub_counts = sizes * n_picks
    boot = []
    for _ in range(n_bootstrap):
        index = []
        for start, seg, size in zip(offsets, segment, sizes, strict=True):
            picks = rng.integers(0, n_picks, size=n_picks)
            first = start + (picks // n_blocks) * seg + (picks % n_blocks) * size
            index.append((first[:, None] + np.arange(size)[None, :]).ravel())
        idx = np.concatenate(index)
        sub_bias = bias[:, idx]
        sub_f = mbar_free_energies(sub_bias, sub_counts, initial=f)
        sub_mask = mask[idx]
        if sub_mask.all() or not sub_mask.any():
            continue
        boot.append(_delta_f(mbar_log_weights(sub_bias, sub_counts, sub_f), sub_mask))
    return UmbrellaEstimate(
        delta_f=_delta_f(log_w, mask),
        stderr=float(np.std(boot, ddof=1)) if len(boot) > 1 else math.inf,
        fraction=float(np.exp(log_w[mask]).sum()),
        n_frames=int(counts.sum()),
        n_windows=umbrella.n_windows,
        n_bootstrap=len(boot),
        profile_edges=edges,
        profile=profile,
    )
