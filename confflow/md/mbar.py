r"""MBAR for biased simulations at one temperature: window free energies and unbiased weights.

``K`` simulations (windows) sample :math:`p_k(x) \propto e^{-u(x) - b_k(x)}` with known reduced
biases :math:`b_k` (kT) and an unknown common potential :math:`u`. With all
:math:`N = \sum_k N_k` samples pooled, the MBAR window free energies :math:`f_k` solve

.. math:: f_k = -\ln \sum_{n=1}^{N} \frac{e^{-b_k(x_n)}}
          {\sum_j N_j\, e^{f_j - b_j(x_n)}},

and the unbiased distribution gives sample :math:`n` the weight
:math:`w_n \propto 1 / \sum_j N_j e^{f_j - b_j(x_n)}` (Shirts and Chodera, J. Chem. Phys. 129,
124105, 2008). The equations are the stationarity conditions of the convex function

.. math:: \Phi(f) = \sum_n \ln \sum_j N_j e^{f_j - b_j(x_n)} - \sum_k N_k f_k,

which :func:`mbar_free_energies` minimises by Newton's method with a trust region on the
exact gradient and Hessian (a handful of iterations instead of the thousands the
self-consistent fixed point can take, which matters inside a bootstrap). Near the minimum
:math:`\Phi` changes by less than its own rounding, so the trust region stops early; a few
Newton steps on the gradient alone (with the Hessian of the minimiser's end point) then bring
it to rounding level. The solution agrees with pymbar's (``tests/md/test_mbar.py``), which
``benchmarks/mbar.py`` measures at several times the cost.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from confflow.errors import InputError, RunError

__all__ = ["mbar_free_energies", "mbar_log_weights"]


_POLISH_STEPS = 8  # Newton steps on the gradient after the minimiser; 1-3 are used in practice


def _check(bias: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(bias, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    if b.ndim != 2 or n.shape != (b.shape[0],):
        raise InputError(f"bias: expected [K, N] with counts [K], got {b.shape} and {n.shape}")
    if not np.isfinite(b).all():
        raise InputError("bias: contains NaN or infinite values")
    if (n <= 0).any() or n.sum() != b.shape[1]:
        raise InputError(
            f"counts: need positive counts summing to the {b.shape[1]} samples, got {n.tolist()}"
        )
    return b, n


def _log_denominator(bias: np.ndarray, log_counts: np.ndarray, f: np.ndarray) -> np.ndarray:
    return logsumexp(log_counts[:, None] + f[:, None] - bias, axis=0)


def mbar_free_energies(
    bias: np.ndarray, counts: np.ndarray, initial: np.ndarray | None = None, tol: float = 1e-10
) -> np.ndarray:
    """Window free energies ``f [K]`` in kT, relative to window 0 (``f[0] = 0``).

    Args:
        bias: ``[K, N]`` reduced bias (kT) of every pooled sample under every window's bias;
            samples may be in any order.
        counts: ``[K]`` samples drawn in each window.
        initial: starting ``f`` (e.g. the previous bootstrap solution), zeros by default.
        tol: gradient tolerance per pooled sample.

    Raises:
        InputError: shapes that do not match, non-finite biases, or counts that are not
            positive or do not add up to ``N``.
        RunError: an optimiser that fails to converge.
    """
    b, n = _check(bias, counts)
    # e^{-b} scaled per sample so that its largest entry is 1: two matrix-vector products per
    # iteration instead of a log-sum-exp over the whole [K, N] matrix
    shift = b.min(axis=0)
    q = np.exp(shift[None, :] - b)

    def terms(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        f = np.concatenate([[0.0], g])
        top = f.max()
        c = n * np.exp(f - top)
        return f, c, top

    def objective(g: np.ndarray) -> float:
        f, c, top = terms(g)
        denominator = c @ q
        return float(np.log(denominator).sum() + len(denominator) * top - n @ f)

    def gradient(g: np.ndarray) -> np.ndarray:
        _, c, _ = terms(g)
        return (c * (q @ (1.0 / (c @ q))) - n)[1:]

    def hessian(g: np.ndarray) -> np.ndarray:
        _, c, _ = terms(g)
        w = c[:, None] * q / (c @ q)[None, :]  # [K, N] posterior of each window per sample
        return (np.diag(w.sum(axis=1)) - w @ w.T)[1:, 1:]

    start = np.zeros(len(n)) if initial is None else np.asarray(initial, dtype=np.float64)
    result = minimize(
        objective,
        (start - start[0])[1:],
        jac=gradient,
        hess=hessian,
        method="trust-exact",
        options={"gtol": tol * n.sum(), "maxiter": 1000},
    )
    g, grad = result.x, gradient(result.x)
    grad_norm = float(np.abs(grad).max(initial=0.0))
    if len(g) and grad_norm > 0.0:
        h = hessian(g)
        for _ in range(_POLISH_STEPS):
            try:
                trial = g - np.linalg.solve(h, grad)
            except np.linalg.LinAlgError:  # windows without overlap: keep the minimiser's f
                break
            trial_grad = gradient(trial)
            trial_norm = float(np.abs(trial_grad).max())
            if not trial_norm < grad_norm:
                break
            g, grad, grad_norm = trial, trial_grad, trial_norm
    if grad_norm > 1e-6 * n.sum():
        raise RunError(f"MBAR did not converge (largest gradient {grad_norm:.3g} samples)")
    return np.concatenate([[0.0], g])


def mbar_log_weights(bias: np.ndarray, counts: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Normalised log-weights ``[N]`` of the pooled samples under the unbiased distribution.

    Args:
        bias: ``[K, N]`` reduced biases (kT), as for :func:`mbar_free_energies`.
        counts: ``[K]`` samples per window.
        f: ``[K]`` window free energies from :func:`mbar_free_energies`.

    Returns:
        ``log w [N]`` with ``logsumexp(log w) == 0``.
    """
    b, n = _check(bias, counts)
    log_w = -_log_denominator(b, np.log(n), np.asarray(f, dtype=np.float64))
    return log_w - logsumexp(log_w)
