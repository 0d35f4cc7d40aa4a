"""The MMFF94 energy terms as batched torch functions (MMFF units: Angstrom, kcal/mol).

All functions work in a *batch-last* layout: positions ``x: [N, 3, B]`` in Angstrom, so that
gathering the atoms of a term (``index_select`` on dim 0) copies contiguous rows and every
elementwise operation vectorises over the batch. Per-term constants have shape ``[M, 1]``.
Each function returns ``[B]`` energies in kcal/mol, summed over its terms. They are pure
tensor code, so ``torch.compile`` can fuse them.

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

The non-bonded terms come with their analytic gradient (:func:`nonbonded_energy_and_gradient`),
computed in the same pass over the pair list.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "KCAL_TO_KJ",
    "angle_energy",
    "bond_energy",
    "bonded_energy",
    "nonbonded_energy_and_gradient",
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


def _gather(x: Tensor, idx: Tensor, column: int) -> Tensor:
    """Positions ``[M, 3, B]`` of atom ``column`` of every term in ``idx: [M, k]``."""
    return x.index_select(0, idx[:, column])


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(1)


def _norm(a: Tensor) -> Tensor:
    return (a * a).sum(1).sqrt()


def _cross(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.cross(a, b, dim=1)


def _angle_deg(rji: Tensor, rjk: Tensor) -> Tensor:
    """Angle between ``rji`` and ``rjk`` (``[M, 3, B]``) in degrees, ``[M, B]``."""
    return _DEG * torch.atan2(_norm(_cross(rji, rjk)), _dot(rji, rjk))


def bond_energy(x: Tensor, idx: Tensor, kb: Tensor, r0: Tensor) -> Tensor:
    """Quartic bond stretch.

    Args:
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 2]`` bonded atoms.
        kb: ``[M, 1]`` force constants in mdyne/A.
        r0: ``[M, 1]`` reference lengths in A.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    dr = _norm(_gather(x, idx, 0) - _gather(x, idx, 1)) - r0
    return (0.5 * _C1 * kb * dr * dr * (1.0 + _CS * dr + _C3 * _CS * _CS * dr * dr)).sum(0)


def angle_energy(x: Tensor, idx: Tensor, ka: Tensor, theta0: Tensor, linear: Tensor) -> Tensor:
    """Cubic angle bend, or ``c1 ka (1 + cos theta)`` where ``linear``.

    Args:
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 3]`` atoms ``(i, j, k)``, ``j`` central.
        ka: ``[M, 1]`` force constants in mdyne A/rad^2.
        theta0: ``[M, 1]`` reference angles in degrees.
        linear: ``[M, 1]`` bool, central atom of a linear MMFF type.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = _gather(x, idx, 1)
    theta = _angle_deg(_gather(x, idx, 0) - xj, _gather(x, idx, 2) - xj)
    dth = theta - theta0
    bend = 0.5 * _C2 * ka * dth * dth * (1.0 + _CB * dth)
    straight = _C1 * ka * (1.0 + torch.cos(theta / _DEG))
    return torch.where(linear, straight, bend).sum(0)


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
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 3]`` atoms ``(i, j, k)``, ``j`` central.
        kijk: ``[M, 1]`` constants coupling ``r_ij`` with the angle, in mdyne/rad.
        kkji: ``[M, 1]`` constants coupling ``r_kj`` with the angle, in mdyne/rad.
        r0ij: ``[M, 1]`` reference lengths of ``i-j`` in A.
        r0kj: ``[M, 1]`` reference lengths of ``k-j`` in A.
        theta0: ``[M, 1]`` reference angles in degrees.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = _gather(x, idx, 1)
    rji = _gather(x, idx, 0) - xj
    rjk = _gather(x, idx, 2) - xj
    stretch = kijk * (_norm(rji) - r0ij) + kkji * (_norm(rjk) - r0kj)
    return (_C1 / _DEG * stretch * (_angle_deg(rji, rjk) - theta0)).sum(0)


def oop_energy(x: Tensor, idx: Tensor, koop: Tensor) -> Tensor:
    """Out-of-plane bend ``0.5 c2 koop chi^2`` with the Wilson angle ``chi`` in degrees.

    ``chi`` is the angle between bond ``j-l`` and the plane ``i-j-k``.

    Args:
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``, ``j`` central, ``l`` out of plane.
        koop: ``[M, 1]`` force constants in mdyne A/rad^2.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = _gather(x, idx, 1)
    normal = _cross(_gather(x, idx, 0) - xj, _gather(x, idx, 2) - xj)
    rjl = _gather(x, idx, 3) - xj
    sin_chi = _dot(normal, rjl) / (_norm(normal) * _norm(rjl))
    chi = _DEG * torch.asin(sin_chi.clamp(-1.0, 1.0))
    return (0.5 * _C2 * koop * chi * chi).sum(0)


def torsion_energy(x: Tensor, idx: Tensor, v: Tensor) -> Tensor:
    """Three-term torsion ``0.5 (V1 (1 + cos) + V2 (1 - cos 2 phi) + V3 (1 + cos 3 phi))``.

    ``phi`` comes from ``atan2``, whose gradient stays accurate in float32 for planar
    torsions (a cosine from normalised cross products loses it to cancellation there).

    Args:
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``.
        v: ``[M, 3]`` ``(V1, V2, V3)`` in kcal/mol.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    xj = _gather(x, idx, 1)
    xk = _gather(x, idx, 2)
    b1 = xj - _gather(x, idx, 0)
    b2 = xk - xj
    b3 = _gather(x, idx, 3) - xk
    n1 = _cross(b1, b2)
    n2 = _cross(b2, b3)
    phi = torch.atan2(_norm(b2) * _dot(b1, n2), _dot(n1, n2))
    v1, v2, v3 = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    energy = v1 * (1.0 + torch.cos(phi)) + v2 * (1.0 - torch.cos(2.0 * phi))
    return 0.5 * (energy + v3 * (1.0 + torch.cos(3.0 * phi))).sum(0)


def bonded_energy(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Sum of the bonded terms (bond, angle, stretch-bend, out-of-plane, torsion).

    Args:
        x: ``[N, 3, B]`` positions in A.
        p: constants and index tensors named as in
            :class:`~confflow.energies.mmff_params.MMFFParameters`, constants ``[M, 1]``.

    Returns:
        ``[B]`` energies in kcal/mol.
    """
    return (
        bond_energy(x, p["bond_idx"], p["bond_kb"], p["bond_r0"])
        + angle_energy(x, p["angle_idx"], p["angle_ka"], p["angle_theta0"], p["angle_linear"])
        + stretch_bend_energy(
            x,
            p["stbn_idx"],
            p["stbn_kijk"],
            p["stbn_kkji"],
            p["stbn_r0ij"],
            p["stbn_r0kj"],
            p["stbn_theta0"],
        )
        + oop_energy(x, p["oop_idx"], p["oop_koop"])
        + torsion_energy(x, p["torsion_idx"], p["torsion_v"])
    )


def nonbonded_energy_and_gradient(
    x: Tensor,
    idx: Tensor,
    rstar: Tensor,
    eps: Tensor,
    qq: Tensor,
    distance_dielectric: bool,
) -> tuple[Tensor, Tensor]:
    """Buffered 14-7 van der Waals plus buffered Coulomb over a pair list, with the gradient.

    The gradient is analytic: each pair's force is added to both atoms with ``index_add``.

    Args:
        x: ``[N, 3, B]`` positions in A.
        idx: ``[M, 2]`` interacting pairs.
        rstar: ``[M, 1]`` ``R*_ij`` in A.
        eps: ``[M, 1]`` well depths in kcal/mol.
        qq: ``[M, 1]`` ``q_i q_j / D`` in e^2, 1-4 scaling included.
        distance_dielectric: ``1/(r + 0.05)^2`` instead of ``1/(r + 0.05)``.

    Returns:
        ``([B]`` energies in kcal/mol, ``[N, 3, B]`` gradient in kcal/mol/A).
    """
    first, second = idx[:, 0], idx[:, 1]
    d = x.index_select(0, first) - x.index_select(0, second)  # [M, 3, B]
    r = _norm(d)
    inv_a = 1.0 / (r + 0.07 * rstar)
    a7 = (1.07 * rstar * inv_a).pow(7)
    r6 = r.pow(6)
    rs7 = rstar.pow(7)
    inv_b = 1.0 / (r6 * r + 0.12 * rs7)
    b = 1.12 * rs7 * inv_b - 2.0
    energy = eps * a7 * b
    de_dr = -eps * a7 * (7.0 * inv_a * b + 7.84 * rs7 * r6 * inv_b * inv_b)
    inv_c = 1.0 / (r + _BUFFER)
    coulomb = _COULOMB * qq * inv_c
    if distance_dielectric:
        coulomb = coulomb * inv_c
        de_dr = de_dr - 2.0 * coulomb * inv_c
    else:
        de_dr = de_dr - coulomb * inv_c
    force = (de_dr / r).unsqueeze(1) * d
    gradient = torch.zeros_like(x).index_add(0, first, force).index_add(0, second, -force)
    return (energy + coulomb).sum(0), gradient
