"""Stage 3b: training the molecule's Boltzmann generator within a wall-time budget.

Training, within ``budget`` seconds of wall time:

1. maximum likelihood on the MD frames (60% of the budget at most for the Cartesian model, 10%
   for the torsional one, whose MD data are not samples of its target), validated every
   :data:`ML_CHECK` steps and stopped after :data:`ML_PATIENCE` validations without a lower
   validation NLL, keeping the best model (a few hundred correlated frames are overfitted in
   seconds: on phenacetin 379 steps ended at a validation NLL of 11.0 nats, the best model
   at 5.3);
2. refinement on the MMFF energy, capped 100 kT above the lowest training frame (Cartesian:
   half NLL, half reverse KL; torsional: 20% reverse KL, 80% importance-weighted forward KL on
   the same flow samples, which cuts the heavy weight tails that reverse KL alone leaves), in
   segments (the last one cut at the deadline); after each segment the ESS of fresh flow
   samples is measured and the best model by ESS is kept. When the ESS has not improved for
   ``patience`` segments, the refinement goes on from the best model at :data:`LR_CUT` times
   the learning rate, up to ``lr_cuts`` times, and then stops early (:data:`SCHEDULES`). A
   check that beats the best is confirmed on :data:`CONFIRM_FACTOR` times as many independent
   samples, and the confirmation's ESS is the one compared and kept: the best of many noisy
   checks overstates its model (a propranolol state was kept on a check of 28.9% whose model
   then read 13.0% on fresh samples).

The continuous families (``--model cnf``, ``egnn-cnf``, ``e3nn-cnf``) train by flow matching
on the frames for the whole budget instead (:data:`FLOW_MATCHING_FAMILIES`).

State mixtures train with :func:`confflow.generate.state_training.train_states`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import Tensor

from confflow.generate.config import GenerateConfig
from confflow.generate.model import model_kind
from confflow.models import BoltzmannGenerator
from confflow.training import TrainConfig, Trainer

__all__ = [
    "SCHEDULES",
    "Schedule",
    "TrainingSummary",
    "train_model",
]

#: Reduced energy (kT) above the lowest of the training frames where the energy cap starts.
CAP_ABOVE_MIN = 100.0
#: Families trained by flow matching on the frames (their exact likelihood needs an ODE solve
#: with the divergence's trace, too dear for maximum likelihood or reverse KL on a CPU).
FLOW_MATCHING_FAMILIES = ("cnf", "egnn-cnf", "e3nn-cnf")
#: Flow samples of the ESS check at the end of flow matching.
FLOW_MATCHING_ESS_SAMPLES = 64
#: Maximum-likelihood steps between validations, and validations without a lower validation
#: NLL before maximum likelihood stops.
ML_CHECK = 20
ML_PATIENCE = 3
#: A refinement check that beats the best is confirmed on this many times its samples.
CONFIRM_FACTOR = 2
#: Factor of the learning rate at each restart of a refinement that stopped improving.
LR_CUT = 0.3


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How one kind of model is trained within the budget.

    Attributes:
        nll_share: fraction of the budget spent on maximum likelihood before refinement.
        kl_weight: weight of the energy term in the refinement (the rest is NLL on the frames).
        forward_weight: share of importance-weighted forward KL in the energy term.
        kl_batch_size: flow samples per refinement step.
        lr: refinement learning rate.
        segment: refinement steps per ESS check.
        patience: ESS checks without improvement before stopping.
        ess_samples: flow samples per ESS check (estimates from few samples are noisy).
        stop_ess: refinement stops once an ESS check reaches this fraction (above 1: never).
        lr_cuts: restarts from the best model at a smaller learning rate (:data:`LR_CUT`)
            when the ESS has not improved for ``patience`` checks, before stopping.
    """

    nll_share: float
    kl_weight: float
    forward_weight: float
    kl_batch_size: int
    lr: float
    segment: int
    patience: int
    ess_samples: int
    stop_ess: float = 2.0
    lr_cuts: int = 0


#: Per model. The torsional model's MD data come from the flexible molecule, not from its
#: target, so maximum likelihood only warms it up and the energy does the rest (a tenth NLL in
#: the refinement cost paroxetine, tramadol and venlafaxine 8-20 points of ESS and did not
#: keep propranolol above 2%: 16.9% and 1.5% in two runs).
SCHEDULES = {
    "cartesian": Schedule(0.6, 0.5, 0.0, 128, 3e-4, 40, 3, 512),
    "torsional": Schedule(0.1, 1.0, 0.8, 256, 5e-4, 100, 5, 1024, lr_cuts=2),
}


@dataclasses.dataclass
class TrainingSummary:
    """What training did.

    Attributes:
        nll_steps: maximum-likelihood steps.
        refine_steps: refinement steps.
        ess_history: ESS (fraction) after each refinement segment; the first is the
            starting model's.
        confirmed_ess: ESS of each confirmation check (of a segment's check that beat the
            best so far), in order.
        best_ess: ESS of the kept model (the starting check or its confirmation).
        lr_cuts: restarts of the refinement at a smaller learning rate.
        target_evaluations: energy evaluations of the target (refinement samples and ESS
            checks; the relaxation's gradient steps are part of one evaluation).
        stopped_early: refinement stopped before its deadline: the ESS reached ``stop_ess``
            or did not improve for ``patience`` checks (checked after each segment, so one
            segment runs whenever the budget has time left).
        val_nll: validation NLL (nats) after maximum likelihood.
        states: per state of a mixture: ``budget_s``, ``nll_steps``, ``refine_steps``,
            ``best_ess`` (its own training), ``log_z`` (nats) and ``ess`` of the final
            estimate; empty for single-state models.
    """

    nll_steps: int = 0
    refine_steps: int = 0
    ess_history: list[float] = dataclasses.field(default_factory=list)
    confirmed_ess: list[float] = dataclasses.field(default_factory=list)
    best_ess: float = 0.0
    lr_cuts: int = 0
    target_evaluations: int = 0
    stopped_early: bool = False
    val_nll: float = float("nan")
    states: list[dict[str, float]] = dataclasses.field(default_factory=list)


def _maximum_likelihood(
    model: BoltzmannGenerator,
    train: Tensor,
    val: Tensor,
    common: dict,
    batch: int,
    summary: TrainingSummary,
    deadline: float,
) -> None:
    """Maximum likelihood in checks of :data:`ML_CHECK` steps until ``deadline``.

    Stops after :data:`ML_PATIENCE` checks without a lower validation NLL (a few hundred MD
    frames are overfitted within seconds) and leaves the model of the lowest one.
    """
    config = TrainConfig(
        steps=ML_CHECK,
        batch_size=batch,
        lr=2e-3,
        warmup=ML_CHECK,
        min_lr_ratio=1.0,
        val_every=ML_CHECK,
        val_batch_size=256,
    )
    trainer = Trainer(model, dataclasses.replace(config, **common), train, val)
    best, best_state, since_best = math.inf, None, 0
    while True:
        start = time.perf_counter()
        trainer.fit_more(ML_CHECK)
        nll = float(trainer.metrics.get("val_nll", math.inf))
        if nll < best:
            best, since_best = nll, 0
            best_state = trainer.snapshot()
        else:
            since_best += 1
        if (
            since_best >= ML_PATIENCE
            or time.perf_counter() + (time.perf_counter() - start) > deadline
        ):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    summary.nll_steps = trainer.step
    summary.target_evaluations += trainer.evaluations  # validation ESS samples
    summary.val_nll = best


def _refine_trainer(
    model: BoltzmannGenerator,
    train: Tensor,
    cap_threshold: float,
    common: dict,
    batch: int,
    plan: Schedule,
    lr: float,
) -> Trainer:
    """The trainer of a refinement on the energy with the settings of ``plan`` at ``lr``."""
    config = TrainConfig(
        steps=1,
        batch_size=batch,
        kl_batch_size=plan.kl_batch_size,
        kl_weight=plan.kl_weight,
        forward_weight=plan.forward_weight,
        lr=lr,
        warmup=0,
        min_lr_ratio=1.0,
        val_every=plan.segment,
        val_batch_size=plan.ess_samples,
        cap_threshold=cap_threshold,
        cap_scale=10.0,
    )
    return Trainer(model, dataclasses.replace(config, **common), train, None)


def _refine(
    model: BoltzmannGenerator,
    train: Tensor,
    cap_threshold: float,
    common: dict,
    batch: int,
    summary: TrainingSummary,
    plan: Schedule,
    deadline: float,
) -> None:
    """Refines on the energy in segments until ``deadline`` (or early stop).

    Updates ``summary`` (steps, ESS history, evaluations, learning-rate cuts) and leaves the
    best model by ESS in ``model``.
    """
    trainer = _refine_trainer(model, train, cap_threshold, common, batch, plan, plan.lr)
    best_state = trainer.snapshot()
    summary.best_ess = float(trainer.validate().get("ess", 0.0))
    summary.ess_history.append(summary.best_ess)
    since_best = 0
    while time.perf_counter() < deadline:
        # a segment stops at the deadline (a state's small share is shorter than a segment)
        trainer.fit_more(plan.segment, max_seconds=deadline - time.perf_counter())
        ess = float(trainer.metrics.get("ess", 0.0))
        summary.ess_history.append(ess)
        if ess > summary.best_ess:
            check = trainer.ess_check(CONFIRM_FACTOR * plan.ess_samples, salt=1)
            ess = float(check.get("ess", 0.0))
            summary.confirmed_ess.append(ess)
        if ess > summary.best_ess:
            summary.best_ess, since_best = ess, 0
            best_state = trainer.snapshot()
        else:
            since_best += 1
        if summary.best_ess >= plan.stop_ess or (
            since_best >= plan.patience and summary.lr_cuts == plan.lr_cuts
        ):
            summary.stopped_early = True
            break
        if since_best >= plan.patience:  # a plateau: on from the best model, smaller steps
            summary.lr_cuts, since_best = summary.lr_cuts + 1, 0
            _count(summary, trainer)
            model.load_state_dict(best_state)
            lr = plan.lr * LR_CUT**summary.lr_cuts
            trainer = _refine_trainer(model, train, cap_threshold, common, batch, plan, lr)
    _count(summary, trainer)
    model.load_state_dict(best_state)


def _count(summary: TrainingSummary, trainer: Trainer) -> None:
    """Adds a refinement trainer's steps and target evaluations (steps, checks) to ``summary``."""
    summary.refine_steps += trainer.step
    summary.target_evaluations += trainer.evaluations


def train_model(
    model: BoltzmannGenerator,
    data: Tensor,
    config: GenerateConfig,
    on_checkpoint: Any = None,
    maximum_likelihood: bool = True,
    schedule: Schedule | None = None,
) -> TrainingSummary:
    """Trains ``model`` in place within ``config.budget`` seconds.

    Args:
        model: the generator.
        data: ``[M, *event_shape]`` training samples from :func:`training_data`: positions
            ``[M, N, 3]`` nm, or torsions ``[M, K]`` rad (a tenth is held out for validation).
        config: run settings (``budget``, ``seed``, ``device``).
        on_checkpoint: called with the model after maximum likelihood and at the end.
        maximum_likelihood: start with maximum likelihood (``False``: refinement only, to
            continue a trained model).
        schedule: the refinement's settings (default: :data:`SCHEDULES` of the model's kind).

    Returns:
        The :class:`TrainingSummary`.
    """
    deadline = time.perf_counter() + config.budget
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(data.shape[0], generator=gen)
    n_val = max(1, data.shape[0] // 10)
    val, train = data[perm[:n_val]].float(), data[perm[n_val:]].float()
    batch = min(256, train.shape[0])
    common = {"seed": config.seed, "device": config.device, "progress": config.progress}
    common["checkpoint_every"] = 0
    summary = TrainingSummary()
    if model.config.flow.family in FLOW_MATCHING_FAMILIES:
        _flow_matching(model, train, common, batch, summary, deadline)
    else:
        plan = schedule or SCHEDULES[model_kind(model)]
        if maximum_likelihood:
            ml_deadline = time.perf_counter() + plan.nll_share * config.budget
            _maximum_likelihood(model, train, val, common, batch, summary, ml_deadline)
            if on_checkpoint is not None:
                on_checkpoint(model)
        with torch.no_grad():
            device = next(model.flow.parameters()).device
            u_min = float(model.reduced_energy(train[:256].to(device)).min())
        _refine(model, train, u_min + CAP_ABOVE_MIN, common, batch, summary, plan, deadline)
    model.eval()
    if on_checkpoint is not None:
        on_checkpoint(model)
    return summary


def _flow_matching(
    model: BoltzmannGenerator,
    train: Tensor,
    common: dict,
    batch: int,
    summary: TrainingSummary,
    deadline: float,
) -> None:
    """Flow matching on the frames until ``deadline``, then the ESS of a few flow samples."""
    config = TrainConfig(
        objective="flow-matching",
        steps=10**9,
        batch_size=batch,
        lr=1e-3,
        warmup=20,
        min_lr_ratio=1.0,
        val_every=10**9,
        val_batch_size=FLOW_MATCHING_ESS_SAMPLES,
    )
    trainer = Trainer(model, dataclasses.replace(config, **common), train, None)
    result = trainer.fit(resume=False, max_seconds=max(0.0, deadline - time.perf_counter()))
    summary.nll_steps = result.step  # the data steps
    summary.best_ess = float(result.metrics.get("ess", 0.0))
    summary.ess_history.append(summary.best_ess)
    summary.target_evaluations += trainer.evaluations
