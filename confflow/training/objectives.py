"""Training objectives of the one :class:`~confflow.training.Trainer`, chosen by name.

An :class:`Objective` turns one step's random numbers (and a data batch, when it needs data)
into a scalar loss; the Trainer owns everything else: optimiser, schedule, validation, best
model, early stopping, checkpoints and resume, and the policy for non-finite values.

* ``"likelihood"`` (:class:`LikelihoodEnergy`) — ``(1 - kl_weight) * NLL(data) + kl_weight *
  E``, where the energy term ``E`` mixes reverse KL with the importance-weighted forward KL
  (``forward_weight``): maximum likelihood (``kl_weight = 0``), reverse KL (``1``, no data)
  or any mix. See :mod:`confflow.training.losses`.
* ``"flow-matching"`` (:class:`FlowMatching`) — conditional flow matching of the vector field of
  the flow's one continuous layer (:class:`~confflow.transforms.CNF`), with minibatch optimal
  transport and, for positions, Kabsch/Hungarian alignment; see
  :mod:`confflow.training.flow_matching`.
* ``"fab"`` (:class:`~confflow.training.fab.FAB`) — data-free training by the alpha-2
  divergence, estimated by annealed importance sampling towards ``p^2 / q`` with HMC and a
  prioritised replay buffer; see :mod:`confflow.training.fab`.

A custom objective subclasses :class:`Objective` and is passed to the Trainer directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from confflow.distributions.flow import Flow
from confflow.errors import InputError
from confflow.reweighting import kish_ess
from confflow.training.base import Objective, StepLoss
from confflow.training.config import TrainConfig
from confflow.training.fab import FAB
from confflow.training.flow_matching import flow_matching_loss
from confflow.training.losses import energy_loss, mixed_loss, nll_loss
from confflow.training.replay import ReplayBuffer
from confflow.transforms.base import Compose, Transform
from confflow.transforms.continuous import CNF

__all__ = [
    "FAB",
    "OBJECTIVES",
    "FlowMatching",
    "LikelihoodEnergy",
    "Objective",
    "StepLoss",
    "make_objective",
    "split_at_cnf",
]


class LikelihoodEnergy(Objective):
    """``(1 - kl_weight) * NLL + kl_weight * [(1 - a) reverse KL + a IS-forward KL]``.

    Args:
        config: ``kl_weight``, ``forward_weight`` (``a``), ``forward_replay`` (the forward
            term's buffer, in memory: a resumed run starts with an empty one),
            ``kl_batch_size``, ``cap_threshold`` and ``cap_scale`` are read from it.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.needs_data = config.kl_weight < 1
        self.needs_target = config.kl_weight > 0
        replay = config.forward_replay
        self.buffer = ReplayBuffer(replay) if replay and config.forward_weight > 0 else None

    def step(self, model: nn.Module, batch: Tensor | None, generator: torch.Generator) -> StepLoss:
        """NLL of ``batch`` (logs ``nll``) and the energy term on fresh samples (``kl``)."""
        cfg = self.config
        out = StepLoss(None)
        nll = kl = None
        if batch is not None:
            nll = nll_loss(model, batch)
            out.logs["nll"] = float(nll.detach())
        if cfg.kl_weight > 0:
            kl, log_w = energy_loss(
                model,
                cfg.kl_batch_size,
                cfg.cap_threshold,
                cfg.cap_scale,
                cfg.forward_weight,
                generator,
                self.buffer,
            )
            out.evaluations = cfg.kl_batch_size
            out.logs["kl"] = float(kl.detach())
            if bool(torch.isfinite(log_w).all()):
                out.logs["train_ess"] = kish_ess(log_w)
        out.loss = mixed_loss(nll, kl, cfg.kl_weight)
        return out

    def validation(self, model: nn.Module, data: Tensor, generator: torch.Generator) -> dict:
        """``val_nll``: mean negative log-likelihood (nats) of the held-out data."""
        total = 0.0
        for chunk in data.split(self.config.val_batch_size):
            total += float(-model.log_prob(chunk).double().sum())
        return {"val_nll": total / data.shape[0]}

    def monitor(self, metrics: dict[str, float]) -> float:
        """``(1 - w) val_nll + w kl`` (nats), the validation form of the loss."""
        w = self.config.kl_weight
        nll, kl = metrics.get("val_nll"), metrics.get("kl", math.inf)
        if nll is None or w == 1:
            return kl
        return nll if w == 0 else (1 - w) * nll + w * kl


def _parts(transform: Transform) -> list[Transform]:
    if isinstance(transform, Compose):
        return [p for t in transform.transforms for p in _parts(t)]
    return [transform]


def split_at_cnf(flow: Flow) -> tuple[list[Transform], CNF, list[Transform]]:
    """The flow's transform as ``(latent-side layers, the CNF, data-side layers)``.

    Raises:
        InputError: the transform holds no CNF, or more than one.
    """
    parts = _parts(flow.transform)
    where = [i for i, p in enumerate(parts) if isinstance(p, CNF)]
    if len(where) != 1:
        raise InputError(
            f"train.objective: flow matching needs exactly one continuous layer (CNF) in the "
            f"flow, found {len(where)}"
        )
    i = where[0]
    return parts[:i], parts[i], parts[i + 1 :]


class FlowMatching(Objective):
    """Conditional flow matching of the flow's one CNF layer.

    Base samples pass through the layers before the CNF, data through the inverse of the
    layers after it, so the field learns the map in its own coordinates.

    Args:
        config: ``fm_sigma``, ``fm_ot``, ``fm_align`` and ``fm_align_iterations`` are read.
        classes: ``[N]`` exchangeable-atom labels for the Hungarian step of the alignment of
            positions (``None``: rotations only).
    """

    def __init__(self, config: TrainConfig, classes: Sequence[int] | Tensor | None = None):
        self.config = config
        self.classes = classes

    def _loss(self, model: nn.Module, x1: Tensor, generator: torch.Generator) -> Tensor:
        flow = model.flow if hasattr(model, "flow") else model
        before, cnf, after = split_at_cnf(flow)
        with torch.no_grad():
            x0 = flow.base.sample(x1.shape[0], generator).to(x1)
            for t in before:
                x0, _ = t._forward(x0, None)
            for t in reversed(after):
                x1, _ = t._inverse(x1, None)
        cfg = self.config
        return flow_matching_loss(
            cnf.dynamics.field,
            x0,
            x1,
            sigma=cfg.fm_sigma,
            ot=cfg.fm_ot,
            align=cfg.fm_align,
            align_iterations=cfg.fm_align_iterations,
            classes=self.classes,
            generator=generator,
        )

    def step(self, model: nn.Module, batch: Tensor | None, generator: torch.Generator) -> StepLoss:
        """The flow-matching loss of ``batch`` against fresh base samples (logs ``fm``)."""
        loss = self._loss(model, batch, generator)
        return StepLoss(loss, {"fm": float(loss.detach())})

    def validation(self, model: nn.Module, data: Tensor, generator: torch.Generator) -> dict:
        """``val_fm``: the flow-matching loss on (at most 1,024) held-out samples."""
        with torch.no_grad():
            return {"val_fm": float(self._loss(model, data[:1024], generator))}

    def monitor(self, metrics: dict[str, float]) -> float:
        """``val_fm``, the flow-matching loss on held-out data (``inf`` without it)."""
        return metrics.get("val_fm", math.inf)


#: Objective classes by the names ``TrainConfig.objective`` accepts.
OBJECTIVES: dict[str, type[Objective]] = {
    "likelihood": LikelihoodEnergy,
    "flow-matching": FlowMatching,
    "fab": FAB,
}


def make_objective(
    config: TrainConfig, atom_classes: Sequence[int] | Tensor | None = None
) -> Objective:
    """The objective ``config.objective`` names, with its settings from ``config``.

    Args:
        config: training settings.
        atom_classes: ``[N]`` exchangeable-atom labels (flow matching on positions).
    """
    if config.objective == "flow-matching":
        return FlowMatching(config, atom_classes)
    return OBJECTIVES[config.objective](config)
