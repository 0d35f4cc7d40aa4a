"""Collective variables for macrostates and plots."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["torsion"]


def torsion(x: Tensor, atoms: tuple[int, int, int, int]) -> Tensor:
    """Torsion angle ``i-j-k-l`` (IUPAC sign) of every configuration.

    Args:
        x: ``[B, N, 3]`` positions (nm; any length unit works).
        atoms: four distinct atom indices ``(i, j, k, l)``.

    Returns:
        ``[B]`` torsions in rad, in ``[-pi, pi]``.

    Raises:
        ValueError: wrong shape or atom indices out of range or repeated.
    """
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"torsion: x must be [B, N, 3], got {tuple(x.shape)}")
    if len(atoms) != 4 or len(set(atoms)) != 4 or not all(0 <= a < x.shape[1] for a in atoms):
        raise ValueError(
            f"torsion: atoms must be 4 distinct indices in [0, {x.shape[1]}), got {atoms}"
        )
    p0, p1, p2, p3 = (x[:, a] for a in atoms)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / torch.linalg.vector_norm(b1, dim=-1, keepdim=True)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    xx = (v * w).sum(-1)
    yy = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(yy, xx)
