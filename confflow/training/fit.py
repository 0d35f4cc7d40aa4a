"""One-call training of a bare flow or vector field, through the one :class:`Trainer`.

* :func:`fit_maximum_likelihood` — a :class:`~confflow.distributions.Flow` on samples.
* :func:`fit_flow_matching` — a vector field by conditional flow matching from a base density
  to samples (the field becomes the :class:`~confflow.transforms.CNF` of a flow).

Both are thin: they fill a :class:`~confflow.training.TrainConfig` and run the Trainer, so
schedules, the non-finite policy, checkpoints and resume are the Trainer's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn

from confflow.distributions.base import Distribution
from confflow.distributions.flow import Flow
from confflow.training.config import TrainConfig
from confflow.training.trainer import Trainer
from confflow.transforms.continuous import CNF

__all__ = ["fit_flow_matching", "fit_maximum_likelihood"]


def fit_maximum_likelihood(
    flow: Flow,
    data: Tensor,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    warmup: int = 50,
    clip: float = 10.0,
    seed: int = 0,
) -> list[float]:
    """Fits ``flow`` to ``data`` by minimising the mean negative log-likelihood.

    AdamW with a linear warm-up and cosine decay to zero, gradient-norm clipping, mini-batches
    drawn with a seeded generator; steps with a non-finite loss are skipped (the Trainer's
    policy).

    Args:
        flow: the model (trained in place).
        data: ``[N, D]`` training samples in the flow's data domain.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup: warm-up steps.
        clip: maximum gradient norm.
        seed: seed of the mini-batch draw.

    Returns:
        The training loss (mean NLL in nats) of every step; ``nan`` for skipped steps.
    """
    if data.dim() != 2 or data.shape[0] < 2:
        raise ValueError(
            f"fit_maximum_likelihood: data must be [N >= 2, D], got {tuple(data.shape)}"
        )
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=clip,
        seed=seed,
        val_every=steps,
        max_nonfinite=steps,
        checkpoint_every=0,
        device=str(data.device),
        progress=False,
    )
    return _run(Trainer(flow, config, data), "nll")


def fit_flow_matching(
    field: nn.Module,
    base: Distribution,
    data: Tensor,
    config: TrainConfig,
    classes: Sequence[int] | Tensor | None = None,
    out_dir: str | Path | None = None,
    deadline: float | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    """Trains ``field`` by conditional flow matching from ``base`` to ``data``.

    The field becomes the CNF of ``Flow(base, CNF(field))`` (mean-free for positions
    ``[M, N, 3]``) and the Trainer runs the ``"flow-matching"`` objective with ``config``
    (its ``objective`` is set). With ``out_dir`` the run writes the Trainer's checkpoints and
    resumes from them when rerun with the same settings.

    Args:
        field: the vector field ``field(t, x, context)`` (trained in place).
        base: latent density with ``sample(n) -> [n, *event]``.
        data: ``[M, *event]`` training samples (nm for positions).
        config: training settings (steps, batch size, learning rate, ``fm_*`` path settings).
        classes: ``[N]`` exchangeable-atom labels for the alignment of positions.
        out_dir: optional folder for checkpoints and logs.
        deadline: optional ``time.monotonic()`` value after which training stops.
        callback: called as ``callback(step, logs)`` after every step.

    Returns:
        Losses of the steps this call ran (``nan`` for skipped steps).

    Raises:
        ValueError: empty data.
        CheckpointMismatchError: ``out_dir`` holds a run with other settings or another field.
    """
    if data.shape[0] < 1:
        raise ValueError("data: no training samples")
    positions = data.dim() == 3 and data.shape[-1] == 3
    flow = Flow(base, CNF(field, tuple(data.shape[1:]), mean_free=positions)).to(data.device)
    config = dataclasses.replace(config, objective="flow-matching", device=str(data.device))
    trainer = Trainer(flow, config, data, out_dir=out_dir, atom_classes=classes)
    budget = None if deadline is None else max(0.0, deadline - time.monotonic())
    return _run(trainer, "fm", budget, callback)


def _run(
    trainer: Trainer,
    key: str,
    budget: float | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    losses: list[float] = []

    def record(step: int, logs: dict[str, float]) -> None:
        losses.append(logs.get(key, float("nan")) if "loss" in logs else float("nan"))
        if callback is not None:
            callback(step, logs)

    trainer.fit(max_seconds=budget, callback=record)
    return losses
