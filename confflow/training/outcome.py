"""What a training run returns or raises, and the device it runs on.

:class:`TrainResult`, :class:`TrainingDivergedError` and :func:`resolve_device`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from confflow.errors import RunError

__all__ = ["TrainResult", "TrainingDivergedError", "resolve_device"]


class TrainingDivergedError(RunError):
    """Too many steps were skipped for non-finite batches, losses or gradients."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked and returned."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: steps completed.
        skipped: steps skipped by the non-finite guard.
        stopped_early: early stopping ended the run.
        out_of_time: the wall-clock budget of :meth:`Trainer.fit` ended the run.
        resumed_from: step of the checkpoint the run resumed from (``None``: fresh start).
        metrics: last validation metrics (``val_nll`` nats, ``ess`` fraction, ...).
        target_evaluations: energy evaluations spent by training (reverse-KL samples) and
            validation (ESS estimates).
        seconds: wall time of this process's part of the run.
    """

    step: int
    skipped: int
    stopped_early: bool
    resumed_from: int | None
    out_of_time: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    target_evaluations: int = 0
    seconds: float = 0.0
