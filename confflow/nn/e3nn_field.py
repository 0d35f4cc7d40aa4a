"""An e3nn vector field: spherical-harmonic edge features and tensor-product messages.

Node features are irreps (scalars ``0e`` and vectors ``1o``). On every directed edge
``j -> i`` the spherical harmonics ``Y(x_i - x_j)`` up to ``lmax`` are combined with the
sender's features by a tensor product whose weights come from an MLP of invariants (radial
basis of the distance, bond flag, time). Messages are summed, passed through a gated
nonlinearity, and a final linear map yields one ``1o`` vector per atom: the velocity. The
field is equivariant to rotations and reflections (``1o`` is a polar vector), invariant to
translations, and equivariant to permutations that keep types and bonds; it is projected onto
the centre-of-mass-free subspace.

Reference: Geiger and Smidt, "e3nn: Euclidean Neural Networks", arXiv:2207.09453 (2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import Tensor, nn

from confflow.nn.field import MoleculeField, bond_matrix
from confflow.nn.time_embedding import TimeEmbedding, broadcast_time

__all__ = ["E3NNField"]


class _Block(nn.Module):
    """Tensor-product convolution followed by a gate: ``irreps_in -> scalars + vectors``."""

    def __init__(self, irreps_in: o3.Irreps, scalars: int, vectors: int, lmax: int, edge_in: int):
        super().__init__()
        irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        gate = Gate(
            f"{scalars}x0e",
            [torch.nn.functional.silu],
            f"{vectors}x0e",
            [torch.sigmoid],
            f"{vectors}x1o",
        )
        self.tp = o3.FullyConnectedTensorProduct(
            irreps_in, irreps_sh, gate.irreps_in, shared_weights=False
        )
        self.radial = nn.Sequential(
            nn.Linear(edge_in, 64), nn.SiLU(), nn.Linear(64, self.tp.weight_numel)
        )
        self.self_linear = o3.Linear(irreps_in, gate.irreps_in)
        self.gate = gate
        self.irreps_out = gate.irreps_out

    def forward(
        self, h: Tensor, sh: Tensor, edge_feat: Tensor, src: Tensor, dst: Tensor, n: int
    ) -> Tensor:
        """``h [B, N, irreps_in]`` -> ``[B, N, irreps_out]``."""
        msg = self.tp(h[:, src], sh, self.radial(edge_feat))  # [B, E, gate_in]
        agg = torch.zeros(h.shape[0], n, msg.shape[-1], dtype=msg.dtype, device=msg.device)
        agg = agg.index_add(1, dst, msg) / (n - 1) ** 0.5
        return self.gate(agg + self.self_linear(h))


class E3NNField(MoleculeField):
    """Equivariant vector field ``v(t, x)`` built from e3nn tensor products.

    Args:
        atom_types: ``[N]`` integer type per atom (invariant context).
        bonds: bonded atom pairs (invariant context).
        scalars: number of ``0e`` channels per node.
        vectors: number of ``1o`` channels per node.
        layers: number of convolution blocks.
        lmax: largest degree of the edge spherical harmonics (>= 1).
        radial: number of Gaussian radial basis functions on ``[0, cutoff]``.
        cutoff: range of the radial basis in network units (beyond it the basis decays).
        frequencies: time-embedding frequencies.
        length_scale: positions are divided by this (nm) inside the network.

    Example:
        >>> field = E3NNField([0, 1, 1], bonds=[(0, 1)], scalars=4, vectors=2, layers=1)
        >>> field(torch.tensor(0.5), torch.randn(2, 3, 3)).shape
        torch.Size([2, 3, 3])
    """

    def __init__(
        self,
        atom_types: Sequence[int] | Tensor,
        bonds: Sequence[tuple[int, int]] = (),
        scalars: int = 16,
        vectors: int = 8,
        layers: int = 3,
        lmax: int = 2,
        radial: int = 16,
        cutoff: float = 5.0,
        frequencies: int = 4,
        length_scale: float = 1.0,
    ) -> None:
        super().__init__(atom_types, length_scale)
        if min(scalars, vectors, layers, lmax, radial) < 1 or cutoff <= 0 or length_scale <= 0:
            raise ValueError(
                "E3NNField: scalars, vectors, layers, lmax, radial, cutoff and length_scale "
                "must be positive"
            )
        n = self.n_atoms
        self.lmax = lmax
        src, dst = (~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        adjacency = bond_matrix(n, bonds)
        self.register_buffer("edge_bond", adjacency[dst, src][:, None], persistent=False)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, radial), persistent=False)
        self.width = cutoff / (radial - 1) if radial > 1 else cutoff
        self.embed = nn.Embedding(int(self.types.max()) + 1, scalars)
        self.time = TimeEmbedding(frequencies)
        self.time_proj = nn.Linear(self.time.dim, scalars)
        edge_in = radial + 1 + self.time.dim
        irreps = o3.Irreps(f"{scalars}x0e")
        blocks = []
        for _ in range(layers):
            block = _Block(irreps, scalars, vectors, lmax, edge_in)
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = nn.ModuleList(blocks)
        self.out = o3.Linear(irreps, "1x1o")

    def _velocity(self, t: Tensor | float, y: Tensor) -> Tensor:
        b, n = y.shape[0], self.n_atoms
        temb = self.time(broadcast_time(t, b, y))  # [B, T]
        vec = y[:, self.dst] - y[:, self.src]  # [B, E, 3]: x_i - x_j for edge j -> i
        dist = torch.sqrt((vec * vec).sum(-1, keepdim=True))
        sh = o3.spherical_harmonics(
            list(range(1, self.lmax + 1)), vec, normalize=True, normalization="component"
        )
        sh = torch.cat([torch.ones_like(dist), sh], dim=-1)
        rbf = torch.exp(-(((dist - self.centers.to(y.dtype)) / self.width) ** 2))
        e = vec.shape[1]
        edge_feat = torch.cat(
            [
                rbf,
                self.edge_bond.to(y.dtype)[None].expand(b, e, 1),
                temb[:, None, :].expand(b, e, temb.shape[-1]),
            ],
            dim=-1,
        )
        h = self.embed(self.types)[None] + self.time_proj(temb)[:, None, :]
        for block in self.blocks:
            h = block(h, sh, edge_feat, self.src, self.dst, n)
        return self.out(h)  # e3nn (>= 0.6) orders 1o components as (x, y, z)
