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
"""

from __future__ import annotations

import dataclasses

import torch

from confflow.chem import Molecule
from confflow.energies import XTBEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.ensemble import MAX_LISTED_FAILURES, Ensemble, LevelData
from confflow.reweighting import change_level, kish_ess

__all__ = ["level_energy", "reweight_to_level"]


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
        ess_force_field=kish_ess(ensemble.log_w[ok]),
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
