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
coordinates, i.e. the density of the canonical pose).
:func:`confflow.testing.assert_frame_ladj_matches_autograd` checks both against autograd on
``s``.

Placement is batched NeRF (natural extension reference frame): atoms are placed generation by
generation (:attr:`ZMatrix.generations`), vectorised over samples and over the atoms of a
generation. Its gradient is written by hand (the generations in reverse, each passing its
atoms' gradient through their local frames to the reference atoms): about half the time of
autograd's, which records every small operation of the placement. It is differentiable once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from confflow.coordinates.zmatrix import ZMatrix
from confflow.domains import Domain
from confflow.transforms.base import Transform

__all__ = ["InternalCoordinates", "internal_domain"]

#: Atoms per CPU block of ``inverse`` (intermediates of about 2 MB in float32).
_BLOCK_ATOMS = 45_000


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
        block_size: on CPU, ``inverse`` processes batches in blocks of this many samples (each
            block fully vectorised) so that intermediates stay in cache; results do not depend
            on it. Default: about 45,000 atoms per block. ``forward`` is vectorised over the
            whole batch.

    Attributes:
        n_atoms: number of atoms ``N``.
        features: ``3N-6``.
        latent_domain: :func:`internal_domain` of ``N``.
        frame_atoms: atoms of rows 0, 1, 2 (origin, +x axis, xy-plane).
    """

    def __init__(self, zmatrix: ZMatrix, block_size: int | None = None) -> None:
        super().__init__()
        if block_size is None:
            block_size = max(256, _BLOCK_ATOMS // zmatrix.n_atoms)
        if block_size < 1:
            raise ValueError(f"InternalCoordinates: block_size must be >= 1, got {block_size}")
        self.block_size = block_size
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
        # difference vectors of the inverse: i - j (rows 1..), k - j (rows 2..), l - k (rows 3..)
        head = torch.cat([rows[1:, 0], rows[2:, 2], rows[3:, 3]])
        tail = torch.cat([rows[1:, 1], rows[2:, 1], rows[3:, 2]])
        self.register_buffer("_head", head, persistent=False)
        self.register_buffer("_tail", tail, persistent=False)
        gens = zmatrix.generations
        self._gen_sizes = [len(g) for g in gens]
        self._gen_starts = [sum(self._gen_sizes[:g]) for g in range(len(gens))]
        flat = [r for g in gens for r in g]
        gen_rows = torch.tensor(flat, dtype=torch.long)
        self.register_buffer("_gen_rows", gen_rows, persistent=False)
        self.register_buffer("_gen_atom", rows[gen_rows, 0].clone(), persistent=False)
        self.register_buffer("_gen_j", rows[gen_rows, 1].clone(), persistent=False)
        self.register_buffer("_gen_k", rows[gen_rows, 2].clone(), persistent=False)
        self.register_buffer("_gen_l", rows[gen_rows, 3].clone(), persistent=False)
        self._row2_sign = 1.0 if zmatrix.rows[2][1] == zmatrix.rows[0][0] else -1.0
        # where the adjoint's pieces (b0, b1, bonds of rows 3.., angle of row 2, angles and
        # torsions of rows 3.., rows in generation order) go in z
        slots = [[0, 1], gen_rows - 1, [n - 1], gen_rows + (n - 3), gen_rows + (2 * n - 6)]
        order = torch.cat([torch.as_tensor(v, dtype=torch.long) for v in slots]).argsort()
        self.register_buffer("_adjoint_order", order, persistent=False)

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
        if x.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):
            # one pass over x: NaN propagates into min and max, +-inf shows up in one of them
            raise ValueError(f"{name}.inverse: positions contain NaN or infinite values")
        if context is not None and (context.dim() != 2 or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name}.inverse: context must be [batch, C] with batch {x.shape[0]}, "
                f"got shape {tuple(context.shape)}"
            )

    # ------------------------------------------------------------------ data -> latent
    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._blocked(self._inverse_block, y)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._forward_block(x)

    def _blocked(self, fn, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Runs ``fn`` on batch blocks on CPU, so that its intermediates stay in cache."""
        if inputs.device.type != "cpu" or inputs.shape[0] <= self.block_size:
            return fn(inputs)
        parts = [fn(block) for block in inputs.split(self.block_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _inverse_block(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # Component-major layout [atoms, xyz, batch]: every operation below is elementwise on
        # rows that are contiguous over the batch.
        n = self.n_atoms
        yt = y.permute(1, 2, 0).contiguous()
        d = yt.index_select(0, self._head) - yt.index_select(0, self._tail)
        u, v, w = d[: n - 1], d[n - 1 : 2 * n - 3], d[2 * n - 3 :]  # i-j, k-j, l-k
        bonds = _norm(u)
        u2 = u[1:]
        c = _cross(u2, v)
        c_norm = _norm(c)
        v_norm = _norm(v)
        angles = torch.atan2(c_norm, _dot(u2, v))
        # torsion i-j-k-l (IUPAC): b0 = j - i = -u, b1 = k - j = v, b2 = l - k = w, so
        # b0 x b1 = -(u x v) = -c and phi = atan2(|b1| b0 . (b1 x b2), (b0 x b1) . (b1 x b2))
        n2 = _cross(v[1:], w)
        torsions = torch.atan2(-v_norm[1:] * _dot(u2[1:], n2), -_dot(c[1:], n2))
        z = torch.cat([bonds, angles, torsions], dim=0).T.contiguous()
        # b^2 sin(theta) = b |u x v| / |v| for rows >= 3; row 2 contributes b
        volume = torch.cat([bonds[1:2], bonds[2:] * c_norm[1:] / v_norm[1:]], dim=0)
        return z, -volume.log().sum(0)

    # ------------------------------------------------------------------ latent -> data
    def _forward_block(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = self.n_atoms
        zt = x.T.contiguous()
        if torch.is_grad_enabled() and zt.requires_grad:
            pos = _Placement.apply(zt, self)
        else:
            pos = self._place(zt)
        bonds, angles = zt[: n - 1], zt[n - 1 : 2 * n - 3]
        volume = torch.cat([bonds[1:2], bonds[2:].square() * torch.sin(angles[1:])], dim=0)
        return pos.permute(2, 0, 1).contiguous(), volume.log().sum(0)

    def _generations(self) -> Iterator[tuple[int, Tensor, Tensor, Tensor, Tensor]]:
        """``(start, atoms, j, k, l)`` of each generation: its first row in placement order."""
        sizes = self._gen_sizes
        return zip(
            self._gen_starts,
            self._gen_atom.split(sizes),
            self._gen_j.split(sizes),
            self._gen_k.split(sizes),
            self._gen_l.split(sizes),
            strict=True,
        )

    def _spherical(self, zt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Bonds (nm), angles and torsions (rad) ``[R, B]`` of rows 3.. in generation order."""
        n = self.n_atoms
        b = zt.index_select(0, self._gen_rows - 1)
        theta = zt.index_select(0, self._gen_rows + (n - 3))
        phi = zt.index_select(0, self._gen_rows + (2 * n - 6))
        return b, theta, phi

    def _place(self, zt: Tensor) -> Tensor:
        """Positions ``[N, 3, B]`` nm of internal coordinates ``zt [3N-6, B]`` (NeRF)."""
        n = self.n_atoms
        bonds, angles = zt[: n - 1], zt[n - 1 : 2 * n - 3]
        atom, ref = self._atom, self._ref
        pos = zt.new_zeros(n, 3, zt.shape[1])
        cos0, sin0 = torch.cos(angles[0]), torch.sin(angles[0])
        pos[atom[1], 0] = bonds[0]
        pos[atom[2], 0] = pos[ref[2, 0], 0] + self._row2_sign * bonds[1] * cos0
        pos[atom[2], 1] = bonds[1] * sin0
        b, theta, phi = self._spherical(zt)
        r_sin = b * torch.sin(theta)
        along = (-b * torch.cos(theta)).unsqueeze(1)
        in_plane = (r_sin * torch.cos(phi)).unsqueeze(1)
        normal = (r_sin * torch.sin(phi)).unsqueeze(1)
        for start, atoms, j, k, lref in self._generations():
            pj = pos.index_select(0, j)
            e1, e2, e3 = _frame(pj, pos.index_select(0, k), pos.index_select(0, lref))[:3]
            sl = slice(start, start + atoms.numel())
            pos.index_copy_(0, atoms, pj + along[sl] * e1 + in_plane[sl] * e2 + normal[sl] * e3)
        return pos

    def _place_adjoint(self, zt: Tensor, pos: Tensor, grad: Tensor) -> Tensor:
        """``dL/dz [3N-6, B]`` from ``dL/dpos [N, 3, B]``, ``pos`` placed from ``zt``.

        Reverse-mode NeRF by hand: generations in reverse order, each passing the gradient of
        its atoms to their reference atoms through the local frame, so that no autograd graph
        of the placement is recorded.
        """
        n = self.n_atoms
        g = grad.clone()
        b, theta, phi = self._spherical(zt)
        sin_t, cos_t, sin_p, cos_p = theta.sin(), theta.cos(), phi.sin(), phi.cos()
        along = (-b * cos_t).unsqueeze(1)
        in_plane = (b * sin_t * cos_p).unsqueeze(1)
        normal = (b * sin_t * sin_p).unsqueeze(1)
        coefficient_grads = []  # dL/d(along, in_plane, normal) [3, G, B], last generation first
        for start, atoms, j, k, lref in reversed(list(self._generations())):
            pj, pk = pos.index_select(0, j), pos.index_select(0, k)
            e1, e2, e3, d2, n1, n3 = _frame(pj, pk, pos.index_select(0, lref))
            sl = slice(start, start + atoms.numel())
            gp = g.index_select(0, atoms)
            coefficient_grads.append(torch.stack([_dot(gp, e1), _dot(gp, e2), _dot(gp, e3)]))
            # p = pj + along e1 + in_plane (e3 x e1) + normal e3
            g_e1 = along[sl] * gp + in_plane[sl] * _cross(gp, e3)
            g_e3 = normal[sl] * gp + in_plane[sl] * _cross(e1, gp)
            g_c = (g_e3 - e3 * _dot(e3, g_e3).unsqueeze(1)) / n3  # e3 = c / |c|, c = d2 x e1
            g_e1 = g_e1 + _cross(g_c, d2)
            g_d1 = (g_e1 - e1 * _dot(e1, g_e1).unsqueeze(1)) / n1  # e1 = d1 / |d1|
            g_d2 = _cross(e1, g_c)
            g.index_add_(0, j, gp + g_d1)
            g.index_add_(0, k, g_d2 - g_d1)
            g.index_add_(0, lref, -g_d2)
        g_al, g_in, g_no = torch.cat(
            [*reversed(coefficient_grads), g.new_zeros(3, 0, g.shape[-1])], 1
        )
        radial = g_in * cos_p + g_no * sin_p
        # frame rows: x1 = b0; x2 = x_j + sign b1 cos(a0), y2 = b1 sin(a0)
        atom, b1, a0, sign = self._atom, zt[1:2], zt[n - 1 : n], self._row2_sign
        g_x2, g_y2 = g[atom[2], 0].unsqueeze(0), g[atom[2], 1].unsqueeze(0)
        values = [
            g[atom[1], 0].unsqueeze(0) + (g_x2 if sign < 0 else 0.0),
            sign * a0.cos() * g_x2 + a0.sin() * g_y2,
            radial * sin_t - g_al * cos_t,
            b1 * (a0.cos() * g_y2 - sign * a0.sin() * g_x2),
            b * (g_al * sin_t + radial * cos_t),
            b * sin_t * (g_no * cos_p - g_in * sin_p),
        ]
        return torch.cat(values).index_select(0, self._adjoint_order)


class _Placement(torch.autograd.Function):
    """NeRF placement ``zt [3N-6, B] -> pos [N, 3, B]`` with its hand-written adjoint."""

    @staticmethod
    def forward(ctx, zt: Tensor, owner: InternalCoordinates) -> Tensor:
        pos = owner._place(zt)
        ctx.owner = owner
        ctx.save_for_backward(zt, pos)
        return pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        zt, pos = ctx.saved_tensors
        return ctx.owner._place_adjoint(zt, pos, grad), None


def _frame(
    pj: Tensor, pk: Tensor, pl: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """NeRF frames of atoms placed about ``j, k, l`` (positions ``[G, 3, B]``).

    Returns:
        ``e1`` (unit ``j - k``), ``e2``, ``e3`` (unit ``(k - l) x e1``) ``[G, 3, B]``, ``k - l``
        ``[G, 3, B]``, ``|j - k|`` and ``|(k - l) x e1|`` ``[G, 1, B]``.
    """
    d1 = pj - pk
    n1 = _norm(d1).unsqueeze(1)
    e1 = d1 / n1
    d2 = pk - pl
    c = _cross(d2, e1)
    n3 = _norm(c).unsqueeze(1)
    e3 = c / n3
    return e1, _cross(e3, e1), e3, d2, n1, n3


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product over axis 1 of ``[M, 3, B]`` tensors -> ``[M, B]``."""
    return (a * b).sum(1)


def _norm(a: Tensor) -> Tensor:
    """Euclidean norm over axis 1 of ``[M, 3, B]`` -> ``[M, B]``."""
    return _dot(a, a).sqrt()


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product over axis 1 of ``[M, 3, B]`` tensors."""
    return torch.linalg.cross(a, b, dim=1)
