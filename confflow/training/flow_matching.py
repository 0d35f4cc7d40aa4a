"""Conditional flow matching for continuous flows, with equivariant pairing of samples.

Training pairs a base sample ``x0`` with a data sample ``x1`` and regresses the vector field
on the velocity of the straight line between them (Lipman et al. 2023; Tong et al. 2024):

    ``x_t = (1 - t) x0 + t x1 + sigma eps``,  ``u_t = x1 - x0``,
    ``loss = E_{t, x0, x1} |v(t, x_t) - u_t|^2``.

Two couplings shorten the paths: a minibatch optimal-transport assignment of the batch
(Hungarian on squared distances), and, for molecules, an equivariant alignment of every
data sample to its noise sample: a permutation of identical atoms (Hungarian per class)
and the optimal proper rotation (Kabsch), alternated (Klein et al. 2023, "Equivariant flow
matching"). Both keep the data distribution unchanged up to the symmetries the flow's density
is invariant to.

The loss is the ``"flow-matching"`` objective of the one
:class:`~confflow.training.Trainer` (:class:`~confflow.training.objectives.FlowMatching`);
:func:`~confflow.training.fit_flow_matching` trains a bare vector field with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from confflow.coordinates.align import kabsch_align

__all__ = [
    "align_to_reference",
    "flow_matching_loss",
    "ot_pairing",
    "permute_identical_atoms",
]


def _center(v: Tensor) -> Tensor:
    return v - v.mean(dim=1, keepdim=True)


def permute_identical_atoms(x: Tensor, ref: Tensor, classes: Sequence[int] | Tensor) -> Tensor:
    """Reorders atoms of ``x`` within each class to best match ``ref`` (Hungarian).

    Args:
        x: ``[B, N, 3]`` positions to reorder.
        ref: ``[B, N, 3]`` reference positions.
        classes: ``[N]`` labels; only atoms with equal labels are exchanged.

    Returns:
        ``[B, N, 3]``: ``x`` with, per sample, the permutation minimising the summed squared
        distances to ``ref`` within every class.
    """
    cls = np.asarray(torch.as_tensor(classes).cpu())
    if cls.shape != (x.shape[1],):
        raise ValueError(f"classes: expected {x.shape[1]} labels, got shape {cls.shape}")
    groups = [np.flatnonzero(cls == c) for c in np.unique(cls)]
    groups = [g for g in groups if g.size > 1]
    if not groups:
        return x
    xs, rs = x.detach().cpu().numpy(), ref.detach().cpu().numpy()
    perm = np.tile(np.arange(x.shape[1]), (x.shape[0], 1))
    for b in range(x.shape[0]):
        for g in groups:
            cost = ((xs[b, g][:, None, :] - rs[b, g][None, :, :]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(cost)
            perm[b, g[cols]] = g[rows]
    index = torch.as_tensor(perm, device=x.device)
    return torch.gather(x, 1, index[..., None].expand_as(x))


def align_to_reference(
    x: Tensor, ref: Tensor, classes: Sequence[int] | Tensor | None = None, iterations: int = 2
) -> Tensor:
    """Centres ``x`` and alternates Kabsch rotation and Hungarian permutation onto ``ref``.

    The rotations are :func:`~confflow.coordinates.kabsch_align` onto the centred ``ref``.

    Args:
        x: ``[B, N, 3]`` positions (e.g. data samples, nm).
        ref: ``[B, N, 3]`` references (e.g. base samples); only their centred shape counts.
        classes: ``[N]`` labels of exchangeable atoms; ``None`` rotates only.
        iterations: rotation/permutation rounds (each ends with a rotation).

    Returns:
        ``[B, N, 3]`` centred, rotated (and permuted) copies of ``x``.
    """
    if x.shape != ref.shape or x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(
            f"x, ref: need equal [B, N, 3] shapes, got {tuple(x.shape)}, {tuple(ref.shape)}"
        )
    ref = _center(ref)  # so the aligned copies stay centred
    x = kabsch_align(x, ref)
    if classes is None:
        return x
    for _ in range(iterations):
        x = kabsch_align(permute_identical_atoms(x, ref, classes), ref)
    return x


def ot_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    """Indices ``j [B]`` such that ``(x0[i], x1[j[i]])`` is the squared-distance OT matching.

    Args:
        x0: ``[B, ...]`` base samples.
        x1: ``[B, ...]`` data samples.
    """
    cost = torch.cdist(x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)) ** 2
    _, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(cols, device=x1.device)


def flow_matching_loss(
    field: nn.Module,
    x0: Tensor,
    x1: Tensor,
    sigma: float = 0.0,
    ot: bool = True,
    align: bool = True,
    align_iterations: int = 2,
    classes: Sequence[int] | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow-matching loss of one batch (mean squared velocity error per sample).

    Args:
        field: vector field ``field(t, x, context) -> velocity``.
        x0: ``[B, *event]`` base samples (centred positions for molecules).
        x1: ``[B, *event]`` data samples (nm for positions).
        sigma: standard deviation of the Gaussian path around the straight line (data units).
        ot: pair base and data samples by minibatch optimal transport.
        align: align each data sample ``[N, 3]`` to its base sample (rotation + permutation).
        align_iterations: rotation/permutation alternations (>= 1).
        classes: ``[N]`` exchangeable-atom labels (positions ``[B, N, 3]`` only).
        generator: RNG for times and path noise.

    Returns:
        Scalar loss: ``mean_b |v(t_b, x_t) - (x1 - x0)|^2`` summed over the event.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0, x1: shapes differ, {tuple(x0.shape)} vs {tuple(x1.shape)}")
    positions = x1.dim() == 3 and x1.shape[-1] == 3
    with torch.no_grad():
        if align and positions:
            x1 = align_to_reference(x1, x0, classes, align_iterations)
        if ot:
            x1 = x1[ot_pairing(x0, x1)]
            if align and positions:
                x1 = align_to_reference(x1, x0, classes, align_iterations)
    b = x0.shape[0]
    t = torch.rand(b, generator=generator, dtype=torch.float64, device=x0.device).to(x0)
    tb = t.reshape(b, *([1] * (x0.dim() - 1)))
    xt = (1 - tb) * x0 + tb * x1
    if sigma > 0:
        noise = torch.randn(
            x0.shape, generator=generator, dtype=torch.float64, device=x0.device
        ).to(x0)
        xt = xt + sigma * (_center(noise) if positions else noise)
    v = field(t, xt, None)
    return ((v - (x1 - x0)) ** 2).reshape(b, -1).sum(-1).mean()
