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

Where the ESS at the level is below ``level_ess``, :func:`refine_at_level` continues training
each torsional flow on the level's energy at its own conformers
(:class:`~confflow.energies.LevelTorsionalEnergy`: 80% importance-weighted forward KL, 20%
reverse KL, as the force-field refinement, in small batches, the forward term pooled over the
last 1,024 evaluated samples so that each xTB evaluation serves some sixteen steps) for at
most ``level_refine`` seconds or until an ESS check of 256 samples, confirmed on 1,024,
reaches ``level_ess``; a state mixture's weights are then re-estimated at the level. The
ensemble is sampled and reweighted again.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.energies import LevelTorsionalEnergy, TorsionalEnergy, XTBEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.ensemble import MAX_LISTED_FAILURES, Ensemble, LevelData
from confflow.generate.model import Model, training_data
from confflow.generate.state_training import set_state_weights, state_estimates
from confflow.generate.training import Schedule, TrainingSummary, train_model
from confflow.models import StateMixture
from confflow.reweighting import change_level

__all__ = ["LEVEL_SCHEDULE", "LEVEL_STATE_SAMPLES", "level_energy", "refine_at_level"]
__all__ += ["reweight_to_level"]

#: Refinement at the level: the force field's torsional schedule with small batches and short
#: segments (a GFN2-xTB energy costs about a thousand MMFF ones); the forward KL pools the
#: last 1,024 evaluated samples, the checks are noisy, so the time budget rather than their
#: patience ends the refinement, and a check that reaches the target is confirmed on 1,024.
LEVEL_SCHEDULE = Schedule(
    nll_share=0.0,
    kl_weight=1.0,
    forward_weight=0.8,
    kl_batch_size=64,
    lr=5e-4,
    segment=10,
    patience=10,
    ess_samples=256,
    confirm_samples=1024,
    forward_replay=1024,
)
#: Flow samples per state for the level's estimate of a mixture's state populations.
LEVEL_STATE_SAMPLES = 256


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


def _refinable(model: Model) -> tuple[list, list[float]]:
    """Generators of ``model`` with a torsional energy and a trainable flow, and their weights.

    A weight is the share of the mixture's samples its component draws (1 for one generator).
    """
    if isinstance(model, StateMixture):
        index = torch.tensor([k for k, _, _ in model.entries], device=model.log_pi.device)
        weight = torch.zeros(len(model.components), dtype=model.log_pi.dtype)
        weight = weight.to(index.device).index_add(0, index, model.log_pi.exp()).tolist()
        pairs = list(zip(model.components, weight, strict=True))
    else:
        pairs = [(model, 1.0)]
    kept = [
        (c, w)
        for c, w in pairs
        if isinstance(c.energy, TorsionalEnergy) and any(True for _ in c.flow.parameters())
    ]
    return [c for c, _ in kept], [w for _, w in kept]


def refine_at_level(
    model: Model, energy: XTBEnergy, frames: Tensor, config: GenerateConfig
) -> TrainingSummary:
    """Continues training ``model`` in place on the level's energy at its own conformers.

    Each torsional flow refines for its share of ``config.level_refine`` seconds (a mixture's
    by its states' weights), stopping early once an ESS check reaches ``config.level_ess``; a
    mixture's weights are then set from importance-sampling estimates at the level. Cartesian
    models are not refined (an empty summary).

    Args:
        model: the trained generator (its energies are restored afterwards).
        energy: the level's energy.
        frames: ``[M, N, 3]`` nm training positions (their torsions set the energy cap).
        config: run settings (``level_refine``, ``level_ess``, ``seed``, ``device``).

    Returns:
        The refinement's :class:`~confflow.generate.training.TrainingSummary`.
    """
    summary = TrainingSummary()
    targets, shares = _refinable(model)
    if not targets:
        return summary
    deadline = time.perf_counter() + config.level_refine
    plan = dataclasses.replace(LEVEL_SCHEDULE, stop_ess=config.level_ess)
    originals = [c.energy for c in targets]
    data = [training_data(c, frames) for c in targets]  # torsions, before the swap
    try:
        for c in targets:
            c.energy = LevelTorsionalEnergy(c.energy, energy)
        order = sorted(range(len(targets)), key=lambda i: -shares[i])
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
                schedule=plan,
            )
            summary.refine_steps += part.refine_steps
            summary.target_evaluations += part.target_evaluations
            summary.ess_history += part.ess_history
            summary.best_ess = max(summary.best_ess, part.best_ess)
        if isinstance(model, StateMixture):
            log_z, _, _ = state_estimates(model, config.seed + 5, LEVEL_STATE_SAMPLES)
            summary.target_evaluations += LEVEL_STATE_SAMPLES * len(model.components)
            set_state_weights(model, log_z)
    finally:
        for c, original in zip(targets, originals, strict=True):
            c.energy = original
    model.eval()
    return summary
