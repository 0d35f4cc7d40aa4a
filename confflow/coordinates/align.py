"""Optimal rigid alignment (Kabsch) and the RMSD after it, batched over samples.

Useful to compare positions that differ by a rotation and translation, e.g. an input and its
reconstruction from internal coordinates (which comes back in the canonical pose).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["aligned_rmsd", "kabsch_align"]


def kabsch_align(x: Tensor, reference: Tensor) -> Tensor:
    """Rotates and translates ``x`` onto ``reference`` (proper rotations only, no mirroring).

    Args:
        x: ``[B, N, 3]`` positions (any length unit).
        reference: ``[B, N, 3]`` or ``[N, 3]`` positions in the same unit.

    Returns:
        ``[B, N, 3]``: ``x`` after the rotation and translation that minimise the RMSD.

    Raises:
        ValueError: shapes that do not match.
    """
    if x.dim() != 3 or x.shape[-1] != 3 or reference.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"kabsch_align: need x [B, N, 3] and reference [B, N, 3] or [N, 3], "
            f"got {tuple(x.shape)} and {tuple(reference.shape)}"
        )
    ref = reference.expand_as(x)
    x_mean, ref_mean = x.mean(-2, keepdim=True), ref.mean(-2, keepdim=True)
    xc, rc = x - x_mean, ref - ref_mean
    u, _, vt = torch.linalg.svd(xc.transpose(-1, -2) @ rc)
    d = torch.sign(torch.linalg.det(u @ vt))
    flip = torch.ones_like(u[..., 0])
    flip[..., 2] = d
    rotation = (u * flip.unsqueeze(-2)) @ vt
    return xc @ rotation + ref_mean


def aligned_rmsd(x: Tensor, reference: Tensor) -> Tensor:
    """``[B]`` RMSD between ``x`` ``[B, N, 3]`` and ``reference`` after :func:`kabsch_align`."""
    diff = kabsch_align(x, reference) - reference.expand_as(x)
    return diff.pow(2).sum(-1).mean(-1).sqrt()
