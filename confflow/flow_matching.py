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

:func:`fit_flow_matching` trains with AdamW and writes resumable checkpoints in the format of
:mod:`confflow.training.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from confflow.coordinates.align import kabsch_align
from confflow.distributions.base import Distribution
from confflow.training import read_checkpoint, write_checkpoint

__all__ = [
    "FlowMatchingConfig",
    "align_to_reference",
    "fit_flow_matching",
    "flow_matching_loss",
    "ot_pairing",
    "permute_identical_atoms",
]


@dataclass(frozen=True)
class FlowMatchingConfig:
    """Settings of flow-matching training.

    Attributes:
        sigma: standard deviation of the Gaussian path around the straight line (>= 0; data
            units, nm for positions).
        ot: pair base and data samples by minibatch optimal transport.
        align: align each data sample ``[N, 3]`` to its base sample (rotation + permutation).
        align_iterations: rotation/permutation alternations (>= 1).
        steps: optimiser steps.
        batch_size: pairs per step.
        lr: AdamW learning rate (cosine decay to zero).
        weight_decay: AdamW weight decay.
        seed: seed of batches, times and base samples.
        checkpoint_every: steps between checkpoints when an output folder is given.

    Raises:
        ValueError: a value out of range, naming the field.
    """

    sigma: float = 0.0
    ot: bool = True
    align: bool = True
    align_iterations: int = 2
    steps: int = 1000
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma: must be finite and >= 0, got {self.sigma!r}")
        for name in ("align_iterations", "steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be positive, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: must be >= 0, got {self.weight_decay!r}")


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
    config: FlowMatchingConfig,
    classes: Sequence[int] | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow-matching loss of one batch (mean squared velocity error per sample).

    Args:
        field: vector field ``field(t, x, context) -> velocity``.
        x0: ``[B, *event]`` base samples (centred positions for molecules).
        x1: ``[B, *event]`` data samples (nm for positions).
        config: pairing and path settings.
        classes: ``[N]`` exchangeable-atom labels (positions ``[B, N, 3]`` only).
        generator: RNG for times and path noise.

    Returns:
        Scalar loss: ``mean_b |v(t_b, x_t) - (x1 - x0)|^2`` summed over the event.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0, x1: shapes differ, {tuple(x0.shape)} vs {tuple(x1.shape)}")
    positions = x1.dim() == 3 and x1.shape[-1] == 3
    with torch.no_grad():
        if config.align and positions:
            x1 = align_to_reference(x1, x0, classes, config.align_iterations)
        if config.ot:
            x1 = x1[ot_pairing(x0, x1)]
            if config.align and positions:
                x1 = align_to_reference(x1, x0, classes, config.align_iterations)
    b = x0.shape[0]
    t = torch.rand(b, generator=generator, dtype=torch.float64, device=x0.device).to(x0)
    tb = t.reshape(b, *([1] * (x0.dim() - 1)))
    xt = (1 - tb) * x0 + tb * x1
    if config.sigma > 0:
        noise = torch.randn(
            x0.shape, generator=generator, dtype=torch.float64, device=x0.device
        ).to(x0)
        xt = xt + config.sigma * (_center(noise) if positions else noise)
    v = field(t, xt, None)
    return ((v - (x1 - x0)) ** 2).reshape(b, -1).sum(-1).mean()


def _fingerprint(config: FlowMatchingConfig, model: nn.Module) -> str:
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    text = json.dumps({"config": asdict(config), "shapes": shapes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_flow_matching(
    field: nn.Module,
    base: Distribution,
    data: Tensor,
    config: FlowMatchingConfig,
    classes: Sequence[int] | Tensor | None = None,
    out_dir: str | Path | None = None,
    deadline: float | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Trains ``field`` by conditional flow matching from ``base`` to ``data``.

    With ``out_dir`` the run writes ``flow_matching.pt`` (field, optimiser, step, RNG) every
    ``checkpoint_every`` steps and at the end, and resumes from it when rerun with the same
    settings.

    Args:
        field: the vector field (trained in place).
        base: latent density with ``sample(n) -> [n, *event]``.
        data: ``[M, *event]`` training samples (nm for positions).
        config: training settings.
        classes: ``[N]`` exchangeable-atom labels for the alignment of positions.
        out_dir: optional folder for checkpoints.
        deadline: optional ``time.monotonic()`` value after which training stops early.
        callback: called as ``callback(step, loss)`` after every step.

    Returns:
        Losses of the steps run by this call.

    Raises:
        ValueError: empty data or a checkpoint written with other settings.
    """
    if data.shape[0] < 1:
        raise ValueError("data: no training samples")
    opt = torch.optim.AdamW(field.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps))
    )
    gen = torch.Generator(device=data.device).manual_seed(config.seed)
    step = 0
    fingerprint = _fingerprint(config, field)
    path = Path(out_dir) / "flow_matching.pt" if out_dir is not None else None
    if path is not None and path.is_file():
        state = read_checkpoint(path)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"checkpoint {path}: written with other settings or another model")
        field.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["rng"])
        step = int(state["step"])

    def save() -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(
            path,
            {
                "fingerprint": fingerprint,
                "model_config": asdict(config),
                "model": field.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": gen.get_state(),
                "step": step,
            },
        )

    losses: list[float] = []
    field.train()
    while step < config.steps:
        if deadline is not None and time.monotonic() > deadline:
            break
        idx = torch.randint(
            0, data.shape[0], (config.batch_size,), generator=gen, device=data.device
        )
        x1 = data[idx]
        x0 = base.sample(config.batch_size, generator=gen).to(x1)
        loss = flow_matching_loss(field, x0, x1, config, classes, gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"flow matching: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
        if step % config.checkpoint_every == 0:
            save()
    save()
    field.eval()
    return losses
