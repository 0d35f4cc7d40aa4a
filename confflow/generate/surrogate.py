"""A cheap surrogate of a level's energy over a torsional model's torsions, fitted to its samples.

A GFN2-xTB energy costs about a thousand MMFF94 ones, too dear for the thousands of samples a
flow's training steps need. What training at the level has to learn, though, is the difference
``Delta = (E_level - E_ff) / kT`` at the model's own conformers, and that difference is smooth
in the torsions and tracks the force field's separate terms: xTB is softer than MMFF on
strained conformers, and charges some terms (out-of-plane bending, stretch-bend) far less than
MMFF does. On the MMFF ensembles of diphenhydramine and diclofenac (2,000 samples each),
``Delta`` has a spread of 2.5 and 2.1 kT; a fit on the total force-field energy and the
harmonics leaves 0.85 and 0.78 kT on held-out samples.

The surrogate, in kT, per torsional component::

    Delta_hat(theta) = sum_t beta_t * (u_t(theta) - mean_t)
                       + sum_j sum_{m=1,2} (a_jm cos(m theta_j) + b_jm sin(m theta_j)) + c
                       + sum_i alpha_i exp(-|e(theta) - e(theta_i)|^2 / (2 l^2))

with ``u_t`` the reduced energy of each MMFF term (bond, angle, stretch-bend, out-of-plane,
torsion, van der Waals, electrostatics) at the conformer. The first two lines are fitted by
ridge regression (:data:`RIDGE`; conformers far above the force field's lowest energy and,
after a first fit, outliers left out; no slope below :data:`SLOPE_FLOOR`, so that no term of
the force field turns into a reward for strain); the last is a kernel
ridge regression of what they leave, over the torsions' embedding ``e(theta) = (cos, sin)`` and
anchored at the kept samples ``theta_i`` (:data:`KERNEL_LENGTH`, :data:`KERNEL_NOISE`). The
harmonics carry the trend and extrapolate it; the kernel term follows what they miss where
samples exist and fades to zero away from them. On diclofenac's refinement rounds it lowers
the residual of the next round's fresh samples within 10 kT of the lowest energy from 1.08 to
0.90 kT (fits on 4,000 samples) and from 1.14 to 1.05 kT (on the first 2,000). On
lidocaine_H+, whose ``Delta`` follows the local structure MMFF gives the anilide (no kernel on
the torsions helps there), a slope per term instead of one on the total takes the residual of
fresh samples within 15 kT of the lowest energy from 1.20-1.76 to 0.99-1.48 kT. Both parts are
fitted on every sample already evaluated at the level, mapped to the component's own torsions
(a state mixture's mirror images and relabellings undone). The flow then trains on
``E_ff + kT Delta_hat`` (:class:`SurrogateTorsionalEnergy`, a third more per evaluation than the
force field alone); the level's exact energies of fresh samples reweight the result, so the
surrogate only shapes the proposal and never biases the weights.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from confflow.energies import Energy, TorsionalEnergy, kT

__all__ = ["FOURIER_ORDER", "KERNEL_ANCHORS", "KERNEL_LENGTH", "KERNEL_NOISE", "RIDGE"]
__all__ += ["SLOPE_FLOOR"]
__all__ += ["LevelFit", "SurrogateTorsionalEnergy", "fit_level", "fourier_features"]

#: Harmonics per torsion.
FOURIER_ORDER = 2
#: Ridge penalty on every coefficient but the intercept (features are O(1), targets in kT).
RIDGE = 1.0
#: Least slope on a force-field term: at -1 the level ignores the term; below it a term's strain
#: would lower the surrogate, which the flows could exploit where no sample constrains the fit.
SLOPE_FLOOR = -1.0
#: Samples more than this above the lowest force-field energy (kT) carry no weight at either
#: level and are left out of the fit.
ENERGY_WINDOW = 50.0
#: Samples whose residual after a first fit lies beyond this many robust standard deviations
#: (1.4826 median absolute deviations) are left out of the second, final fit: a few conformers
#: the level treats very differently (a proton moved, a clash) would otherwise tilt it.
TRIM = 4.0
#: Length scale of the kernel term in the torsions' (cos, sin) embedding: about 30 degrees of
#: one torsion.
KERNEL_LENGTH = 0.5
#: Noise-to-signal ratio of the kernel term (its ridge, in units of the kernel's unit variance).
KERNEL_NOISE = 0.3
#: Most anchors of the kernel term; beyond it, an evenly strided subset of the kept samples
#: (the solve costs the cube of this).
KERNEL_ANCHORS = 3000


def fourier_features(theta: Tensor, order: int = FOURIER_ORDER) -> Tensor:
    """``[B, 2 * order * K]``: ``cos(m theta_j)`` and ``sin(m theta_j)`` for ``m = 1..order``.

    Args:
        theta: ``[B, K]`` torsions (rad).
        order: harmonics per torsion.
    """
    m = torch.arange(1, order + 1, dtype=theta.dtype, device=theta.device)
    angles = (theta[:, :, None] * m).flatten(1)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def _kernel(theta: Tensor, anchors: Tensor) -> Tensor:
    """``[B, A]`` Gaussian kernel of torsions ``[B, K]`` (rad) and embedded anchors ``[A, 2K]``."""
    embedded = fourier_features(theta, order=1)
    return torch.exp(-torch.cdist(embedded, anchors).square() / (2 * KERNEL_LENGTH**2))


@dataclasses.dataclass(frozen=True)
class LevelFit:
    """The fitted surrogate of one torsional component (all values in kT, angles in rad).

    Attributes:
        slopes: ``[T]`` slopes on the force field's reduced term energies.
        means: ``[T]`` the reduced term energies the slopes are centred on.
        coef: ``[2 * FOURIER_ORDER * K]`` Fourier coefficients.
        offset: intercept.
        anchors: ``[A, 2K]`` the kernel term's anchors, embedded (``cos``, ``sin``).
        alpha: ``[A]`` the kernel term's coefficients.
        residual: root-mean-square residual (kT) of the whole fit, kernel term included, over
            the samples it kept (in sample: fresh samples see more).
        samples: samples the fit kept.
    """

    slopes: Tensor
    means: Tensor
    coef: Tensor
    offset: float
    anchors: Tensor
    alpha: Tensor
    residual: float
    samples: int

    def __call__(self, theta: Tensor, terms: Tensor) -> Tensor:
        """``[B]`` ``Delta_hat`` (kT) at torsions ``theta [B, K]`` (rad), terms ``[B, T]`` (kT)."""
        theta, device = theta.double(), theta.device
        slope = (terms.double() - self.means.to(device)) @ self.slopes.to(device)
        fourier = fourier_features(theta) @ self.coef.to(device)
        kernel = _kernel(theta, self.anchors.to(device)) @ self.alpha.to(device)
        return slope + fourier + self.offset + kernel


def _ridge(features: Tensor, delta: Tensor, ridge: float) -> Tensor:
    """Coefficients ``[F + 1]`` (the intercept last) of a ridge fit of ``delta`` on features."""
    design = torch.cat([features, torch.ones_like(delta)[:, None]], dim=1)
    penalty = torch.full((design.shape[1],), ridge, dtype=torch.float64)
    penalty[-1] = 0.0
    return torch.linalg.solve(design.T @ design + torch.diag(penalty), design.T @ delta)


def _floored_ridge(features: Tensor, delta: Tensor, ridge: float, slopes: int) -> Tensor:
    """:func:`_ridge` with the first ``slopes`` coefficients at least :data:`SLOPE_FLOOR`.

    Slopes that fall below the floor are held at it and the rest fitted again, until none does.
    """
    held = torch.zeros(features.shape[1] + 1, dtype=torch.bool)
    while True:
        target = delta - SLOPE_FLOOR * features[:, held[:-1]].sum(1)
        solution = torch.full((len(held),), SLOPE_FLOOR, dtype=torch.float64)
        solution[~held] = _ridge(features[:, ~held[:-1]], target, ridge)
        low = solution < SLOPE_FLOOR
        low[slopes:] = False
        if not bool(low.any()):
            return solution
        held |= low


def fit_level(theta: Tensor, terms: Tensor, delta: Tensor, ridge: float = RIDGE) -> LevelFit | None:
    """Ridge regression of ``delta`` on the force field's terms and Fourier features.

    Samples more than :data:`ENERGY_WINDOW` above the lowest force-field energy are left out;
    after a first fit, so are those whose residual lies beyond :data:`TRIM` robust standard
    deviations. Slopes stay at or above :data:`SLOPE_FLOOR`. The kernel term is then fitted to
    the kept samples' residual (at most :data:`KERNEL_ANCHORS` of them as anchors).

    Args:
        theta: ``[M, K]`` torsions (rad) of evaluated samples.
        terms: ``[M, T]`` their reduced force-field term energies (kT).
        delta: ``[M]`` ``(E_level - E_ff) / kT``.
        ridge: penalty on all coefficients but the intercept.

    Returns:
        The fit, or ``None`` with fewer samples than twice the coefficients.
    """
    theta, terms, delta = theta.double(), terms.double(), delta.double()
    if len(delta):
        u_ff = terms.sum(1)
        keep = u_ff <= u_ff.min() + ENERGY_WINDOW
        theta, terms, delta = theta[keep], terms[keep], delta[keep]
    means = terms.mean(0) if len(delta) else torch.zeros(terms.shape[1], dtype=torch.float64)
    n_terms = terms.shape[1]
    features = torch.cat([terms - means, fourier_features(theta)], dim=1)
    if len(delta) < 2 * (features.shape[1] + 1):
        return None
    solution = _floored_ridge(features, delta, ridge, n_terms)
    residual = features @ solution[:-1] + solution[-1] - delta
    centre = residual.median()
    scale = 1.4826 * (residual - centre).abs().median()
    keep = (residual - centre).abs() <= TRIM * scale
    if len(delta) > int(keep.sum()) >= 2 * (features.shape[1] + 1):
        theta, features, delta = theta[keep], features[keep], delta[keep]
        solution = _floored_ridge(features, delta, ridge, n_terms)
        residual = features @ solution[:-1] + solution[-1] - delta
    stride = torch.linspace(0, len(delta) - 1, min(len(delta), KERNEL_ANCHORS)).round().long()
    anchors = fourier_features(theta[stride], order=1)
    gram = _kernel(theta[stride], anchors)
    gram.diagonal().add_(KERNEL_NOISE)
    alpha = torch.linalg.solve(gram, -residual[stride])
    residual = residual + _kernel(theta, anchors) @ alpha
    return LevelFit(
        slopes=solution[:n_terms],
        means=means,
        coef=solution[n_terms:-1],
        offset=float(solution[-1]),
        anchors=anchors,
        alpha=alpha,
        residual=float(residual.square().mean().sqrt()),
        samples=len(delta),
    )


class SurrogateTorsionalEnergy(Energy):
    """``E(theta) = E_ff(theta) + kT * Delta_hat(theta)`` (kJ/mol) over torsions ``[B, K]`` (rad).

    Args:
        torsional: the component's force-field torsional energy.
        fit: the component's :class:`LevelFit`.
        temperature: K (sets ``kT``).
    """

    def __init__(self, torsional: TorsionalEnergy, fit: LevelFit, temperature: float) -> None:
        super().__init__()
        self.torsional = torsional
        self.fit = fit
        self.kt = kT(temperature)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(K,)``: one torsion (rad) per rotatable bond."""
        return self.torsional.event_shape

    def _energy(self, x: Tensor) -> Tensor:
        e, terms = self.torsional.energy_and_terms(x)
        return e + self.kt * self.fit(x, terms / self.kt).to(e.dtype)
