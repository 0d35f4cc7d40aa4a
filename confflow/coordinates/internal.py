r"""The Cartesian <-> internal-coordinate bijection, as a :class:`~confflow.transforms.Transform`.

``forward`` maps internal coordinates ``z [B, 3N-6]`` (latent side) to Cartesian positions
``x [B, N, 3]`` in nm (data side); ``inverse`` maps back. Layout of ``z``, with rows numbered
in the Z-matrix's placement order:

* ``z[:, :N-1]`` — bonds ``|x_i - x_j|`` of rows 1..N-1, nm (real line; must be positive);
* ``z[:, N-1:2N-3]`` — angles ``i-j-k`` of rows 2..N-1, rad in ``(0, pi)``;
* ``z[:, 2N-3:]`` — torsions ``i-j-k-l`` of rows 3..N-1, rad on the circle ``[-pi, pi)``
  (IUPAC sign: positive when, looking along ``j -> k``, ``i`` turns clockwise onto ``l``).

Rigid-body convention. The six external degrees of freedom are removed by placing the frame
atoms (Z-matrix rows 0-2) canonically: row 0 at the origin, row 1 on the +x axis, row 2 in the
xy-plane with positive y. ``forward`` always returns this canonical pose; ``inverse`` accepts any
pose (internal coordinates are invariant to rotations and translations).

Log-determinant. In the canonical pose the positions have ``3N-6`` free components
``s = (x_1, x_2, y_2, x_3, y_3, z_3, ...)`` (frame atoms by row). Each later atom is placed in
spherical coordinates ``(b, theta, phi)`` about its references, and row 2 in plane polar
coordinates ``(b, theta)``; the Jacobian ``ds/dz`` is block-triangular in placement order, so

.. math::

    \log\left|\det \frac{\partial s}{\partial z}\right|
      = \log b_2 + \sum_{n \ge 3} \left(2 \log b_n + \log \sin\theta_n\right),

which ``forward`` returns; ``inverse`` returns its negative (evaluated at the input's internal
coordinates, i.e. the density of the canonical pose). :func:`confflow.testing.
assert_frame_ladj_matches_autograd` checks both against autograd on ``s``.

Placement is batched NeRF (natural extension reference frame): atoms are placed generation by
generation (:attr:`ZMatrix.generations`), vectorised over samples and over the atoms of a
generation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.coordinates.zmatrix import ZMatrix
from confflow.domains import Domain
from confflow.transforms.base import Transform

__all__ = ["InternalCoordinates", "internal_domain"]


def internal_domain(n_atoms: int) -> Domain:
    """Layout of the ``3N-6`` internal coordinates: bonds (real), angles ``(0, pi)``, torsions."""
    return (
        Domain.real(n_atoms - 1)
        + Domain.interval(n_atoms - 2, 0.0, math.pi)
        + Domain.circle(n_atoms - 3)
    )


class InternalCoordinates(Transform):
    """Bijection internal coordinates ``[B, 3N-6]`` (forward input) <-> positions ``[B, N, 3]`` nm.

    Args:
        zmatrix: the Z-matrix that defines the coordinates.

    Attributes:
        n_atoms: number of atoms ``N``.
        features: ``3N-6``.
        latent_domain: :func:`internal_domain` of ``N``.
        frame_atoms: atoms of rows 0, 1, 2 (origin, +x axis, xy-plane).
    """

    def __init__(self, zmatrix: ZMatrix) -> None:
        super().__init__()
        n = zmatrix.n_atoms
        self.zmatrix = zmatrix
        self.n_atoms = n
        self.features = 3 * n - 6
        self.latent_domain = internal_domain(n)
        self.domain = None
        rows = torch.tensor(zmatrix.rows, dtype=torch.long)
        self.frame_atoms = tuple(int(a) for a in rows[:3, 0])
        self.register_buffer("_atom", rows[:, 0].clone(), persistent=False)
        self.register_buffer("_ref", rows[:, 1:].clone(), persistent=False)
        gens = zmatrix.generations
        self._gen_sizes = [len(g) for g in gens]
        flat = [r for g in gens for r in g]
        self.register_buffer("_gen_rows", torch.tensor(flat, dtype=torch.long), persistent=False)
        self._row2_sign = 1.0 if zmatrix.rows[2][1] == zmatrix.rows[0][0] else -1.0

    # ------------------------------------------------------------------ validation
    def _validate(
        self, x: Tensor, context: Tensor | None, domain: Domain | None, direction: str
    ) -> None:
        name = type(self).__name__
        if direction == "forward":
            super()._validate(x, context, domain, direction)
            bonds = x[:, : self.n_atoms - 1]
            if bool((bonds <= 0).any()):
                i = int((bonds <= 0).nonzero()[0, -1])
                raise ValueError(f"{name}.forward: bond feature {i} is not positive")
            return
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"{name}.inverse: expected a floating-point torch.Tensor")
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.n_atoms, 3):
            raise ValueError(
                f"{name}.inverse: expected positions [B, {self.n_atoms}, 3], got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}.inverse: positions contain NaN or infinite values")
        if context is not None and (context.dim() != 2 or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name}.inverse: context must be [batch, C] with batch {x.shape[0]}, "
                f"got shape {tuple(context.shape)}"
            )

    # ------------------------------------------------------------------ data -> latent
    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        n = self.n_atoms
        atom, ref = self._atom, self._ref
        xi = y[:, atom[1:]]
        xj = y[:, ref[1:, 0]]
        bond_vec = xi - xj
        bonds = bond_vec.norm(dim=-1)
        u = bond_vec[:, 1:]
        v = y[:, ref[2:, 1]] - xj[:, 1:]
        cross = torch.linalg.cross(u, v, dim=-1)
        cross_norm = cross.norm(dim=-1)
        angles = torch.atan2(cross_norm, (u * v).sum(-1))
        log_sin = cross_norm.log() - bonds[:, 1:].log() - v.norm(dim=-1).log()
        # torsion i-j-k-l with b0 = j - i, b1 = k - j, b2 = l - k
        b0 = -u[:, 1:]
        b1 = v[:, 1:]
        b2 = y[:, ref[3:, 2]] - y[:, ref[3:, 1]]
        n1 = torch.linalg.cross(b0, b1, dim=-1)
        n2 = torch.linalg.cross(b1, b2, dim=-1)
        torsions = torch.atan2(
            b1.norm(dim=-1) * (b0 * n2).sum(-1),
            (n1 * n2).sum(-1),
        )
        z = torch.cat([bonds, angles, torsions], dim=-1)
        ladj = -(bonds[:, 1].log() + 2 * bonds[:, 2:].log().sum(-1) + log_sin[:, 1:].sum(-1))
        del n
        return z, ladj

    # ------------------------------------------------------------------ latent -> data
    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        n = self.n_atoms
        batch = x.shape[0]
        bonds = x[:, : n - 1]
        angles = x[:, n - 1 : 2 * n - 3]
        torsions = x[:, 2 * n - 3 :]
        atom, ref = self._atom, self._ref
        pos = x.new_zeros(batch, n, 3)
        pos[:, atom[1], 0] = bonds[:, 0]
        j2 = ref[2, 0]
        pos[:, atom[2], 0] = pos[:, j2, 0] + self._row2_sign * bonds[:, 1] * torch.cos(angles[:, 0])
        pos[:, atom[2], 1] = bonds[:, 1] * torch.sin(angles[:, 0])
        for rows in torch.split(self._gen_rows, self._gen_sizes):
            b = bonds[:, rows - 1, None]
            theta = angles[:, rows - 2, None]
            phi = torsions[:, rows - 3, None]
            pj = pos[:, ref[rows, 0]]
            pk = pos[:, ref[rows, 1]]
            pl = pos[:, ref[rows, 2]]
            e1 = pj - pk
            e1 = e1 / e1.norm(dim=-1, keepdim=True)
            e3 = torch.linalg.cross(pk - pl, e1, dim=-1)
            e3 = e3 / e3.norm(dim=-1, keepdim=True)
            e2 = torch.linalg.cross(e3, e1, dim=-1)
            r_sin = b * torch.sin(theta)
            pos[:, atom[rows]] = (
                pj
                - b * torch.cos(theta) * e1
                + r_sin * torch.cos(phi) * e2
                + r_sin * torch.sin(phi) * e3
            )
        ladj = (
            bonds[:, 1].log()
            + 2 * bonds[:, 2:].log().sum(-1)
            + torch.sin(angles[:, 1:]).log().sum(-1)
        )
        return pos, ladj
