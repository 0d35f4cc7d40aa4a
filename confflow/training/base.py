"""The interface of a training objective: one step's loss and the number to monitor."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["Objective", "StepLoss"]


@dataclass
class StepLoss:
    """One step's loss.

    Attributes:
        loss: scalar loss (nats, or squared velocity for flow matching) to minimise.
        logs: numbers to log for the step (``nll``, ``kl``, ``train_ess``, ``fm``, ...).
        evaluations: target energy evaluations spent on the step.
        skip: why the step must be skipped (a non-finite batch); ``None`` to take it.
    """

    loss: Tensor | None
    logs: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0
    skip: str | None = None


class Objective:
    """Base class: a loss per step and the validation number to minimise.

    Attributes:
        needs_data: the objective trains on data samples.
        needs_target: the objective evaluates the target energy (a Boltzmann generator).
    """

    needs_data: bool = True
    needs_target: bool = False

    def step(self, model: nn.Module, batch: Tensor | None, generator: torch.Generator) -> StepLoss:
        """The loss of one step.

        Args:
            model: a :class:`~confflow.models.BoltzmannGenerator` or a bare
                :class:`~confflow.distributions.Flow`.
            batch: ``[B, *event_shape]`` data samples (``None`` when not :attr:`needs_data`).
            generator: RNG of this step's flow samples, times and noise.
        """
        raise NotImplementedError

    def validation(self, model: nn.Module, data: Tensor, generator: torch.Generator) -> dict:
        """Objective-specific validation numbers on held-out data (default: none)."""
        return {}

    def monitor(self, metrics: dict[str, float]) -> float:
        """The validation number that decides the best model and early stopping."""
        raise NotImplementedError
