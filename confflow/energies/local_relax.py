"""Batched relaxation of the local structure at fixed free torsions, in torch.

A torsional generator's frozen local structure (bonds, angles, rigid torsions of a reference
conformer) cannot follow the torsions: bond angles that open as a group turns into a gauche or
eclipsed position stay shut, so conformers away from the reference cost several kT more than
in the flexible molecule and the torsion marginals come out too narrow.
:class:`LocalRelaxation` moves the local structure ``s`` downhill at the given torsions with a
fixed number of preconditioned gradient steps, all conformers of a batch at once:

``s <- s - alpha * P grad_s E(theta, s)``, ``P = H^-1``,

where ``H`` is the Hessian of the energy in the local internal coordinates at the reference
(central differences of the analytic gradient, eigenvalues floored at :data:`MIN_CURVATURE`),
so one step is a Newton step for the quadratic part of the energy. A step is kept only where it
lowers a conformer's energy; elsewhere that conformer's step length halves for the next try.
Each step is clipped to at most :data:`MAX_BOND_STEP` nm per bond and :data:`MAX_ANGLE_STEP`
rad per angle or rigid torsion, and trial bond angles stay at least :data:`ANGLE_MARGIN` rad
inside ``(0, pi)`` (or where the reference has them, for near-linear groups).

The result ``s(theta)`` is a deterministic function of the torsions, so
``p(theta) ~ exp(-E(theta, s(theta)) / kT)`` is a well-defined target whose samples are real
conformers with exact energies. Its gradient follows the envelope theorem as for a true minimum:
``dE/dtheta`` is taken with ``s`` held (exact where the relaxation has converged).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from confflow.coordinates.torsional import TorsionalEmbedding
from confflow.domains import wrap_angle
from confflow.energies.base import Energy

__all__ = [
    "ANGLE_MARGIN",
    "MAX_ANGLE_STEP",
    "MAX_BOND_STEP",
    "MIN_CURVATURE",
    "LocalRelaxation",
    "check_same_atoms",
]

#: Largest change of one bond length in one step, nm.
MAX_BOND_STEP = 0.01
#: Largest change of one bond angle or rigid torsion in one step, rad.
MAX_ANGLE_STEP = 0.3
#: Floor of the reference Hessian's eigenvalues, kJ/mol per squared unit (nm or rad).
MIN_CURVATURE = 1.0
#: Central-difference step of the Hessian, in the coordinates' units (nm or rad).
_HESSIAN_STEP = 1e-5
#: Margin (rad) that keeps trial bond angles inside ``(0, pi)``.
ANGLE_MARGIN = 0.05
#: Shortest trial bond length, nm.
_MIN_BOND = 0.02


def check_same_atoms(owner: str, cartesian: Energy, embedding: TorsionalEmbedding) -> None:
    """Raises ``ValueError`` naming ``owner`` unless energy and embedding have the same atoms."""
    if cartesian.n_atoms != embedding.n_atoms:
        raise ValueError(
            f"{owner}: energy of {cartesian.n_atoms} atoms, embedding of {embedding.n_atoms}"
        )


class LocalRelaxation(nn.Module):
    """Relaxes the local structure of torsional conformers by preconditioned gradient steps.

    Args:
        cartesian: energy over positions ``[B, N, 3]`` nm, kJ/mol (e.g. ``MMFFEnergy``).
        embedding: the torsion space; its reference is the starting local structure.
        steps: gradient steps per relaxation (0: the frozen reference structure).

    Raises:
        ValueError: negative ``steps``, or energy and embedding of different molecules.
    """

    def __init__(self, cartesian: Energy, embedding: TorsionalEmbedding, steps: int) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"LocalRelaxation: steps must be >= 0, got {steps}")
        check_same_atoms("LocalRelaxation", cartesian, embedding)
        self.cartesian = cartesian
        self.embedding = embedding
        self.steps = steps
        n, size = embedding.n_atoms, embedding.z_ref.numel()
        free = torch.zeros(size, dtype=torch.bool)
        free[embedding.slots] = True
        local = torch.nonzero(~free).squeeze(1)
        bond, angle = local < n - 1, (local >= n - 1) & (local < 2 * n - 3)
        limits = torch.where(bond, MAX_BOND_STEP, MAX_ANGLE_STEP).double()
        start = embedding.z_ref.double().index_select(0, local)
        lower = torch.where(angle, start.clamp(max=ANGLE_MARGIN), -torch.inf)
        upper = torch.where(angle, start.clamp(min=torch.pi - ANGLE_MARGIN), torch.inf)
        self.register_buffer("_local", local, persistent=False)
        self.register_buffer("_limits", limits, persistent=False)
        self.register_buffer("_lower", torch.where(bond, _MIN_BOND, lower), persistent=False)
        self.register_buffer("_upper", upper, persistent=False)
        values, vectors = self._reference_hessian()
        floored = values.clamp_min(MIN_CURVATURE)
        self.register_buffer("_preconditioner", (vectors / floored) @ vectors.T, persistent=False)
        #: ``log det H`` of the reference Hessian in the local coordinates (eigenvalues
        #: floored at :data:`MIN_CURVATURE`; units kJ/mol per squared nm or rad).
        self.log_det_hessian = float(floored.log().sum())

    @property
    def reference(self) -> Tensor:
        """``[L]`` local internal coordinates of the reference (nm and rad), float64."""
        return self.embedding.z_ref.double().index_select(0, self._local)

    def internal(self, theta: Tensor, local: Tensor) -> Tensor:
        """Full internal coordinates ``[B, 3N-6]`` from torsions and local structure.

        Args:
            theta: ``[B, K]`` free torsions in rad.
            local: ``[B, L]`` local coordinates (bonds nm, angles and rigid torsions rad).

        Returns:
            ``[B, 3N-6]`` internal coordinates (torsions wrapped), differentiable in both
            inputs, dtype of ``theta``.
        """
        n = self.embedding.n_atoms
        z = self.embedding.z_ref.to(theta).expand(theta.shape[0], -1)
        z = z.index_copy(1, self._local, local.to(theta))
        z = z.index_copy(1, self.embedding.slots, theta)
        return torch.cat([z[:, : 2 * n - 3], wrap_angle(z[:, 2 * n - 3 :])], dim=1)

    def energy_at(self, theta: Tensor, local: Tensor) -> Tensor:
        """Energies ``[B]`` kJ/mol of the conformers with torsions ``theta`` and ``local``."""
        x, _ = self.embedding.ic(self.internal(theta, local))
        return self.cartesian.energy(x)

    def relax(self, theta: Tensor) -> Tensor:
        """The relaxed local structure ``[B, L]`` (dtype of ``theta``, no gradient) at ``theta``.

        Args:
            theta: ``[B, K]`` free torsions in rad.
        """
        return self._relax(theta)[0]

    def energy(self, theta: Tensor) -> Tensor:
        """Energies ``[B]`` kJ/mol at torsions ``theta [B, K]`` (rad) of the relaxed conformers.

        Differentiable in ``theta`` with the relaxed structure held (envelope theorem), from the
        gradient of the relaxation's last accepted evaluation: no extra energy evaluation. The
        result has no second derivatives.
        """
        return self.relaxed(theta)[0]

    def relaxed(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`energy` ``[B]`` (kJ/mol) and the relaxed structure ``[B, L]`` (no gradient).

        Args:
            theta: ``[B, K]`` free torsions in rad.
        """
        local, energy, grad = self._relax(theta)
        shift = theta - theta.detach()  # zero, carries the gradient
        return energy + (shift * grad).sum(1), local

    def _relax(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Relaxed structure ``[B, L]``, energies ``[B]`` kJ/mol, ``dE/dtheta [B, K]`` kJ/mol/rad.

        No gradient; dtype of ``theta``.
        """
        theta = wrap_angle(theta.detach())
        local = self.reference.to(theta).expand(theta.shape[0], -1).clone()
        energy, grad, grad_theta = self._energy_and_gradient(theta, local)
        scale = torch.ones_like(energy).unsqueeze(1)
        for _ in range(self.steps):
            step = -grad @ self._preconditioner.to(theta)
            over = (step.abs() / self._limits.to(theta)).amax(1, keepdim=True)
            trial = local + scale * step / over.clamp_min(1.0)
            trial = torch.minimum(
                torch.maximum(trial, self._lower.to(theta)), self._upper.to(theta)
            )
            trial_energy, trial_grad, trial_grad_theta = self._energy_and_gradient(theta, trial)
            better = (trial_energy < energy).unsqueeze(1)
            local = torch.where(better, trial, local)
            energy = torch.where(better[:, 0], trial_energy, energy)
            grad = torch.where(better, trial_grad, grad)
            grad_theta = torch.where(better, trial_grad_theta, grad_theta)
            scale = torch.where(better, torch.ones_like(scale), 0.5 * scale)
        return local, energy, grad_theta

    def _energy_and_gradient(self, theta: Tensor, local: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Energies ``[B]`` kJ/mol, ``dE/d local [B, L]`` and ``dE/dtheta [B, K]``.

        Energies are ``inf`` and both gradients zero where any of them is not finite.
        """
        with torch.enable_grad():
            local = local.detach().requires_grad_(True)
            theta = theta.detach().requires_grad_(True)
            energy = self.energy_at(theta, local)
            grad, grad_theta = torch.autograd.grad(energy.sum(), (local, theta))
        ok = (
            torch.isfinite(energy) & torch.isfinite(grad).all(1) & torch.isfinite(grad_theta).all(1)
        )
        energy = torch.where(ok, energy.detach(), torch.inf)
        keep = ok.unsqueeze(1)
        return energy, torch.where(keep, grad, 0.0), torch.where(keep, grad_theta, 0.0)

    def _reference_hessian(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues ``[L]`` and eigenvectors ``[L, L]`` of the reference Hessian, float64."""
        local = self.reference
        size = local.numel()
        shift = _HESSIAN_STEP * torch.eye(size, dtype=torch.float64)
        points = torch.cat([local + shift, local - shift])
        theta = self.embedding.z_ref.double().index_select(0, self.embedding.slots)
        _, grad, _ = self._energy_and_gradient(theta.expand(2 * size, -1), points)
        hessian = (grad[:size] - grad[size:]) / (2 * _HESSIAN_STEP)
        values, vectors = torch.linalg.eigh(0.5 * (hessian + hessian.T))
        return values, vectors
