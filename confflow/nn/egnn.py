"""E(n)-equivariant graph network (EGNN) as a vector field on Cartesian positions.

Each layer updates invariant node features ``h`` from messages that see only invariants
(features of both atoms, squared distance, bond flag) and moves each atom along the
differences ``x_i - x_j`` weighted by an invariant function of the message. The output
velocity ``x_L - x_0`` is therefore equivariant to rotations and reflections, invariant to
translations, and equivariant to permutations that leave the atom types and bonds unchanged.
It is projected onto the centre-of-mass-free subspace.

Reference: Satorras, Hoogeboom, Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from confflow.nn.field import MoleculeField, bond_matrix
from confflow.nn.mlp import make_activation
from confflow.nn.time_embedding import TimeEmbedding, broadcast_time

__all__ = ["EGNN", "EGNNLayer", "bond_matrix"]


class EGNNLayer(nn.Module):
    """One equivariant message-passing layer on a fully connected graph.

    Args:
        hidden: width of the node features and messages.
        activation: activation name.
        coordinate_scale: bound on each pairwise displacement weight (``tanh`` scaled).
    """

    def __init__(self, hidden: int, activation: str = "silu", coordinate_scale: float = 1.0):
        super().__init__()
        self.coordinate_scale = coordinate_scale
        self.edge = nn.Sequential(
            nn.Linear(2 * hidden + 2, hidden),
            make_activation(activation),
            nn.Linear(hidden, hidden),
            make_activation(activation),
        )
        self.node = nn.Sequential(
            nn.Linear(2 * hidden, hidden), make_activation(activation), nn.Linear(hidden, hidden)
        )
        last = nn.Linear(hidden, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.coord = nn.Sequential(nn.Linear(hidden, hidden), make_activation(activation), last)

    def forward(self, h: Tensor, x: Tensor, bonds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Updates features and positions.

        Args:
            h: ``[B, N, H]`` invariant node features.
            x: ``[B, N, 3]`` positions (network units).
            bonds: ``[N, N]`` 0/1 bond flags.
            mask: ``[N, N]`` 1 off the diagonal, 0 on it.

        Returns:
            ``(h, x)`` updated, same shapes.
        """
        _, n, width = h.shape
        diff = x[:, :, None, :] - x[:, None, :, :]  # [B, N, N, 3]: x_i - x_j
        d2 = (diff * diff).sum(-1, keepdim=True)
        # The first edge layer acts on [h_i, h_j, d2, bond]: applied to each part separately
        # and summed, so the [B, N, N, 2H + 2] input is never formed (same weights, same map).
        first = self.edge[0]
        w_i, w_j = first.weight[:, :width], first.weight[:, width : 2 * width]
        w_d2, w_bond = first.weight[:, 2 * width], first.weight[:, 2 * width + 1]
        pre = (
            (h @ w_i.T)[:, :, None, :]
            + (h @ w_j.T)[:, None, :, :]
            + d2 * w_d2
            + (bonds[:, :, None] * w_bond + first.bias)
        )
        m = self.edge[1:](pre) * mask[None, :, :, None]
        weight = self.coordinate_scale * torch.tanh(self.coord(m)) * mask[None, :, :, None]
        x = x + (diff * weight / torch.sqrt(d2 + 1.0)).sum(2) / max(n - 1, 1)
        h = h + self.node(torch.cat([h, m.sum(2) / max(n - 1, 1)], dim=-1))
        return h, x


class EGNN(MoleculeField):
    """Equivariant vector field ``v(t, x)`` for ``x [B, N, 3]`` with atom types and bonds.

    Args:
        atom_types: ``[N]`` integer type per atom (e.g. element or symmetry class): invariant
            context; atoms of equal type (and equal bond pattern) are exchangeable.
        bonds: bonded atom pairs (invariant context); empty for none.
        hidden: width of node features and messages.
        layers: number of :class:`EGNNLayer` blocks.
        frequencies: time-embedding frequencies.
        activation: activation name.
        length_scale: positions are divided by this (nm) inside the network and velocities
            multiplied by it, so the network sees distances of order one.

    Example:
        >>> field = EGNN([0, 1, 1], bonds=[(0, 1), (0, 2)], hidden=8, layers=1)
        >>> field(torch.tensor(0.5), torch.randn(4, 3, 3)).shape
        torch.Size([4, 3, 3])
    """

    def __init__(
        self,
        atom_types: Sequence[int] | Tensor,
        bonds: Sequence[tuple[int, int]] = (),
        hidden: int = 64,
        layers: int = 4,
        frequencies: int = 8,
        activation: str = "silu",
        length_scale: float = 1.0,
    ) -> None:
        super().__init__(atom_types, length_scale)
        if hidden < 1 or layers < 1 or length_scale <= 0:
            raise ValueError(
                f"EGNN: hidden, layers and length_scale must be positive, got "
                f"{hidden}, {layers}, {length_scale}"
            )
        n = self.n_atoms
        self.register_buffer("bonds", bond_matrix(n, bonds), persistent=False)
        self.register_buffer("mask", 1.0 - torch.eye(n), persistent=False)
        self.embed = nn.Embedding(int(self.types.max()) + 1, hidden)
        self.time = TimeEmbedding(frequencies)
        self.time_proj = nn.Linear(self.time.dim, hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, activation) for _ in range(layers))

    def _velocity(self, t: Tensor | float, y: Tensor) -> Tensor:
        tt = broadcast_time(t, y.shape[0], y)
        h = self.embed(self.types)[None] + self.time_proj(self.time(tt))[:, None, :]
        y0 = y
        bonds, mask = self.bonds.to(y.dtype), self.mask.to(y.dtype)
        for layer in self.layers:
            h, y = layer(h, y, bonds, mask)
        return y - y0
