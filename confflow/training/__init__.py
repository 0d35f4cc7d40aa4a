"""Training of flows and Boltzmann generators: losses, the Trainer, checkpoints."""

from confflow.training.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_generator,
    read_checkpoint,
    write_checkpoint,
)
from confflow.training.config import TrainConfig
from confflow.training.fit import fit_flow_matching, fit_maximum_likelihood
from confflow.training.losses import energy_loss, mixed_loss, nll_loss, reverse_kl_loss
from confflow.training.outcome import TrainingDivergedError, TrainResult, resolve_device
from confflow.training.trainer import Trainer

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "energy_loss",
    "fit_flow_matching",
    "fit_maximum_likelihood",
    "load_generator",
    "mixed_loss",
    "nll_loss",
    "read_checkpoint",
    "resolve_device",
    "reverse_kl_loss",
    "write_checkpoint",
]
