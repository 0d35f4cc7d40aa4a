"""A smooth cap on energies, for training on samples with huge (clashing) energies.

Early in training a flow proposes atom clashes with energies of 1e10 kJ/mol and more; their
gradients swamp everything else. :func:`linlog_cap` keeps energies below a threshold
unchanged and grows only logarithmically above it::

    cap(E) = E                                  for E <= t
    cap(E) = t + s log(1 + (E - t) / s)         for E >  t

Value and first derivative are continuous at ``t`` (slope 1 on both sides); above ``t`` the
slope ``1 / (1 + (E - t)/s)`` decays, so forces from clashes are damped but keep their
direction. ``s`` (same units as the energies, default 1) sets how soon the logarithm bends.
The cap is monotonic, so the ordering of energies is preserved.

Example:
    >>> import torch
    >>> linlog_cap(torch.tensor([10.0, 1e3, 1e12]), threshold=100.0, scale=10.0)
    tensor([ 10.0000, 145.1086, 353.2844])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.energies.base import Energy

__all__ = ["CappedEnergy", "linlog_cap"]


def linlog_cap(energy: Tensor, threshold: float, scale: float = 1.0) -> Tensor:
    """Linear below ``threshold``, logarithmic above (see the module docstring).

    Args:
        energy: energies of any shape, e.g. ``[B]`` in kJ/mol (or reduced, in kT).
        threshold: ``t``, in the units of ``energy``; must be finite.
        scale: ``s > 0``, in the units of ``energy``.

    Returns:
        Capped energies, same shape and dtype; differentiable everywhere (``+inf`` stays
        ``+inf``, with zero gradient).

    Raises:
        ValueError: non-finite ``threshold`` or non-positive ``scale``.
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold: must be finite, got {threshold}")
    if not scale > 0:
        raise ValueError(f"scale: must be positive, got {scale}")
    excess = (energy - threshold).clamp(min=0.0)
    return torch.where(energy > threshold, threshold + scale * torch.log1p(excess / scale), energy)


class CappedEnergy(Energy):
    """Another energy passed through :func:`linlog_cap`.

    Args:
        energy: the energy to cap (its ``event_shape`` is kept).
        threshold: in kJ/mol.
        scale: in kJ/mol.
    """

    def __init__(self, energy: Energy, threshold: float, scale: float = 1.0) -> None:
        super().__init__()
        linlog_cap(torch.zeros(1), threshold, scale)  # validates the arguments
        self.base = energy
        self.threshold = threshold
        self.scale = scale

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The wrapped energy's event shape."""
        return self.base.event_shape

    def _energy(self, x: Tensor) -> Tensor:
        return linlog_cap(self.base.energy(x), self.threshold, self.scale)
