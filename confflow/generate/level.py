"""Stage ``level``: the ensemble reweighted from the force field to a GFN-xTB level.

With ``--level gfn2[:solvent]`` every kept sample gets its GFN-xTB energy at the written
coordinates (:class:`~confflow.energies.XTBEnergy`, in as many threads as torch has),
and the ensemble's log-weights become ``log w - (E_xtb - E_ff) / kT``
(:func:`~confflow.reweighting.change_level`). Clusters, SDF weights and populations are then at
that level; the force field's log-weights stay beside them.

What the weights target: a torsional model's conformers are the force field's local structure
(bonds, angles, rigid torsions relaxed on MMFF) at the sampled torsions, so the weights target
``p(theta) ~ exp(-E_xtb(x_mmff(theta)) / kT)``: the level's Boltzmann distribution of torsions
(and states) with the local structure that MMFF gives them, not the level's own relaxed
geometry. Cartesian models sample every coordinate, and their weights target the level's full
Boltzmann distribution.

A conformer whose calculation fails (SCF not converged) is excluded and counted, never weighted.

Where the ESS at the level is below ``level_ess``, :func:`refine_at_level` refines the torsional
flows in rounds for at most ``level_refine`` seconds. A GFN2-xTB energy costs about a thousand
MMFF ones, so the flows do not train on it directly: each round fits a cheap surrogate of the
level to every sample evaluated so far (:mod:`confflow.generate.surrogate`: the force field
plus ``kT`` times a ridge fit of ``(E_xtb - E_ff) / kT`` on the force field's separate terms
and Fourier terms of each torsion, with a kernel fit of what they leave), trains the flows on it
(a third slower per step than on the force field alone), re-sets a mixture's state weights on
it (the round's time shared by each state's part of ``1 / ESS`` for the surrogates), and draws
fresh samples reweighted with the level's exact energies: a few hundred after a short round,
which buys more rounds (short rounds also keep the flows from chasing the surrogate where it
extrapolates), a full ensemble after the last one or to confirm a small draw that reached
``level_ess``. The surrogate only shapes the proposal; the weights are exact. The full ensemble
of the largest ESS at the level is kept.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.energies import TorsionalEnergy, XTBEnergy, kT
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.ensemble import MAX_LISTED_FAILURES, Ensemble, LevelData
from confflow.generate.model import Model, training_data
from confflow.generate.state_training import set_state_weights, state_estimates, variance_shares
from confflow.generate.surrogate import LevelFit, SurrogateTorsionalEnergy, fit_level
from confflow.generate.training import SCHEDULES, train_model
from confflow.models import StateMixture
from confflow.reweighting import change_level

__all__ = ["ROUND_SECONDS", "ROUND_SEED", "level_energy", "refine_at_level", "reweight_to_level"]

#: Training seconds of a short refinement round at the level (the last round takes what is
#: left but one full evaluation); no round below the least.
ROUND_SECONDS = 45.0
MIN_ROUND_SECONDS = 10.0
#: Samples drawn and evaluated at the level after an intermediate round (the last round draws
#: the full ``n``): enough for the next fit, at a fraction of a full evaluation's cost.
ROUND_SAMPLES = 512
#: A round ends early once its flows' ESS for their surrogates reaches this: the level's ESS
#: then rests on the surrogate's accuracy, which only a fresh evaluation can improve.
SURROGATE_ESS = 0.5
#: Seed step between the ensembles of successive rounds (fresh samples each round).
ROUND_SEED = 7919
#: Flow samples per state for a mixture's state weights on the surrogates.
SURROGATE_STATE_SAMPLES = 2048


def level_energy(molecule: Molecule, config: GenerateConfig) -> XTBEnergy | None:
    """The energy of ``config.level`` for the molecule, or ``None`` without a level.

    Built before any expensive stage, so that an element without parameters or an unknown
    solvent fails at once.

    Raises:
        GenerateError: names the level and the cause.
    """
    if config.level is None:
        return None
    try:
        return XTBEnergy.from_molecule(
            molecule, config.level, workers=torch.get_num_threads(), progress=config.progress
        )
    except ValueError as err:
        raise GenerateError(f"--level {config.level}: {err}") from err


def reweight_to_level(ensemble: Ensemble, energy: XTBEnergy, temperature: float) -> Ensemble:
    """The ensemble with log-weights at ``energy``'s level, failed samples dropped.

    Args:
        ensemble: the force-field ensemble.
        energy: the level's energy.
        temperature: K.

    Returns:
        A new :class:`Ensemble` whose ``log_w`` is at the level and whose ``level`` holds the
        :class:`LevelData`.

    Raises:
        GenerateError: the calculation failed for every sample.
    """
    result = energy.evaluate(ensemble.x)
    name = energy.level.name
    if not bool(result.ok.any()):
        index, message = min(result.failures.items())
        raise GenerateError(
            f"--level {name}: the calculation failed for all {len(result.ok)} conformers "
            f"(conformer {index}: {message})"
        )
    change = change_level(ensemble.log_w, ensemble.energy, result.energy, temperature)
    ok = change.ok
    data = LevelData(
        name=name,
        method=energy.level.method,
        energy=result.energy[ok],
        force_field_log_w=ensemble.log_w[ok],
        ess_change=change.ess_change,
        ess_force_field=change.ess_before,
        failed=change.n_failed,
        failures=sorted(result.failures.items())[:MAX_LISTED_FAILURES],
    )
    return dataclasses.replace(
        ensemble,
        x=ensemble.x[ok],
        energy=ensemble.energy[ok],
        log_q=ensemble.log_q[ok],
        log_w=change.log_w[ok],
        state=ensemble.state[ok],
        level=data,
    )


def _refinable(model: Model) -> tuple[list[int], list]:
    """Indices and generators of ``model``'s torsional generators with a flow.

    Only a force field with separate terms (``term_energies``, as MMFF94's) can carry the
    surrogate.
    """
    components = model.components if isinstance(model, StateMixture) else [model]
    kept = [
        (k, c)
        for k, c in enumerate(components)
        if isinstance(c.energy, TorsionalEnergy)
        and hasattr(c.energy.cartesian, "term_energies")
        and any(True for _ in c.flow.parameters())
    ]
    return [k for k, _ in kept], [c for _, c in kept]


def _shares(model: Model, indices: list[int], seed: int) -> list[float]:
    """Each trained component's share of a round's time (1 for a single generator).

    A mixture's states share it by their part ``P_k / ESS_k`` of ``1 / ESS`` for the
    surrogates (:func:`~confflow.generate.state_training.variance_shares`, from
    :data:`SURROGATE_STATE_SAMPLES` flow samples per state): the states whose flows fit their
    surrogates worst for their population get the most time.
    """
    if not isinstance(model, StateMixture):
        return [1.0]
    _, ess, population = state_estimates(model, seed, SURROGATE_STATE_SAMPLES)
    return variance_shares(population[indices], ess[indices]).tolist()


def _fit_data(
    model: Model, component: int, ensemble: Ensemble, temperature: float
) -> tuple[Tensor, Tensor, Tensor] | None:
    """A component's samples in one evaluated ensemble, as inputs of :func:`fit_level`.

    Returns torsions ``[M, K]`` (rad), the force field's reduced term energies ``[M, T]`` (kT)
    at the written conformers and ``Delta = (E_level - E_ff) / kT`` ``[M]``, or ``None`` where
    the ensemble holds none of the component's samples. A mixture's samples of the component's
    entries are mapped back to the component's own conformers (mirror images and relabellings
    undone) first.
    """
    assert ensemble.level is not None
    mixture = isinstance(model, StateMixture)
    generator = model.components[component] if mixture else model
    entries = model.entries if mixture else [(0, 1, 0)]
    kt = kT(temperature)
    theta, terms, delta = [], [], []
    for e, (k, _, _) in enumerate(entries):
        mask = ensemble.state.to(ensemble.x.device) == e
        if k != component or not bool(mask.any()):
            continue
        x = ensemble.x[mask]
        x = model.from_entry(e, x) if mixture else x
        theta.append(training_data(generator, x).double().cpu())
        with torch.no_grad():
            parts = generator.energy.cartesian.term_energies(x.double())
        terms.append(torch.stack(list(parts.values()), dim=1).cpu() / kt)
        e_ff = ensemble.energy[mask].double().cpu()
        delta.append((ensemble.level.energy[mask].double().cpu() - e_ff) / kt)
    if not theta:
        return None
    return torch.cat(theta), torch.cat(terms), torch.cat(delta)


def _record(
    evaluated: dict[int, list[tuple[Tensor, Tensor, Tensor]]],
    model: Model,
    ensemble: Ensemble,
    temperature: float,
) -> None:
    """Adds an evaluated ensemble's fit inputs to ``evaluated`` (per component, computed once)."""
    for k, parts in evaluated.items():
        data = _fit_data(model, k, ensemble, temperature)
        if data is not None:
            parts.append(data)


def _fit(parts: list[tuple[Tensor, Tensor, Tensor]]) -> LevelFit | None:
    """:func:`fit_level` on every sample recorded for a component (``None``: too few)."""
    if not parts:
        return None
    theta, terms, delta = (torch.cat(column) for column in zip(*parts, strict=True))
    return fit_level(theta, terms, delta)


def _train_round(
    model: Model,
    evaluated: dict[int, list[tuple[Tensor, Tensor, Tensor]]],
    frames: Tensor,
    config: GenerateConfig,
    seconds: float,
) -> dict:
    """One round: surrogates fitted, the flows trained on them, a mixture's weights re-set.

    ``evaluated`` holds, per refinable component, the fit inputs of every sample evaluated at
    the level so far (:func:`_record`).

    Returns:
        ``steps`` of training, and per component trained its fit's ``residual_kT`` and the
        ``surrogate_ess`` of its flow for its surrogate.
    """
    indices, targets = _refinable(model)
    # a component with too few evaluated samples gets no fit and is not trained
    fits = [_fit(evaluated[k]) for k in indices]
    chosen = [i for i, f in enumerate(fits) if f is not None]
    originals = [c.energy for c in targets]
    data = [training_data(c, frames) for c in targets]  # torsions, before the swap
    steps, surrogate_ess = 0, []
    try:
        for i in chosen:
            targets[i].energy = SurrogateTorsionalEnergy(originals[i], fits[i], config.temperature)
        deadline = time.perf_counter() + seconds
        shares = _shares(model, indices, config.seed + 5)
        order = sorted(chosen, key=lambda i: -shares[i])
        for rank, i in enumerate(order):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            share = shares[i] / sum(shares[j] for j in order[rank:])
            part = train_model(
                targets[i],
                data[i],
                dataclasses.replace(config, budget=left * share),
                maximum_likelihood=False,
                schedule=dataclasses.replace(SCHEDULES["torsional"], stop_ess=SURROGATE_ESS),
            )
            steps += part.refine_steps
            surrogate_ess.append(part.best_ess)
        if isinstance(model, StateMixture) and chosen:
            log_z, _, _ = state_estimates(model, config.seed + 5, SURROGATE_STATE_SAMPLES)
            set_state_weights(model, log_z)
    finally:
        for c, original in zip(targets, originals, strict=True):
            c.energy = original
    model.eval()
    residuals = [fits[i].residual for i in chosen]
    return {"steps": steps, "residual_kT": residuals, "surrogate_ess": surrogate_ess}


def _plan(left: float, evaluation_s: float, round_evaluation_s: float) -> tuple[float, bool]:
    """The next round's training seconds, and whether its draw is the final, full one.

    A short round (:data:`ROUND_SECONDS` of training, then :data:`ROUND_SAMPLES` evaluated)
    runs while it leaves room for one more round with a full evaluation after it; otherwise
    the round takes all the time left but its full evaluation. ``left`` is in s; no round
    below :data:`MIN_ROUND_SECONDS` (0 s of training returned).
    """
    after_short = left - ROUND_SECONDS - round_evaluation_s
    if after_short - evaluation_s >= MIN_ROUND_SECONDS:
        return ROUND_SECONDS, False
    train_s = left - evaluation_s
    return (train_s, True) if train_s >= MIN_ROUND_SECONDS else (0.0, True)


def refine_at_level(
    model: Model,
    ensemble: Ensemble,
    frames: Tensor,
    draw: Callable[[int, int], Ensemble],
    config: GenerateConfig,
    evaluation_s: float,
) -> tuple[Ensemble, dict]:
    """Refines ``model`` in place at the level in rounds, and returns the best ensemble.

    Each round fits the surrogate of :mod:`confflow.generate.surrogate` to every sample
    evaluated at the level so far, trains the torsional flows on it until their ESS for it
    reaches :data:`SURROGATE_ESS` or the round's time ends (a mixture's time shared by its
    states' weights, its weights then re-set from surrogate estimates), and draws fresh samples
    reweighted with the level's exact energies. The intermediate rounds draw only
    :data:`ROUND_SAMPLES` (a fit needs hundreds, and the time saved buys more rounds); the last
    round, and any round whose small draw reaches ``config.level_ess``, draws a full ensemble of
    ``config.n``. Rounds go on while that ensemble's ESS at the level is below
    ``config.level_ess`` and ``config.level_refine`` seconds leave room for one more.

    Args:
        model: the trained generator (its energies are restored afterwards).
        ensemble: the ensemble at the level (:func:`reweight_to_level`).
        frames: ``[M, N, 3]`` nm training positions (their torsions set the energy cap).
        draw: ``draw(round, n)`` samples ``n`` conformers of the model and reweights them to
            the level.
        config: run settings (``level_refine``, ``level_ess``, ``temperature``, ``seed``, ``n``).
        evaluation_s: seconds the level's evaluation of one full ensemble took.

    Returns:
        The full ensemble of the largest ESS at the level (``ensemble`` when no round beat it)
        and the report's ``refinement``: ``ess_before`` (at the level),
        ``ess_force_field_before`` (the force field's ESS of the same samples), ``steps`` and
        per round ``n`` (samples drawn), ``ess`` (theirs, at the level), ``train_s``, ``steps``,
        ``residual_kT`` (the surrogates' fit residuals), ``surrogate_ess`` (each flow's ESS
        for its surrogate) and, where a small draw reached ``level_ess`` and a full one was
        drawn to confirm it, ``ess_screen`` (the small draw's ESS).
    """
    deadline = time.perf_counter() + config.level_refine
    best = ensemble
    assert ensemble.level is not None
    report: dict = {
        "ess_before": ensemble.ess,
        "ess_force_field_before": ensemble.level.ess_force_field,
        "steps": 0,
        "rounds": [],
    }
    indices = _refinable(model)[0]
    if not indices:
        return best, report
    evaluated: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {k: [] for k in indices}
    _record(evaluated, model, ensemble, config.temperature)
    small = min(ROUND_SAMPLES, config.n)
    small_s = evaluation_s * small / config.n
    draws = 0
    while best.ess < config.level_ess:
        train_s, full = _plan(deadline - time.perf_counter(), evaluation_s, small_s)
        if not train_s:
            break
        trained = _train_round(model, evaluated, frames, config, train_s)
        if not trained["steps"]:
            break
        entry = {"train_s": train_s, **trained}
        full = full or small == config.n
        n = config.n if full else small
        start, draws = time.perf_counter(), draws + 1
        fresh = draw(draws, n)
        _record(evaluated, model, fresh, config.temperature)
        if not full:
            small_s = time.perf_counter() - start
            # a small draw at the threshold is confirmed by a full one
            full = fresh.ess >= config.level_ess
            if full:
                entry["ess_screen"] = fresh.ess
                n, start, draws = config.n, time.perf_counter(), draws + 1
                fresh = draw(draws, n)
                _record(evaluated, model, fresh, config.temperature)
        if full:
            evaluation_s = time.perf_counter() - start
        report["steps"] += trained["steps"]
        report["rounds"].append({"n": n, "ess": fresh.ess, **entry})
        if full and fresh.ess > best.ess:
            best = fresh
    return best, report
