"""The energy contract: ``energy(x [B, N, 3] nm) -> [B] kJ/mol``, differentiable.

Every target in confflow (force fields, the OpenMM bridge, analytic toys) subclasses
:class:`Energy`. The public ``energy``/``reduced``/``energy_and_forces`` validate their input
and raise ``ValueError`` naming the energy; subclasses implement ``_energy``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MOLAR_GAS_CONSTANT", "Energy", "kT"]

#: Molar gas constant R = N_A k_B in kJ/(mol K).
MOLAR_GAS_CONSTANT = 8.314462618e-3


def kT(temperature: float) -> float:  # noqa: N802 (physics notation)
    """Thermal energy ``R T`` in kJ/mol at ``temperature`` in kelvin."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
    return MOLAR_GAS_CONSTANT * temperature


class Energy(nn.Module):
    """A potential energy over Cartesian positions.

    Attributes:
        n_atoms: number of atoms ``N`` the energy expects, or ``None`` for any (toys over
            ``[B, D]`` features set ``event_shape`` instead).
        event_shape: shape of one configuration, ``(N, 3)`` for molecules.
    """

    n_atoms: int | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one configuration; ``(N, 3)`` positions in nm for molecular energies."""
        if self.n_atoms is None:
            raise NotImplementedError(f"{type(self).__name__} must define event_shape")
        return (self.n_atoms, 3)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`energy`."""
        return self.energy(x)

    def energy(self, x: Tensor) -> Tensor:
        """Potential energy.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``[B]`` energies in kJ/mol, differentiable with respect to ``x``.

        Raises:
            ValueError: wrong shape or non-finite positions.
        """
        self._validate(x)
        return self._energy(x)

    def reduced(self, x: Tensor, temperature: float) -> Tensor:
        """Reduced energy ``u = E / (R T)`` (dimensionless, in kT).

        Args:
            x: ``[B, N, 3]`` positions in nm.
            temperature: kelvin.

        Returns:
            ``[B]`` reduced energies.
        """
        return self.energy(x) / kT(temperature)

    def energy_and_forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` in kJ/mol and forces ``-dE/dx`` ``[B, N, 3]`` in kJ/mol/nm."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            e = self.energy(x)
            (grad,) = torch.autograd.grad(e.sum(), x)
        return e.detach(), -grad

    def _energy(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _validate(self, x: Tensor) -> None:
        name = type(self).__name__
        shape = self.event_shape
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"{name}: positions must be a floating-point torch.Tensor")
        if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(
                f"{name}: expected positions of shape [B, {', '.join(map(str, shape))}], "
                f"got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: positions contain NaN or infinite values")
