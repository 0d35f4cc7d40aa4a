"""Stage 3b for a state mixture: each state's torsional model trained within a shared budget.

A :class:`~confflow.models.StateMixture` trains each state's model with
:func:`~confflow.generate.training.train_model` on the MD frames of its own state, in two
stages: first every state with a share of the budget that is partly even, partly the state's
expected population (:data:`EVEN_BUDGET`); then, after importance-sampling estimates of each
state's partition function, rounds of refinement, each for the state that limits the mixture's
ESS most, whose estimate is renewed after its round. Where the ESS expected of the mixture is
still low at the end of the budget, the rounds go on for up to as long again
(:data:`EXTEND_BELOW_ESS`). The mixture weights are the estimated populations, a tenth spread
evenly so that every state keeps samples.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor

from confflow.energies import kT
from confflow.generate.config import GenerateConfig
from confflow.generate.model import training_data
from confflow.generate.training import TrainingSummary, train_model
from confflow.models import StateMixture

__all__ = [
    "DOMINANT_CLAIM",
    "EVEN_BUDGET",
    "EVEN_SHARE",
    "EXTEND_BELOW_ESS",
    "EXTRA_BUDGET",
    "FIRST_ROUND",
    "MIN_ROUND_S",
    "MIN_STATE_FRAMES",
    "ROUND_SHARE",
    "STATE_ESTIMATE_SAMPLES",
    "allocation_shares",
    "expected_ess",
    "first_round_share",
    "reference_populations",
    "set_state_weights",
    "state_estimates",
    "train_states",
    "variance_shares",
]

#: Samples per state for the importance-sampling estimate of its partition function.
STATE_ESTIMATE_SAMPLES = 1024
#: Share of a state mixture's training budget spread evenly over its states (the rest goes by
#: the populations estimated from the references, so a state of 1% still gets trained).
EVEN_BUDGET = 0.3
#: Share of a state mixture's budget in its first round (every state); the rest goes, round by
#: round, to the state that limits the mixture's ESS most.
FIRST_ROUND = 0.4
#: Share of the time left that each later round takes (at least :data:`MIN_ROUND_S`).
ROUND_SHARE = 1 / 3
#: Share of the claims (:func:`allocation_shares`) above which a state takes all the time left
#: in one round: another state could claim more only after this one's ESS grew ninefold, and a
#: restart costs an ESS check and an estimate (tramadol, whose main state holds all of the
#: population: 671 refinement steps with its training cut into rounds, 933 in one).
DOMINANT_CLAIM = 0.9
#: ESS expected of a mixture (:func:`expected_ess`) below which its later rounds go on past the
#: budget, for up to :data:`EXTRA_BUDGET` of it more, until the expectation reaches it. A
#: mixture splits its budget between its states, so each of two populated states trains about
#: half as long as a single-state molecule's flow: haloperidol (two chairs of 20-80% each, a
#: 7-torsion flow each) read 1.3-17% over ten runs at 120 s, at least five of them below 5%,
#: and 24% and 10% in two runs at 240 s.
EXTEND_BELOW_ESS = 0.15
#: Most extra training of a mixture whose expected ESS stays below :data:`EXTEND_BELOW_ESS`,
#: as a share of the budget.
EXTRA_BUDGET = 1.0
#: Seconds below which no later round starts: a refinement starts with an ESS check of 1,024
#: relaxed samples (seconds for 50 atoms on 2 cores), which a shorter round would mostly spend.
MIN_ROUND_S = 15.0
#: MD frames in a state's own cells below which it learns from all frames.
MIN_STATE_FRAMES = 50
#: Share of a state mixture's samples spread evenly over its entries.
EVEN_SHARE = 0.1


def reference_populations(model: StateMixture, energies: Tensor) -> Tensor:
    """``[K]`` populations expected from the states' references.

    From their energies ``[K]`` (kJ/mol), local entropies (the mixture's corrections, nats)
    and images; blind to the torsional freedom of each state.
    """
    return _populations(model, -energies.double() / kT(model.temperature) + model.corrections.cpu())


def _budget_shares(model: StateMixture, energies: Tensor) -> Tensor:
    """``[K]`` first-round shares: :data:`EVEN_BUDGET` even, the rest by reference population."""
    population = reference_populations(model, energies)
    return EVEN_BUDGET / len(energies) + (1 - EVEN_BUDGET) * population


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


def variance_shares(population: Tensor, ess: Tensor) -> Tensor:
    """``[K]`` shares of training time: each state's part ``P_k / ESS_k`` of ``1 / ESS``.

    The mixture's ESS is about ``1 / sum_k P_k / ESS_k``, so the states that cost it most get
    the most time.
    """
    cost = population / ess.clamp_min(1e-3)
    return cost / cost.sum()


def allocation_shares(population: Tensor, reference: Tensor, ess: Tensor) -> Tensor:
    """``[K]`` claims of the states to the next round (summing to 1), by :func:`variance_shares`.

    Each state counts with the larger of its importance-sampling population and its
    reference's: a flow that fits its state poorly underestimates the state's partition
    function (in one cetirizine run, the state that held 95% of the ensemble was estimated at a
    few percent at an ESS of 0.5%), and a state judged small that way would never get the time
    that shows it is not.

    Args:
        population: ``[K]`` importance-sampling populations.
        reference: ``[K]`` populations from the references (:func:`reference_populations`).
        ess: ``[K]`` each state's own ESS (fractions).
    """
    return variance_shares(_guarded(population, reference), ess)


def _guarded(population: Tensor, reference: Tensor) -> Tensor:
    """``[K]`` the larger of each state's sampled and reference population, renormalised."""
    larger = torch.maximum(population, reference)
    return larger / larger.sum()


def _mixture_ess(population: Tensor, ess: Tensor) -> float:
    """ESS (fraction) of a mixture of ``[K]`` states, ``1 / sum_k P_k / ESS_k``."""
    return float(1.0 / (population / ess.clamp_min(1e-12)).sum())


def expected_ess(population: Tensor, reference: Tensor, ess: Tensor) -> float:
    """ESS (fraction) expected of the mixture, ``1 / sum_k P_k / ESS_k``.

    Each state counts with the larger of its importance-sampling and its reference
    population, as in :func:`allocation_shares`, the populations renormalised.

    Args:
        population: ``[K]`` importance-sampling populations.
        reference: ``[K]`` populations from the references (:func:`reference_populations`).
        ess: ``[K]`` each state's own ESS (fractions).
    """
    return _mixture_ess(_guarded(population, reference), ess)


def _next_round(
    claims: Tensor, left: float, plateaued: list[int], extension: bool = False
) -> tuple[int, float] | None:
    """The next round's state and its seconds; ``None`` when no state is worth one.

    The state with the largest of the ``[K]`` ``claims`` (:func:`allocation_shares`), those
    whose refinement has ``plateaued`` left out, takes :data:`ROUND_SHARE` of the ``left`` s
    (at least :data:`MIN_ROUND_S`), all of them where that would leave less than
    :data:`MIN_ROUND_S` or, within the budget (not in its ``extension``, which goes in rounds
    so that the claims are weighed again), where it holds :data:`DOMINANT_CLAIM` of the claims
    left. Once a state has plateaued, one whose claim is below the rest of that share, ``1 -
    DOMINANT_CLAIM`` of all claims, gets no round: it costs the mixture's ESS too little.
    """
    open_claims = claims.clone()
    open_claims[plateaued] = 0.0
    k = int(torch.argmax(open_claims))
    if plateaued and float(open_claims[k]) < (1 - DOMINANT_CLAIM) * float(claims.sum()):
        return None
    dominant = float(open_claims[k]) >= DOMINANT_CLAIM * float(open_claims.sum())
    if left < 2 * MIN_ROUND_S or (dominant and not extension):
        return k, left
    return k, max(MIN_ROUND_S, left * ROUND_SHARE)


def first_round_share(budget: float, trainable: int) -> float:
    """Share of a ``budget`` (s) in the first round: :data:`FIRST_ROUND`, or all of it.

    A later round needs an importance-sampling estimate of every state and at least
    :data:`MIN_ROUND_S` of refinement; a budget whose rest after :data:`FIRST_ROUND` is below
    twice that goes whole to the first round instead of being left unspent, and so does the
    budget of a mixture with fewer than two ``trainable`` states (nothing to choose between).
    """
    if trainable < 2 or (1 - FIRST_ROUND) * budget < 2 * MIN_ROUND_S:
        return 1.0
    return FIRST_ROUND


def state_estimates(
    model: StateMixture, seed: int, samples: int = STATE_ESTIMATE_SAMPLES
) -> tuple[Tensor, Tensor, Tensor]:
    """Importance-sampling ``log Z_k`` (nats), ``ESS_k`` and populations ``P_k`` (``[K]`` each).

    Args:
        model: the mixture (its components' energies are the target).
        seed: sampling seed.
        samples: flow samples per state.
    """
    gen = torch.Generator(model.log_pi.device).manual_seed(seed)
    log_z, ess = model.log_partition(samples, gen)
    return log_z, ess, _populations(model, log_z)


def _populations(model: StateMixture, log_z: Tensor) -> Tensor:
    """``[K]`` populations of the states from their ``log Z_k`` (nats), images summed."""
    index = torch.tensor([k for k, _, _ in model.entries])
    return torch.zeros(len(log_z), dtype=torch.float64).index_add(
        0, index, torch.softmax(log_z[index], 0)
    )


def set_state_weights(model: StateMixture, log_z: Tensor) -> None:
    """Mixture weights from the states' ``log Z_k`` (nats): the populations, a tenth even."""
    index = torch.tensor([k for k, _, _ in model.entries])
    entry_population = torch.softmax(log_z[index], 0)
    model.set_log_weights(((1 - EVEN_SHARE) * entry_population + EVEN_SHARE / len(index)).log())


def train_states(
    model: StateMixture,
    frames: Tensor,
    energies: Tensor,
    config: GenerateConfig,
    frame_entries: Tensor | None = None,
) -> TrainingSummary:
    """Trains each state's generator in a first round and later rounds, then sets the weights.

    Within ``config.budget`` seconds (up to :data:`EXTRA_BUDGET` of it more, see below).
    Round one (:data:`FIRST_ROUND` of the budget, all of a short budget:
    :func:`first_round_share`): each state in turn, with a share that is partly even,
    partly the population expected from its reference (:func:`reference_populations`); the
    state with the largest share trains first and the others start from its flow (the same
    torsions, a similar distribution). Each state learns from the MD frames in its own cells
    where there are enough. Then importance-sampling estimates of every state, and later
    rounds (refinement only, until the time of the final estimate; :func:`_next_round`): each
    for the state with the largest claim (:func:`allocation_shares`), whose estimate is
    renewed after it; a state whose refinement stops without a better ESS gets no more
    rounds, and every state is then estimated afresh. While the mixture's expected ESS
    (:func:`expected_ess`) is below :data:`EXTEND_BELOW_ESS`, the rounds run past the budget,
    up to :data:`EXTRA_BUDGET` of it more. The weights become the populations estimated by
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
    # the states share the molecule's free torsions: all of them train, or none
    trainable = [any(True for _ in c.flow.parameters()) for c in model.components]
    facts: list[dict[str, float]] = [
        {"budget_s": 0.0, "nll_steps": 0, "refine_steps": 0, "best_ess": 1.0}
        for _ in model.components
    ]
    data = _state_frames(model, frames, frame_entries)

    def run(k: int, budget: float, maximum_likelihood: bool) -> bool:
        """Trains state ``k`` for ``budget`` s; whether its refinement stopped early."""
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
        return part.stopped_early

    deadline = time.perf_counter() + config.budget
    first_share = first_round_share(config.budget, sum(trainable))
    shares = _budget_shares(model, energies)
    first = int(torch.argmax(shares))
    for k in [first, *(k for k in range(len(shares)) if k != first)]:
        if not trainable[k]:  # no free torsion: the state is its relaxed reference
            continue
        if k != first:  # same torsions, similar distribution: start from the trained flow
            model.components[k].flow.load_state_dict(model.components[first].flow.state_dict())
        run(k, float(shares[k]) * first_share * config.budget, True)
    if first_share < 1:
        start = time.perf_counter()
        log_z, ess, _ = state_estimates(model, config.seed + 4)
        summary.target_evaluations += STATE_ESTIMATE_SAMPLES * len(model.components)
        # the final estimate costs as much; a round's own estimate, one state's part of it
        reserve = (time.perf_counter() - start) * (1 + 1 / len(model.components))
        reference = reference_populations(model, energies)
        gen = torch.Generator(model.log_pi.device).manual_seed(config.seed + 5)
        plateaued: list[int] = []
        while True:
            population = _populations(model, log_z)
            left = deadline - time.perf_counter() - reserve
            extension = left < MIN_ROUND_S
            if extension and expected_ess(population, reference, ess) < EXTEND_BELOW_ESS:
                left += EXTRA_BUDGET * config.budget
            if left < MIN_ROUND_S:
                break
            claims = allocation_shares(population, reference, ess)
            if (round_ := _next_round(claims, left, plateaued, extension)) is None:
                break
            k, seconds = round_
            if run(k, seconds, False):  # no better ESS in its last checks: no more rounds
                plateaued.append(k)
                # every state afresh: one judged small by its early flow may not be
                log_z, ess, _ = state_estimates(model, config.seed + 5 + len(plateaued))
                summary.target_evaluations += STATE_ESTIMATE_SAMPLES * len(model.components)
                continue
            log_z[k : k + 1], ess[k : k + 1] = model.log_partition(
                STATE_ESTIMATE_SAMPLES, gen, states=[k]
            )
            summary.target_evaluations += STATE_ESTIMATE_SAMPLES
    log_z, ess, population = state_estimates(model, config.seed + 3)
    summary.target_evaluations += STATE_ESTIMATE_SAMPLES * len(model.components)
    set_state_weights(model, log_z)
    summary.best_ess = _mixture_ess(population, ess)
    for k, state in enumerate(facts):
        state.update(log_z=float(log_z[k]), ess=float(ess[k]))
    summary.states = facts
    model.eval()
    return summary
