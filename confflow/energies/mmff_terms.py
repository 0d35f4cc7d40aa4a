"""The MMFF94 energy terms as batched torch functions (MMFF units: Angstrom, kcal/mol).

Every function takes positions ``x: [B, N, 3]`` in Angstrom and index tensors of one term kind,
and returns ``[B]`` energies in kcal/mol, summed over the terms. They are pure tensor code
(gathers, elementwise maths and sums), so ``torch.compile`` can fuse them.

Functional forms (Halgren 1996; constants as in RDKit's MMFF):

* bond stretch: ``0.5 c1 kb dr^2 (1 + cs dr + 7/12 cs^2 dr^2)``, ``c1 = 143.9325``,
  ``cs = -2 / A``;
* angle bend: ``0.5 c2 ka dth^2 (1 + cb dth)`` with ``dth`` in degrees,
  ``c2 = c1 (pi / 180)^2``, ``cb = -0.006981317 / deg``; linear centres ``c1 ka (1 + cos th)``;
* stretch-bend: ``c1 (pi / 180) (k_ijk dr_ij + k_kji dr_kj) dth``;
* out-of-plane: ``0.5 c2 koop chi^2``, ``chi`` the Wilson angle in degrees;
* torsion: ``0.5 (V1 (1 + cos phi) + V2 (1 - cos 2 phi) + V3 (1 + cos 3 phi))``;
* buffered 14-7 van der Waals:
  ``eps (1.07 R* / (r + 0.07 R*))^7 (1.12 R*^7 / (r^7 + 0.12 R*^7) - 2)``;
* buffered Coulomb: ``332.0716 q_i q_j / (D (r + 0.05)^n)``, ``n = 1`` (constant dielectric)
  or ``n = 2`` (distance-dependent), 1-4 pairs scaled by 0.75 (folded into ``qq``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "KCAL_TO_KJ",
    "angle_energy",
    "bond_energy",
    "nonbonded_energy",
    "oop_energy",
    "stretch_bend_energy",
    "torsion_energy",
]

#: Thermochemical calorie: kcal/mol -> kJ/mol.
KCAL_TO_KJ = 4.184

_C1 = 143.9325  # mdyne A -> kcal/mol, MMFF's rounded literal
_CS = -2.0
_C3 = 7.0 / 12.0
_DEG = 180.0 / math.pi
_C2 = _C1 / (_DEG * _DEG)
_CB = -0.006981317
_COULOMB = 332.0716
_BUFFER = 0.05


def _angle_deg(x: Tensor, idx: Tensor) -> Tensor:
    """Angle ``i-j-k`` in degrees for ``idx: [M, 3]``; returns ``[B, M]``."""
    rji = x[:, idx[:, 0]] - x[:, idx[:, 1]]
    rjk = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    sin = torch.linalg.cross(rji, rjk).norm(dim=-1)
    return _DEG * torch.atan2(sin, (rji * rjk).sum(-1))


def bond_energy(x: Tensor, idx: Tensor, kb: Tensor, r0: Tensor) -> Tensor:
    """Quartic bond stretch.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 2]`` bonded atoms.
        kb: ``[M]`` force constants in mdyne/A.
        r0: ``[M]`` reference lengths in A.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    dr = (x[:, idx[:, 0]] - x[:, idx[:, 1]]).norm(dim=-1) - r0
    return (0.5 * _C1 * kb * dr * dr * (1.0 + _CS * dr + _C3 * _CS * _CS * dr * dr)).sum(-1)


def angle_energy(x: Tensor, idx: Tensor, ka: Tensor, theta0: Tensor, linear: Tensor) -> Tensor:
    """Cubic angle bend, or ``c1 ka (1 + cos theta)`` where ``linear``.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 3]`` atoms ``(i, j, k)``, ``j`` central.
        ka: ``[M]`` force constants in mdyne A/rad^2.
        theta0: ``[M]`` reference angles in degrees.
        linear: ``[M]`` bool, central atom of a linear MMFF type.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    theta = _angle_deg(x, idx)
    dth = theta - theta0
    bend = 0.5 * _C2 * ka * dth * dth * (1.0 + _CB * dth)
    straight = _C1 * ka * (1.0 + torch.cos(theta / _DEG))
    return torch.where(linear, straight, bend).sum(-1)


def stretch_bend_energy(
    x: Tensor,
    idx: Tensor,
    kijk: Tensor,
    kkji: Tensor,
    r0ij: Tensor,
    r0kj: Tensor,
    theta0: Tensor,
) -> Tensor:
    """Stretch-bend coupling ``c1 (pi/180) (k_ijk dr_ij + k_kji dr_kj) dtheta``.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 3]`` atoms ``(i, j, k)``, ``j`` central.
        kijk: ``[M]`` constants coupling ``r_ij`` with the angle, in mdyne/rad.
        kkji: ``[M]`` constants coupling ``r_kj`` with the angle, in mdyne/rad.
        r0ij: ``[M]`` reference lengths of ``i-j`` in A.
        r0kj: ``[M]`` reference lengths of ``k-j`` in A.
        theta0: ``[M]`` reference angles in degrees.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    rji = x[:, idx[:, 0]] - x[:, idx[:, 1]]
    rjk = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    dij = rji.norm(dim=-1) - r0ij
    dkj = rjk.norm(dim=-1) - r0kj
    theta = _DEG * torch.atan2(torch.linalg.cross(rji, rjk).norm(dim=-1), (rji * rjk).sum(-1))
    return (_C1 / _DEG * (kijk * dij + kkji * dkj) * (theta - theta0)).sum(-1)


def oop_energy(x: Tensor, idx: Tensor, koop: Tensor) -> Tensor:
    """Out-of-plane bend ``0.5 c2 koop chi^2`` with the Wilson angle ``chi`` in degrees.

    ``chi`` is the angle between bond ``j-l`` and the plane ``i-j-k``.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``, ``j`` central, ``l`` out of plane.
        koop: ``[M]`` force constants in mdyne A/rad^2.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = x[:, idx[:, 1]]
    rji = x[:, idx[:, 0]] - xj
    rjk = x[:, idx[:, 2]] - xj
    rjl = x[:, idx[:, 3]] - xj
    normal = torch.linalg.cross(rji, rjk)
    sin_chi = (normal * rjl).sum(-1) / (normal.norm(dim=-1) * rjl.norm(dim=-1))
    chi = _DEG * torch.asin(sin_chi.clamp(-1.0, 1.0))
    return (0.5 * _C2 * koop * chi * chi).sum(-1)


def torsion_energy(x: Tensor, idx: Tensor, v: Tensor) -> Tensor:
    """Three-term torsion ``0.5 (V1 (1 + cos) + V2 (1 - cos 2 phi) + V3 (1 + cos 3 phi))``.

    Written as a polynomial in ``cos phi``, so no angle (and no branch cut) is needed.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``.
        v: ``[M, 3]`` ``(V1, V2, V3)`` in kcal/mol.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = x[:, idx[:, 1]]
    xk = x[:, idx[:, 2]]
    t1 = torch.linalg.cross(x[:, idx[:, 0]] - xj, xk - xj)
    t2 = torch.linalg.cross(xj - xk, x[:, idx[:, 3]] - xk)
    c = ((t1 * t2).sum(-1) / (t1.norm(dim=-1) * t2.norm(dim=-1))).clamp(-1.0, 1.0)
    c2 = c * c
    energy = (
        v[:, 0] * (1.0 + c) + v[:, 1] * (2.0 - 2.0 * c2) + v[:, 2] * (1.0 + c * (4.0 * c2 - 3.0))
    )
    return 0.5 * energy.sum(-1)


def nonbonded_energy(
    x: Tensor,
    idx: Tensor,
    rstar: Tensor,
    eps: Tensor,
    qq: Tensor,
    distance_dielectric: bool,
) -> Tensor:
    """Buffered 14-7 van der Waals plus buffered Coulomb over a pair list.

    Args:
        x: ``[B, N, 3]`` positions in A.
        idx: ``[M, 2]`` pairs.
        rstar: ``[M]`` ``R*_ij`` in A.
        eps: ``[M]`` well depths in kcal/mol.
        qq: ``[M]`` ``q_i q_j / D`` in e^2, 1-4 scaling included.
        distance_dielectric: ``1/(r + 0.05)^2`` instead of ``1/(r + 0.05)``.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    r = (x[:, idx[:, 0]] - x[:, idx[:, 1]]).norm(dim=-1)
    a = 1.07 * rstar / (r + 0.07 * rstar)
    a2 = a * a
    r2 = r * r
    r7 = r2 * r2 * r2 * r
    rs2 = rstar * rstar
    rs7 = rs2 * rs2 * rs2 * rstar
    vdw = eps * a2 * a2 * a2 * a * (1.12 * rs7 / (r7 + 0.12 * rs7) - 2.0)
    buffered = r + _BUFFER
    if distance_dielectric:
        buffered = buffered * buffered
    return (vdw + _COULOMB * qq / buffered).sum(-1)
