r"""Free-energy differences between macrostates from correlated MD samples, with errors.

A macrostate B is a boolean per frame (e.g. :math:`\phi > 0` of alanine dipeptide) and A is
its complement. With :math:`p` the fraction of frames in B, the free energy of B relative to A
in units of kT is (the library's one sign convention, as in
:func:`confflow.reweighting.free_energy_difference`)

.. math:: \Delta F = F_B - F_A = -\ln \frac{p}{1 - p},

and its standard error follows from that of :math:`p` by the delta method,
:math:`\sigma_{\Delta F} = \sigma_p / (p (1 - p))`. Because MD frames are correlated,
:math:`\sigma_p` is estimated two ways and the larger is reported:

* block averaging: the trajectory is cut into ``n_blocks`` contiguous blocks and
  :math:`\sigma_p` is the standard deviation of the block means over :math:`\sqrt{n}`;
* the integrated autocorrelation time :math:`\tau` of the indicator (Sokal's automatic
  window, :math:`M \ge 5\tau`), with :math:`\sigma_p^2 = \tau\, p (1 - p) / n`.

Both are only as good as the run is long compared with the slowest motion that changes the
state; check error bars with independent repeats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FreeEnergyEstimate",
    "MacrostateFreeEnergy",
    "block_standard_error",
    "integrated_autocorrelation_time",
    "macrostate_free_energy",
]


def _series(x: np.ndarray, name: str, min_length: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < min_length:
        raise ValueError(
            f"{name}: expected a 1-D series of >= {min_length} values, got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def block_standard_error(x: np.ndarray, n_blocks: int = 10) -> float:
    """Standard error of the mean of a correlated series by block averaging.

    Args:
        x: ``[T]`` series (frames in time order); trailing frames that do not fill a block are
            dropped.
        n_blocks: number of contiguous blocks (>= 2).

    Raises:
        ValueError: fewer frames than blocks, ``n_blocks < 2``, non-finite values.
    """
    if n_blocks < 2:
        raise ValueError(f"n_blocks: need at least 2 blocks, got {n_blocks}")
    arr = _series(x, "x", n_blocks)
    size = len(arr) // n_blocks
    means = arr[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(n_blocks))


def integrated_autocorrelation_time(x: np.ndarray, window_factor: float = 5.0) -> float:
    r"""Integrated autocorrelation time :math:`\tau = 1 + 2\sum_{t=1}^{M} \rho(t)` in frames.

    The window :math:`M` is the smallest lag with :math:`M \ge c\,\tau(M)` (Sokal), ``c =
    window_factor``. A constant series returns 1.

    Args:
        x: ``[T]`` series, ``T >= 2``.
        window_factor: Sokal's ``c``.
    """
    arr = _series(x, "x", 2)
    centred = arr - arr.mean()
    n = len(arr)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    if acov[0] <= 0:
        return 1.0
    rho = acov / acov[0]
    taus = 2.0 * np.cumsum(rho) - 1.0
    lags = np.arange(n)
    ok = lags >= window_factor * taus
    window = int(np.argmax(ok)) if ok.any() else n - 1
    return float(max(taus[window], 1.0))


@dataclass(frozen=True)
class MacrostateFreeEnergy:
    """Free energy of a macrostate B relative to its complement A, ``F_B - F_A`` in kT.

    Attributes:
        delta_f: ``F_B - F_A = -ln(P(B) / P(A))`` in kT (``inf`` when B is never visited,
            ``-inf`` when A is never visited).
        stderr: standard error of ``delta_f`` in kT.
        fraction: ``P(B)``, the probability of B (``1 / (1 + exp(delta_f))``).
        n_frames: frames used.
    """

    delta_f: float
    stderr: float
    fraction: float
    n_frames: int


@dataclass(frozen=True)
class FreeEnergyEstimate(MacrostateFreeEnergy):
    """``F_B - F_A`` in kT from one correlated time series, with block and autocorrelation errors.

    Attributes:
        delta_f: ``F_B - F_A = -ln(p / (1 - p))`` in kT, ``p`` the fraction of frames in B.
        stderr: the larger of the block and autocorrelation errors, in kT.
        fraction: ``p``, the fraction of frames in B.
        n_frames: frames used.
        stderr_block: block-averaging error in kT.
        stderr_autocorr: autocorrelation-time error in kT.
        tau: integrated autocorrelation time of the indicator, in frames.
        n_blocks: blocks used for the block error.
    """

    stderr_block: float
    stderr_autocorr: float
    tau: float
    n_blocks: int


def macrostate_free_energy(in_b: np.ndarray, n_blocks: int = 10) -> FreeEnergyEstimate:
    """Free energy ``F_B - F_A`` of macrostate B relative to its complement A, from a time series.

    Args:
        in_b: ``[T]`` booleans, True where the frame is in B (e.g. ``phi > 0``), in time order.
        n_blocks: blocks for the block-averaging error.

    Returns:
        The :class:`FreeEnergyEstimate` (errors are infinite when either state is empty).

    Raises:
        ValueError: not a 1-D boolean series, or fewer frames than blocks.
    """
    arr = np.asarray(in_b)
    if arr.dtype != np.bool_:
        raise ValueError(f"in_b: expected a boolean series, got dtype {arr.dtype}")
    x = _series(arr.astype(np.float64), "in_b", max(n_blocks, 2))
    p = float(x.mean())
    tau = integrated_autocorrelation_time(x)
    se_block = block_standard_error(x, n_blocks)
    se_tau = math.sqrt(tau * p * (1 - p) / len(x))
    if p in (0.0, 1.0):
        return FreeEnergyEstimate(
            delta_f=math.inf if p == 0.0 else -math.inf,
            stderr=math.inf,
            fraction=p,
            n_frames=len(x),
            stderr_block=math.inf,
            stderr_autocorr=math.inf,
            tau=tau,
            n_blocks=n_blocks,
        )
    jac = 1.0 / (p * (1.0 - p))
    return FreeEnergyEstimate(
        delta_f=-math.log(p / (1.0 - p)),
        stderr=max(se_block, se_tau) * jac,
        fraction=p,
        n_frames=len(x),
        stderr_block=se_block * jac,
        stderr_autocorr=se_tau * jac,
        tau=tau,
        n_blocks=n_blocks,
    )
