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
   samples is measured, the best model by ESS is kept and the refinement stops early when the
   ESS has not improved for ``patience`` segments (:data:`SCHEDULES`).

The continuous families (``--model cnf``, ``egnn-cnf``, ``e3nn-cnf``) train by flow matching
on the frames for the whole budget instead (:data:`FLOW_MATCHING_FAMILIES`).

A :class:`~confflow.models.StateMixture` trains each state's torsional model this way
(:func:`train_states`) on the MD frames of its own state, in two rounds: first every state with
a share of the budget that is partly even, partly the state's expected population
(:data:`EVEN_BUDGET`); then, after importance-sampling estimates of each state's partition
function, refinement of the states that limit the mixture's ESS most. The mixture weights are
the estimated populations, a tenth spread evenly so that every state keeps samples.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import Tensor

from confflow.energies import kT
from confflow.generate.config import GenerateConfig
from confflow.generate.model import model_kind, training_data
from confflow.models import BoltzmannGenerator, StateMixture
from confflow.training import TrainConfig, Trainer

__all__ = [
    "EVEN_BUDGET",
    "EVEN_SHARE",
    "FIRST_ROUND",
    "MIN_STATE_FRAMES",
    "SCHEDULES",
    "STATE_ESTIMATE_SAMPLES",
    "Schedule",
    "TrainingSummary",
    "train_model",
    "train_states",
]

#: Reduced energy (kT) above the lowest of the training frames where the energy cap starts.
CAP_ABOVE_MIN = 100.0
#: Samples per state for the importance-sampling estimate of its partition function.
STATE_ESTIMATE_SAMPLES = 1024
#: Share of a state mixture's training budget spread evenly over its states (the rest goes by
#: the populations estimated from the references, so a state of 1% still gets trained).
EVEN_BUDGET = 0.3
#: Share of a state mixture's budget in its first round (every state); the rest goes to the
#: states that limit the mixture's ESS most, after importance-sampling estimates.
FIRST_ROUND = 0.6
#: Families trained by flow matching on the frames (their exact likelihood needs an ODE solve
#: with the divergence's trace, too dear for maximum likelihood or reverse KL on a CPU).
FLOW_MATCHING_FAMILIES = ("cnf", "egnn-cnf", "e3nn-cnf")
#: Flow samples of the ESS check at the end of flow matching.
FLOW_MATCHING_ESS_SAMPLES = 64
#: Seconds below which a state gets no second-round refinement (its time goes to the others):
#: a refinement starts with an ESS check of 1,024 relaxed samples (seconds for 50 atoms on 2
#: cores), which a shorter part would mostly spend.
MIN_ROUND_S = 15.0
#: MD frames in a state's own cells below which it learns from all frames.
MIN_STATE_FRAMES = 50
#: Share of a state mixture's samples spread evenly over its entries.
EVEN_SHARE = 0.1
#: Maximum-likelihood steps between validations, and validations without a lower validation
#: NLL before maximum likelihood stops.
ML_CHECK = 20
ML_PATIENCE = 3


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
    """

    nll_share: float
    kl_weight: float
    forward_weight: float
    kl_batch_size: int
    lr: float
    segment: int
    patience: int
    ess_samples: int


#: Per model. The torsional model's MD data come from the flexible molecule, not from its
#: target, so maximum likelihood only warms it up and the energy does the rest.
SCHEDULES = {
    "cartesian": Schedule(0.6, 0.5, 0.0, 128, 3e-4, 40, 3, 512),
    "torsional": Schedule(0.1, 1.0, 0.8, 256, 5e-4, 100, 5, 1024),
}


@dataclasses.dataclass
class TrainingSummary:
    """What training did.

    Attributes:
        nll_steps: maximum-likelihood steps.
        refine_steps: refinement steps.
        ess_history: ESS (fraction) after each refinement segment.
        best_ess: ESS of the kept model.
        target_evaluations: energy evaluations of the target (refinement samples and ESS
            checks; the relaxation's gradient steps are part of one evaluation).
        stopped_early: refinement stopped for lack of ESS improvement.
        val_nll: validation NLL (nats) after maximum likelihood.
        states: per state of a mixture: ``budget_s``, ``nll_steps``, ``refine_steps``,
            ``best_ess`` (its own training), ``log_z`` (nats) and ``ess`` of the final
            estimate; empty for single-state models.
    """

    nll_steps: int = 0
    refine_steps: int = 0
    ess_history: list[float] = dataclasses.field(default_factory=list)
    best_ess: float = 0.0
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
) -> Trainer:
    """The trainer of a refinement on the energy with the settings of ``plan``."""
    config = TrainConfig(
        steps=1,
        batch_size=batch,
        kl_batch_size=plan.kl_batch_size,
        kl_weight=plan.kl_weight,
        forward_weight=plan.forward_weight,
        lr=plan.lr,
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

    Updates ``summary`` (steps, ESS history, evaluations) and leaves the best model by ESS in
    ``model``.
    """
    trainer = _refine_trainer(model, train, cap_threshold, common, batch, plan)
    best_state = trainer.snapshot()
    summary.best_ess = float(trainer.validate().get("ess", 0.0))
    summary.target_evaluations += plan.ess_samples
    summary.ess_history.append(summary.best_ess)
    since_best = 0
    while time.perf_counter() < deadline:
        # a segment stops at the deadline (a state's small share is shorter than a segment)
        trainer.fit_more(plan.segment, max_seconds=deadline - time.perf_counter())
        summary.target_evaluations += plan.ess_samples
        ess = float(trainer.metrics.get("ess", 0.0))
        summary.ess_history.append(ess)
        if ess > summary.best_ess:
            summary.best_ess, since_best = ess, 0
            best_state = trainer.snapshot()
        else:
            since_best += 1
        if since_best >= plan.patience:
            summary.stopped_early = True
            break
    summary.refine_steps += trainer.step
    summary.target_evaluations += trainer.evaluations
    model.load_state_dict(best_state)


def train_model(
    model: BoltzmannGenerator,
    data: Tensor,
    config: GenerateConfig,
    on_checkpoint: Any = None,
    maximum_likelihood: bool = True,
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
        plan = SCHEDULES[model_kind(model)]
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


def _budget_shares(model: StateMixture, energies: Tensor) -> Tensor:
    """``[K]`` budget shares: :data:`EVEN_BUDGET` even, the rest by estimated population.

    The estimate uses the references' energies (kJ/mol), local entropies and images.
    """
    images = torch.tensor([k for k, _, _ in model.entries])
    images = torch.bincount(images, minlength=len(energies))
    log_p = -energies.double() / kT(model.temperature) + model.corrections.cpu() + images.log()
    return EVEN_BUDGET / len(energies) + (1 - EVEN_BUDGET) * torch.softmax(log_p, 0)


def _state_frames(
    model: StateMixture,
    frames: Tensor,
    frame_entries: Tensor | None,
    min_frames: int = MIN_STATE_FRAMES,
) -> list[Tensor]:
    """Each component's training frames ``[M_k, N, 3]`` (nm).

    The frames in the component's own cells (mapped back from each image) where there are
    at least ``min_frames`` of them, else all frames: the MD crosses low barriers (amine
    inversion) often, and the torsions of another state's frames are not this state's.
    """
    out = []
    for k in range(len(model.components)):
        own = [
            model.from_entry(e, frames[frame_entries == e])
            for e, (c, _, _) in enumerate(model.entries)
            if c == k and frame_entries is not None
        ]
        mine = torch.cat(own) if own else frames[:0]
        out.append(mine if mine.shape[0] >= min_frames else frames)
    return out


def _variance_shares(population: Tensor, ess: Tensor) -> Tensor:
    """``[K]`` shares of the second round: each state's part ``P_k / ESS_k`` of ``1 / ESS``.

    The mixture's ESS is about ``1 / sum_k P_k / ESS_k``, so the states that cost it most get
    the most time.
    """
    cost = population / ess.clamp_min(1e-3)
    return cost / cost.sum()


def _second_round(shares: Tensor, seconds: float) -> list[tuple[int, float]]:
    """``(state, seconds)`` of the second round, largest share first.

    The states whose part of ``seconds`` would be below :data:`MIN_ROUND_S` are left out, the
    smallest first, and their time goes to the others.
    """
    order = [k for k in torch.argsort(shares, descending=True).tolist() if float(shares[k]) > 0]
    while order:
        total = float(shares[order].sum())
        plan = [(k, float(shares[k]) / total * seconds) for k in order]
        if plan[-1][1] >= MIN_ROUND_S:
            return plan
        order.pop()
    return []


def _state_estimates(model: StateMixture, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Importance-sampling ``log Z_k`` (nats), ``ESS_k`` and populations ``P_k`` (``[K]`` each)."""
    gen = torch.Generator(model.log_pi.device).manual_seed(seed)
    log_z, ess = model.log_partition(STATE_ESTIMATE_SAMPLES, gen)
    index = torch.tensor([k for k, _, _ in model.entries])
    population = torch.zeros(len(log_z), dtype=torch.float64).index_add(
        0, index, torch.softmax(log_z[index], 0)
    )
    return log_z, ess, population


def train_states(
    model: StateMixture,
    frames: Tensor,
    energies: Tensor,
    config: GenerateConfig,
    frame_entries: Tensor | None = None,
) -> TrainingSummary:
    """Trains each state's generator in two rounds, then sets the mixture weights.

    All within ``config.budget`` seconds. Round one (:data:`FIRST_ROUND` of it): each state in
    turn, with a share that is partly even, partly the population expected from its reference;
    the state with the largest share trains first and the others start from its flow (the same
    torsions, a similar distribution). Each state learns from the MD frames in its own cells
    where there are enough. Round two (the rest, less the time of the final estimate):
    refinement only, shared by each state's estimated part of the mixture's importance-sampling
    variance (:func:`_variance_shares`). The weights become the populations estimated by
    importance sampling on fresh samples, a tenth spread evenly (:data:`EVEN_SHARE`).

    Args:
        model: the mixture.
        frames: ``[M, N, 3]`` nm training positions (each state's model takes their torsions).
        energies: ``[K]`` MMFF energies (kJ/mol) of the states' references.
        config: run settings (``budget``, ``seed``, ``device``).
        frame_entries: ``[M]`` long, the entry whose cell holds each frame (-1: none), from
            :class:`~confflow.generate.states.StateAssignment`; ``None`` trains every state
            on all frames.

    Returns:
        The summary of all states (steps and evaluations summed; ``best_ess`` the ESS expected
        of the mixture, ``1 / sum_k P_k / ESS_k`` over the estimated populations ``P_k``).
    """
    summary = TrainingSummary()
    trainable = [any(True for _ in c.flow.parameters()) for c in model.components]
    facts: list[dict[str, float]] = [
        {"budget_s": 0.0, "nll_steps": 0, "refine_steps": 0, "best_ess": 1.0}
        for _ in model.components
    ]
    data = _state_frames(model, frames, frame_entries)

    def run(k: int, budget: float, maximum_likelihood: bool) -> None:
        component = model.components[k]
        part = train_model(
            component,
            training_data(component, data[k]),
            dataclasses.replace(config, budget=budget),
            maximum_likelihood=maximum_likelihood,
        )
        summary.nll_steps += part.nll_steps
        summary.refine_steps += part.refine_steps
        summary.target_evaluations += part.target_evaluations
        summary.stopped_early |= part.stopped_early
        facts[k]["budget_s"] += budget
        facts[k]["nll_steps"] += part.nll_steps
        facts[k]["refine_steps"] += part.refine_steps
        facts[k]["best_ess"] = part.best_ess

    deadline = time.perf_counter() + config.budget
    shares = _budget_shares(model, energies)
    first = int(torch.argmax(shares))
    for k in [first, *(k for k in range(len(shares)) if k != first)]:
        if not trainable[k]:  # no free torsion: the state is its relaxed reference
            continue
        if k != first:  # same torsions, similar distribution: start from the trained flow
            model.components[k].flow.load_state_dict(model.components[first].flow.state_dict())
        run(k, float(shares[k]) * FIRST_ROUND * config.budget, True)
    if any(trainable):
        start = time.perf_counter()
        _, ess, population = _state_estimates(model, config.seed + 4)
        summary.target_evaluations += STATE_ESTIMATE_SAMPLES * len(model.components)
        # what is left, less the final estimate (which costs as much as this one)
        left = deadline - 2 * time.perf_counter() + start
        shares = _variance_shares(population, ess) * torch.tensor(trainable)
        for k, budget in _second_round(shares, left):
            run(k, budget, False)
    log_z, ess, population = _state_estimates(model, config.seed + 3)
    summary.target_evaluations += STATE_ESTIMATE_SAMPLES * len(model.components)
    index = torch.tensor([k for k, _, _ in model.entries])
    entry_population = torch.softmax(log_z[index], 0)
    model.set_log_weights(((1 - EVEN_SHARE) * entry_population + EVEN_SHARE / len(index)).log())
    summary.best_ess = float(1.0 / (population / ess.clamp_min(1e-12)).sum())
    for k, state in enumerate(facts):
        state.update(log_z=float(log_z[k]), ess=float(ess[k]))
    summary.states = facts
    model.eval()
    return summary
