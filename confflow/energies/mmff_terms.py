"""The MMFF94 energy terms with analytic gradients, as batched torch functions.

MMFF units throughout: Angstrom, kcal/mol, kcal/mol/A. Positions come in a *component-major,
batch-last* layout ``x: [3, N, B]``: ``x[0]`` holds the ``x`` coordinates of every atom for
every conformer, so gathering the atoms of a term copies contiguous rows, and every vector
operation below is written out by component over ``[M, B]`` tensors (``M`` terms), which
``torch.compile`` fuses into one vectorised loop per term type. Per-term constants have shape
``[M, 1]``; pair constants are dense ``[N, N, 1]`` matrices.

Every term function returns its energy ``[B]`` and its gradient *pieces*: one ``[M, 3, B]``
gradient per atom column of the term's index tensor.
:class:`~confflow.energies.mmff.MMFFEnergy` concatenates the pieces and lists their owner
atoms, so that one ``index_add`` along dim 0 (outside any compiled graph, where it is a plain
vectorised row addition) accumulates them into the ``[N, 3, B]`` gradient. The non-bonded
terms run over all ``N x N`` atom pairs with dense parameter matrices (zero for excluded
pairs): twice the arithmetic of a pair list, but the gradient of atom ``i`` is a sum over row
``i``, with no scatter, and on a CPU that is several times faster than a gathered pair list.

The functional forms and their constants are those of :mod:`confflow.energies.mmff_forms`.

Gradients of angles use ``d cos(theta)``, with ``1 / sin(theta)`` bounded at ``1e8`` (as
RDKit bounds it) where a non-linear angle is straight; torsion gradients use the
Blondel-Karplus form, exact for any non-degenerate geometry.
"""

from __future__ import annotations

import torch
from torch import Tensor

from confflow.energies.mmff_forms import C1, C2, C3, CB, COULOMB, COULOMB_BUFFER, CS, DEG

__all__ = [
    "angle_terms",
    "bond_terms",
    "oop_terms",
    "pair_list_terms",
    "pair_terms",
    "torsion_terms",
]

_MIN_SIN = 1e-8

Vec = tuple[Tensor, Tensor, Tensor]
Terms = tuple[Tensor, tuple[Tensor, ...]]


def _atoms(x: Tensor, idx: Tensor, column: int) -> Vec:
    """Components ``3 x [M, B]`` of atom ``column`` of every term in ``idx: [M, k]``."""
    i = idx[:, column]
    return (x[0].index_select(0, i), x[1].index_select(0, i), x[2].index_select(0, i))


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _scale(s: Tensor | float, a: Vec) -> Vec:
    return (s * a[0], s * a[1], s * a[2])


def _dot(a: Vec, b: Vec) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _piece(a: Vec) -> Tensor:
    """A gradient piece ``[M, 3, B]`` from its components."""
    return torch.stack(a, 1)


def bond_terms(x: Tensor, idx: Tensor, kb: Tensor, r0: Tensor) -> Terms:
    """Quartic bond stretch.

    Args:
        x: ``[3, N, B]`` positions in A.
        idx: ``[M, 2]`` bonded atoms.
        kb: ``[M, 1]`` force constants in mdyne/A.
        r0: ``[M, 1]`` reference lengths in A.

    Returns:
        ``[B]`` energies in kcal/mol and the gradient pieces of atoms ``i, j`` in kcal/mol/A.
    """
    d = _sub(_atoms(x, idx, 0), _atoms(x, idx, 1))
    r = _dot(d, d).sqrt()
    dr = r - r0
    energy = 0.5 * C1 * kb * dr * dr * (1.0 + CS * dr + C3 * CS * CS * dr * dr)
    de_dr = C1 * kb * dr * (1.0 + 1.5 * CS * dr + 2.0 * C3 * CS * CS * dr * dr)
    gi = _piece(_scale(de_dr / r, d))
    return energy.sum(0), (gi, -gi)


def angle_terms(
    x: Tensor,
    idx: Tensor,
    ka: Tensor,
    theta0: Tensor,
    linear: Tensor,
    kijk: Tensor,
    kkji: Tensor,
    r0ij: Tensor,
    r0kj: Tensor,
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """Angle bend and the stretch-bend coupling on the same angles, sharing their geometry.

    Args:
        x: ``[3, N, B]`` positions in A.
        idx: ``[M, 3]`` atoms ``(i, j, k)``, ``j`` central.
        ka: ``[M, 1]`` bend force constants in mdyne A/rad^2.
        theta0: ``[M, 1]`` reference angles in degrees.
        linear: ``[M, 1]`` bool, central atom of a linear MMFF type.
        kijk: ``[M, 1]`` stretch-bend constants coupling ``r_ij`` with the angle, in
            mdyne/rad (zero for angles without stretch-bend).
        kkji: ``[M, 1]`` the same for ``r_kj``.
        r0ij: ``[M, 1]`` reference lengths of ``i-j`` in A.
        r0kj: ``[M, 1]`` reference lengths of ``k-j`` in A.

    Returns:
        ``[B]`` bend energies, ``[B]`` stretch-bend energies (kcal/mol), and the gradient
        pieces of atoms ``i, j, k`` in kcal/mol/A.
    """
    xj = _atoms(x, idx, 1)
    u = _sub(_atoms(x, idx, 0), xj)
    v = _sub(_atoms(x, idx, 2), xj)
    lu = _dot(u, u).sqrt()
    lv = _dot(v, v).sqrt()
    uh = _scale(1.0 / lu, u)
    vh = _scale(1.0 / lv, v)
    cos = _dot(uh, vh)
    normal = _cross(uh, vh)
    sin = _dot(normal, normal).sqrt()
    theta = torch.atan2(sin, cos)
    dth = DEG * theta - theta0
    # d(cos theta)/du and d(cos theta)/dv; d(theta) = -d(cos theta) / sin(theta)
    dcos_du = _scale(1.0 / lu, _sub(vh, _scale(cos, uh)))
    dcos_dv = _scale(1.0 / lv, _sub(uh, _scale(cos, vh)))
    dtheta_dcos = -DEG / sin.clamp_min(_MIN_SIN)  # degrees per unit of cos

    bend = 0.5 * C2 * ka * dth * dth * (1.0 + CB * dth)
    straight = C1 * ka * (1.0 + cos)
    dbend_dcos = torch.where(linear, C1 * ka, C2 * ka * dth * (1.0 + 1.5 * CB * dth) * dtheta_dcos)
    stretch = kijk * (lu - r0ij) + kkji * (lv - r0kj)
    stbn = C1 / DEG * stretch * dth
    dcos = dbend_dcos + C1 / DEG * stretch * dtheta_dcos
    gi = _add(_scale(dcos, dcos_du), _scale(C1 / DEG * kijk * dth, uh))
    gk = _add(_scale(dcos, dcos_dv), _scale(C1 / DEG * kkji * dth, vh))
    pieces = (_piece(gi), -_piece(_add(gi, gk)), _piece(gk))
    return torch.where(linear, straight, bend).sum(0), stbn.sum(0), pieces


def oop_terms(x: Tensor, idx: Tensor, koop: Tensor) -> Terms:
    """Out-of-plane bend ``0.5 c2 koop chi^2`` with the Wilson angle ``chi`` in degrees.

    ``chi`` is the angle between bond ``j-l`` and the plane ``i-j-k``.

    Args:
        x: ``[3, N, B]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``, ``j`` central, ``l`` out of plane.
        koop: ``[M, 1]`` force constants in mdyne A/rad^2.

    Returns:
        ``[B]`` energies in kcal/mol and the gradient pieces of atoms ``i, j, k, l``.
    """
    xj = _atoms(x, idx, 1)
    a = _sub(_atoms(x, idx, 0), xj)
    c = _sub(_atoms(x, idx, 2), xj)
    w = _sub(_atoms(x, idx, 3), xj)
    n = _cross(a, c)
    nn = _dot(n, n)
    ww = _dot(w, w)
    norms = (nn * ww).sqrt()
    sin_chi = (_dot(n, w) / norms).clamp(-1.0, 1.0)
    chi = DEG * torch.asin(sin_chi)
    de_ds = C2 * koop * chi * DEG / (1.0 - sin_chi * sin_chi).clamp_min(1e-16).sqrt()
    ds_dw = _sub(_scale(1.0 / norms, n), _scale(sin_chi / ww, w))
    ds_dn = _sub(_scale(1.0 / norms, w), _scale(sin_chi / nn, n))
    gi = _scale(de_ds, _cross(c, ds_dn))
    gk = _scale(de_ds, _cross(ds_dn, a))
    gl = _scale(de_ds, ds_dw)
    gj = _scale(-1.0, _add(_add(gi, gk), gl))
    energy = 0.5 * C2 * koop * chi * chi
    return energy.sum(0), (_piece(gi), _piece(gj), _piece(gk), _piece(gl))


def torsion_terms(x: Tensor, idx: Tensor, v: Tensor) -> Terms:
    """Three-term torsion ``0.5 (V1 (1 + cos) + V2 (1 - cos 2 phi) + V3 (1 + cos 3 phi))``.

    ``phi`` comes from ``atan2`` (accurate in float32 for planar torsions); the gradient is
    the Blondel-Karplus form, ``d phi / d x_i = -|b2| n1 / |n1|^2`` and so on.

    Args:
        x: ``[3, N, B]`` positions in A.
        idx: ``[M, 4]`` atoms ``(i, j, k, l)``.
        v: ``[M, 3]`` ``(V1, V2, V3)`` in kcal/mol.

    Returns:
        ``[B]`` energies in kcal/mol and the gradient pieces of atoms ``i, j, k, l``.
    """
    xj = _atoms(x, idx, 1)
    xk = _atoms(x, idx, 2)
    b1 = _sub(xj, _atoms(x, idx, 0))
    b2 = _sub(xk, xj)
    b3 = _sub(_atoms(x, idx, 3), xk)
    n1 = _cross(b1, b2)
    n2 = _cross(b2, b3)
    b2b2 = _dot(b2, b2)
    l2 = b2b2.sqrt()
    phi = torch.atan2(l2 * _dot(b1, n2), _dot(n1, n2))
    cos1, sin1 = torch.cos(phi), torch.sin(phi)
    cos2, sin2 = 2.0 * cos1 * cos1 - 1.0, 2.0 * sin1 * cos1
    cos3, sin3 = cos1 * (2.0 * cos2 - 1.0), sin1 * (2.0 * cos2 + 1.0)
    v1, v2, v3 = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    energy = 0.5 * (v1 * (1.0 + cos1) + v2 * (1.0 - cos2) + v3 * (1.0 + cos3))
    de_dphi = 0.5 * (-v1 * sin1 + 2.0 * v2 * sin2 - 3.0 * v3 * sin3)
    gi = _scale(-de_dphi * l2 / _dot(n1, n1), n1)
    gl = _scale(de_dphi * l2 / _dot(n2, n2), n2)
    f1 = _dot(b1, b2) / b2b2
    f3 = _dot(b3, b2) / b2b2
    gj = _add(_scale(-f1 - 1.0, gi), _scale(f3, gl))
    gk = _add(_scale(-f3 - 1.0, gl), _scale(f1, gi))
    return energy.sum(0), (_piece(gi), _piece(gj), _piece(gk), _piece(gl))


def _buffered_pairs(
    r: Tensor, rstar: Tensor, eps: Tensor, qq: Tensor, distance_dielectric: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Pair energies (vdW, electrostatic; kcal/mol) and ``(dE/dr) / r`` at distances ``r`` (A)."""
    inv_a = 1.0 / (r + 0.07 * rstar)
    a7 = (1.07 * rstar * inv_a).pow(7)
    r6 = r.pow(6)
    rs7 = rstar.pow(7)
    inv_b = 1.0 / (r6 * r + 0.12 * rs7)
    b = 1.12 * rs7 * inv_b - 2.0
    vdw = eps * a7 * b
    de_dr = -eps * a7 * (7.0 * inv_a * b + 7.84 * rs7 * r6 * inv_b * inv_b)
    inv_c = 1.0 / (r + COULOMB_BUFFER)
    coulomb = COULOMB * qq * inv_c
    if distance_dielectric:
        coulomb = coulomb * inv_c
        de_dr = de_dr - 2.0 * coulomb * inv_c
    else:
        de_dr = de_dr - coulomb * inv_c
    return vdw, coulomb, de_dr / r


def pair_terms(
    x: Tensor,
    rstar: Tensor,
    eps: Tensor,
    qq: Tensor,
    diagonal: Tensor,
    distance_dielectric: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Buffered 14-7 van der Waals plus buffered Coulomb over all atom pairs, with the gradient.

    Every pair is visited twice (``i, j`` and ``j, i``), hence the factor 1/2 on the energy;
    the gradient of atom ``i`` is the sum over row ``i``. This dense form suits compiled
    kernels (no scatter); eager evaluation uses :func:`pair_list_terms`.

    Args:
        x: ``[3, N, B]`` positions in A.
        rstar: ``[N, N, 1]`` ``R*_ij`` in A (any positive value for excluded pairs).
        eps: ``[N, N, 1]`` well depths in kcal/mol, zero for excluded pairs.
        qq: ``[N, N, 1]`` ``q_i q_j / D`` in e^2, 1-4 scaling included, zero for excluded
            pairs.
        diagonal: ``[N, N, 1]`` identity, added to the distances so that an atom's zero
            distance to itself divides nothing by zero (its constants are zero).
        distance_dielectric: ``1/(r + 0.05)^2`` instead of ``1/(r + 0.05)``.

    Returns:
        ``[B]`` van der Waals energies, ``[B]`` electrostatic energies (kcal/mol) and the
        ``[N, 3, B]`` gradient in kcal/mol/A.
    """
    d = tuple(x[k][:, None] - x[k][None] for k in range(3))  # 3 x [N, N, B], x_i - x_j
    r = _dot(d, d).sqrt() + diagonal
    vdw, coulomb, f = _buffered_pairs(r, rstar, eps, qq, distance_dielectric)
    gradient = torch.stack([(f * dk).sum(1) for dk in d], 1)
    return 0.5 * vdw.sum((0, 1)), 0.5 * coulomb.sum((0, 1)), gradient


def pair_list_terms(
    x: Tensor,
    idx: Tensor,
    rstar: Tensor,
    eps: Tensor,
    qq: Tensor,
    distance_dielectric: bool,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    """The non-bonded terms of :func:`pair_terms` over a pair list (half the arithmetic).

    Args:
        x: ``[3, N, B]`` positions in A.
        idx: ``[M, 2]`` interacting pairs.
        rstar: ``[M, 1]`` ``R*_ij`` in A.
        eps: ``[M, 1]`` well depths in kcal/mol.
        qq: ``[M, 1]`` ``q_i q_j / D`` in e^2, 1-4 scaling included.
        distance_dielectric: ``1/(r + 0.05)^2`` instead of ``1/(r + 0.05)``.

    Returns:
        ``[B]`` van der Waals and ``[B]`` electrostatic energies (kcal/mol), and the gradient
        pieces of atoms ``i, j`` in kcal/mol/A.
    """
    d = _sub(_atoms(x, idx, 0), _atoms(x, idx, 1))
    vdw, coulomb, f = _buffered_pairs(_dot(d, d).sqrt(), rstar, eps, qq, distance_dielectric)
    gi = _piece(_scale(f, d))
    return vdw.sum(0), coulomb.sum(0), (gi, -gi)
