"""Sizing a training schedule to a wall-clock budget from a timing of a few steps."""

from __future__ import annotations

import dataclasses
import time

from torch import Tensor

from confflow.models import BGConfig, build_boltzmann_generator
from confflow.training import TrainConfig, Trainer


def seconds_per_step(
    model_config: BGConfig,
    train_config: TrainConfig,
    train_x: Tensor | None,
    warmup: int = 10,
    timed: int = 30,
) -> float:
    """Wall seconds of one training step of a fresh copy of the model, in steady state.

    The first steps of a run are slower (allocator and autograd warm-up), so ``warmup`` steps
    run untimed before ``timed`` steps are measured; timing them together overestimated the
    step time by up to 50% and left a third of the budget unused.

    Args:
        model_config: the (complete) configuration of the model to time.
        train_config: the training configuration (losses and batch sizes matter; ``steps``,
            validation and checkpoints are overridden).
        train_x: training data for the NLL term, or ``None`` for energy-only training.
        warmup: untimed steps.
        timed: timed steps.
    """
    cfg = dataclasses.replace(
        train_config, steps=warmup, val_every=10**9, checkpoint_every=0, progress=False
    )
    trainer = Trainer(build_boltzmann_generator(model_config), cfg, train_data=train_x)
    trainer.fit()
    start = time.perf_counter()
    trainer.fit_more(timed)
    return (time.perf_counter() - start) / timed
