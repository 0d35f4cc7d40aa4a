"""Reweighting an ensemble from the energy it was made for to another level of theory.

Samples ``x_i`` with log-weights ``log w_i = -E(x_i) / kT - log q(x_i)`` (an ensemble of the
force field ``E``) target another energy ``E'`` (e.g. GFN2-xTB) with

``log w'_i = log w_i - (E'(x_i) - E(x_i)) / kT``,

exact for any ``E'`` because ``q`` is known. Two effective sample sizes describe the result:

* ``ess``: the Kish ESS of ``w'`` — how many independent samples of ``E'``'s Boltzmann
  distribution the ensemble is worth;
* ``ess_change``: what the change of level costs, the ratio of that ESS to the Kish ESS at
  ``E`` of the same samples (1 when ``E' - E`` is constant; with exact samples of ``E`` it is
  the Kish ESS of ``r_i = exp(-(E' - E)(x_i) / kT)``).

(The overlap of the two Boltzmann distributions themselves, ``1 / E_E[r^2]``, is dominated by
strained conformers where the levels disagree most, which neither distribution populates; its
importance-sampling estimate from a flow's samples is too noisy to report.)

Samples without an energy at the new level (a failed calculation) are excluded from both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from confflow.energies.base import kT
from confflow.reweighting.weights import kish_ess

__all__ = ["LevelChange", "change_level"]


@dataclass
class LevelChange:
    """Log-weights at a new level of theory.

    Attributes:
        log_w: ``[B]`` float64 log-weights at the new level (nats, shifted by a constant);
            ``-inf`` where the sample has no energy at that level.
        ok: ``[B]`` bool, the samples with an energy at the new level.
        ess: Kish ESS fraction of ``log_w`` over the samples in ``ok``.
        ess_before: Kish ESS fraction of the old log-weights over the same samples.
    """

    log_w: Tensor
    ok: Tensor
    ess: float
    ess_before: float

    @property
    def ess_change(self) -> float:
        """``ess / ess_before``: what the change of level costs (see the module)."""
        return self.ess / self.ess_before

    @property
    def n_failed(self) -> int:
        """Samples without an energy at the new level."""
        return int((~self.ok).sum())


def change_level(log_w: Tensor, energy: Tensor, energy_level: Tensor, temperature: float):
    """Log-weights of samples at the energy ``energy_level`` instead of ``energy``.

    Args:
        log_w: ``[B]`` log-weights at ``energy`` (nats; ``-inf`` for zero weight).
        energy: ``[B]`` kJ/mol, the energy the log-weights are for.
        energy_level: ``[B]`` kJ/mol at the new level; NaN marks a failed calculation.
        temperature: K.

    Returns:
        The :class:`LevelChange`.

    Raises:
        ValueError: shapes differ, or no sample has an energy at the new level.
    """
    log_w, energy, energy_level = (t.to(torch.float64) for t in (log_w, energy, energy_level))
    if not log_w.shape == energy.shape == energy_level.shape or log_w.dim() != 1:
        raise ValueError(
            f"change_level: expected three [B] tensors, got {tuple(log_w.shape)}, "
            f"{tuple(energy.shape)}, {tuple(energy_level.shape)}"
        )
    ok = torch.isfinite(energy_level) & torch.isfinite(energy)
    if not bool(ok.any()):
        raise ValueError("change_level: no sample has an energy at the new level")
    delta = (energy_level - energy) / kT(temperature)
    delta = torch.where(ok, delta - delta[ok].mean(), 0.0)  # a constant shift changes nothing
    log_r = torch.where(ok, -delta, -torch.inf)
    new = torch.where(ok, log_w + log_r, -torch.inf)
    return LevelChange(new, ok, kish_ess(new[ok]), kish_ess(log_w[ok]))
