"""Torch-native evaluation of an :class:`openmm.System` without a periodic box.

:class:`OpenMMSystemEnergy` reads the parameters of a system once and evaluates the same
energy as OpenMM, batched and differentiable, on any device and in float32 or float64:

* ``HarmonicBondForce``: ``k/2 (r - r0)^2``; ``HarmonicAngleForce``: ``k/2 (theta - theta0)^2``;
* ``PeriodicTorsionForce``: ``k (1 + cos(n phi - phi0))`` (IUPAC sign of ``phi``);
* ``NonbondedForce`` with ``NoCutoff``: Coulomb ``q_i q_j / (4 pi eps0 r)`` plus Lennard-Jones
  ``4 eps ((sigma/r)^12 - (sigma/r)^6)`` with Lorentz-Berthelot rules over all pairs, its
  exceptions replacing the listed pairs;
* ``GBSAOBCForce`` and OpenMM's OBC ``CustomGBForce`` (see :mod:`confflow.energies.openmm_gb`);
* ``CMMotionRemover`` is ignored (it adds no energy).

Any other force raises :class:`UnsupportedForceError` listing all of them. Pairwise terms are
dense ``[B, N, N]`` tensors (no gathers or scatters), so ``compile=True`` lets
``torch.compile`` fuse the energy and its backward into a few loops; eager mode is the
fallback when compilation is unavailable.

Example:
    >>> from confflow.energies.systems import alanine_dipeptide
    >>> ref = alanine_dipeptide("aldp")
    >>> energy = OpenMMSystemEnergy(ref.system)
    >>> x = torch.as_tensor(ref.positions)[None]
    >>> energy(x).shape
    torch.Size([1])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor, nn

from confflow.energies.base import Energy
from confflow.energies.openmm_gb import ONE_4PI_EPS0, OBCTerm, obc_from_custom_gb, obc_from_gbsaobc

__all__ = ["OpenMMSystemEnergy", "UnsupportedForceError"]

_KJ = unit.kilojoule_per_mole
_NM = unit.nanometer


class UnsupportedForceError(ValueError):
    """The system contains forces (or settings) that the torch evaluation cannot reproduce."""


def _buf(values) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _difference_operator(n_atoms: int, pairs: np.ndarray) -> Tensor:
    """``[N, V]`` matrix ``D`` with ``x^T D`` the vectors ``x[b] - x[a]`` for pairs ``(a, b)``."""
    d = np.zeros((n_atoms, len(pairs)))
    cols = np.arange(len(pairs))
    d[pairs[:, 0], cols] -= 1.0
    d[pairs[:, 1], cols] += 1.0
    return _buf(d)


def _vectors(x: Tensor, operator: Tensor) -> Tensor:
    """``[B, N, 3] -> [B, V, 3]`` difference vectors (a matmul, so backward is a matmul)."""
    return torch.matmul(x.transpose(1, 2), operator.to(x.dtype)).transpose(1, 2)


class _Bonds(nn.Module):
    def __init__(self, force: openmm.HarmonicBondForce, n_atoms: int) -> None:
        super().__init__()
        rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
        pairs = np.array([(a, b) for a, b, _, _ in rows], dtype=np.int64).reshape(-1, 2)
        self.register_buffer("op", _difference_operator(n_atoms, pairs))
        self.register_buffer("r0", _buf([r.value_in_unit(_NM) for _, _, r, _ in rows]))
        self.register_buffer("k", _buf([k.value_in_unit(_KJ / _NM**2) for *_, k in rows]))

    def forward(self, x: Tensor) -> Tensor:
        r = _vectors(x, self.op).norm(dim=-1)
        return (0.5 * self.k.to(x.dtype) * (r - self.r0.to(x.dtype)) ** 2).sum(-1)


class _Angles(nn.Module):
    def __init__(self, force: openmm.HarmonicAngleForce, n_atoms: int) -> None:
        super().__init__()
        rows = [force.getAngleParameters(i) for i in range(force.getNumAngles())]
        idx = np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
        pairs = np.concatenate([idx[:, [1, 0]], idx[:, [1, 2]]])
        self.register_buffer("op", _difference_operator(n_atoms, pairs))
        self.register_buffer("theta0", _buf([r[3].value_in_unit(unit.radian) for r in rows]))
        self.register_buffer("k", _buf([r[4].value_in_unit(_KJ / unit.radian**2) for r in rows]))

    def forward(self, x: Tensor) -> Tensor:
        u, v = _vectors(x, self.op).chunk(2, dim=1)
        theta = torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))
        return (0.5 * self.k.to(x.dtype) * (theta - self.theta0.to(x.dtype)) ** 2).sum(-1)


class _Torsions(nn.Module):
    def __init__(self, force: openmm.PeriodicTorsionForce, n_atoms: int) -> None:
        super().__init__()
        rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
        idx = np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
        pairs = np.concatenate([idx[:, [0, 1]], idx[:, [1, 2]], idx[:, [2, 3]]])
        self.register_buffer("op", _difference_operator(n_atoms, pairs))
        self.register_buffer("n", _buf([r[4] for r in rows]))
        self.register_buffer("phase", _buf([r[5].value_in_unit(unit.radian) for r in rows]))
        self.register_buffer("k", _buf([r[6].value_in_unit(_KJ) for r in rows]))

    def forward(self, x: Tensor) -> Tensor:
        b1, b2, b3 = _vectors(x, self.op).chunk(3, dim=1)
        n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
        phi = torch.atan2(b2.norm(dim=-1) * (b1 * n2).sum(-1), (n1 * n2).sum(-1))
        dt = x.dtype
        return (self.k.to(dt) * (1 + torch.cos(self.n.to(dt) * phi - self.phase.to(dt)))).sum(-1)


class _Nonbonded(nn.Module):
    """Coulomb + Lennard-Jones over all pairs, as upper-triangular ``[N, N]`` coefficients."""

    def __init__(self, force: openmm.NonbondedForce) -> None:
        super().__init__()
        n = force.getNumParticles()
        q, sigma, eps = np.zeros(n), np.zeros(n), np.zeros(n)
        for i in range(n):
            qi, si, ei = force.getParticleParameters(i)
            q[i] = qi.value_in_unit(unit.elementary_charge)
            sigma[i], eps[i] = si.value_in_unit(_NM), ei.value_in_unit(_KJ)
        qq = np.outer(q, q)
        s = 0.5 * (sigma[:, None] + sigma[None, :])
        e = np.sqrt(np.outer(eps, eps))
        for k in range(force.getNumExceptions()):
            i, j, qij, sij, eij = force.getExceptionParameters(k)
            for a, b in ((i, j), (j, i)):
                qq[a, b] = qij.value_in_unit(unit.elementary_charge**2)
                s[a, b], e[a, b] = sij.value_in_unit(_NM), eij.value_in_unit(_KJ)
        upper = np.triu(np.ones((n, n)), k=1)
        self.register_buffer("coulomb", _buf(ONE_4PI_EPS0 * qq * upper))
        self.register_buffer("c12", _buf(4 * e * s**12 * upper))
        self.register_buffer("c6", _buf(4 * e * s**6 * upper))

    def forward(self, inv_r: Tensor) -> Tensor:
        dt = inv_r.dtype
        inv_r6 = (inv_r * inv_r) ** 3
        pair = self.coulomb.to(dt) * inv_r + (self.c12.to(dt) * inv_r6 - self.c6.to(dt)) * inv_r6
        return pair.sum((-1, -2))


def _check_force(force: openmm.Force) -> str | None:
    """Why a supported force type is used in an unsupported way, else ``None``."""
    name = type(force).__name__
    if isinstance(force, openmm.NonbondedForce):
        if force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
            return f"{name} with nonbonded method {force.getNonbondedMethod()} (need NoCutoff)"
        if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
            return f"{name} with parameter offsets"
    if hasattr(force, "usesPeriodicBoundaryConditions") and force.usesPeriodicBoundaryConditions():
        return f"{name} with periodic boundary conditions"
    return None


class OpenMMSystemEnergy(Energy):
    """The potential energy of an :class:`openmm.System`, evaluated in torch.

    Args:
        system: a non-periodic system whose forces are all supported (module docstring).
        compile: evaluate through ``torch.compile`` (energy and its backward fused); falls
            back to eager mode, with a warning, if compilation fails.

    Raises:
        UnsupportedForceError: listing every unsupported force or setting.
        UnsupportedCustomGBError: a ``CustomGBForce`` outside OpenMM's OBC family.

    Shapes: ``energy(x)`` maps ``[B, N, 3]`` positions in nm to ``[B]`` energies in kJ/mol.
    """

    def __init__(self, system: openmm.System, compile: bool = False) -> None:
        super().__init__()
        self.n_atoms = system.getNumParticles()
        problems: list[str] = []
        if any(system.isVirtualSite(i) for i in range(self.n_atoms)):
            problems.append("virtual sites")
        self.bonded = nn.ModuleList()
        self.nonbonded: _Nonbonded | None = None
        self.gb: OBCTerm | None = None
        for force in system.getForces():
            problem = _check_force(force)
            if problem is not None:
                problems.append(problem)
            elif isinstance(force, openmm.HarmonicBondForce):
                self.bonded.append(_Bonds(force, self.n_atoms))
            elif isinstance(force, openmm.HarmonicAngleForce):
                self.bonded.append(_Angles(force, self.n_atoms))
            elif isinstance(force, openmm.PeriodicTorsionForce):
                self.bonded.append(_Torsions(force, self.n_atoms))
            elif isinstance(force, openmm.NonbondedForce):
                if self.nonbonded is not None:
                    problems.append("a second NonbondedForce")
                self.nonbonded = _Nonbonded(force)
            elif isinstance(force, openmm.GBSAOBCForce | openmm.CustomGBForce):
                if self.gb is not None:
                    problems.append(f"a second implicit-solvent force ({type(force).__name__})")
                if isinstance(force, openmm.GBSAOBCForce):
                    self.gb = OBCTerm(obc_from_gbsaobc(force))
                else:
                    self.gb = OBCTerm(obc_from_custom_gb(force))
            elif not isinstance(force, openmm.CMMotionRemover):
                problems.append(type(force).__name__)
        if system.usesPeriodicBoundaryConditions():
            problems.append("a periodic box")
        if problems:
            raise UnsupportedForceError(
                "system: unsupported by OpenMMSystemEnergy: " + ", ".join(problems)
            )
        self.register_buffer("eye", torch.eye(self.n_atoms, dtype=torch.float64))
        self._compiled: Callable[[Tensor], Tensor] | None = (
            torch.compile(self._total) if compile else None
        )

    def _total(self, x: Tensor) -> Tensor:
        energy = x.new_zeros(x.shape[0])
        for term in self.bonded:
            energy = energy + term(x)
        if self.nonbonded is not None or self.gb is not None:
            d = x[:, :, None, :] - x[:, None, :, :]
            r2 = (d * d).sum(-1)
            r = torch.sqrt(r2 + self.eye.to(x.dtype))
            if self.nonbonded is not None:
                energy = energy + self.nonbonded(1.0 / r)
            if self.gb is not None:
                energy = energy + self.gb(r2, r)
        return energy

    def _energy(self, x: Tensor) -> Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as err:  # any compiler failure means: run eager
                warnings.warn(
                    f"OpenMMSystemEnergy: torch.compile failed ({type(err).__name__}: {err}); "
                    "using eager mode",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._compiled = None
        return self._total(x)
