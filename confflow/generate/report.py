"""The JSON report of one molecule's run, shared by ``confflow generate`` and the pipeline.

:func:`model_facts` describes the model (kind, the distribution its weights target, free
torsions, states); :func:`build_report` gathers everything else a run measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from confflow.chem import Molecule
from confflow.chem.conformation import ConformationLabeler
from confflow.generate.config import GenerateConfig
from confflow.generate.ensemble import Clusters, Ensemble, log_populations
from confflow.generate.model import Model, model_kind
from confflow.generate.molecule import rotatable_torsions
from confflow.generate.training import TrainingSummary
from confflow.generate.writers import versions
from confflow.reweighting import expectation, largest_weight_share

__all__ = ["TARGETS", "build_report", "model_facts"]


#: What the weights of each kind of model target, for the report.
TARGETS = {
    "cartesian": "exp(-E(x)/kT) over all 3N-6 internal coordinates",
    "torsional": "exp(-E(relax(theta))/kT) over the free torsions: the local structure of the "
    "lowest seed relaxed at each torsion set (an adiabatic torsional distribution)",
    "states": "sum over states k of exp(-E(relax_k(theta))/kT + c_k) on the cell of state k: "
    "the adiabatic torsional distribution of each state's local structure (isomer bonds held), "
    "weighted by its harmonic entropy c_k",
}


def model_facts(model: Model, layout: dict) -> dict[str, Any]:
    """The report's description of a model: kind, target, steps, torsions, states.

    Returns:
        ``{"model": kind, "target": str, "relax_steps": int, "free_torsions": [[a, b, c, d],
        ...]}`` (no free torsions for the Cartesian model), plus ``"states"`` (per entry:
        ``state``, ``mirror``, ``relabelled`` (an image by a graph automorphism),
        ``reference_energy_kJ_mol``, ``local_entropy``, ``pi``),
        ``states_found`` and ``states_left_out`` for a state mixture, ``"family"`` (of the
        model registry) for a Cartesian model.
    """
    kind = model_kind(model)
    free = []
    if kind == "states":
        free = [list(t) for t in model.components[0].energy.embedding.torsions]
    elif kind == "torsional":
        free = [list(t) for t in model.energy.embedding.torsions]
    steps = int(layout.get("relax_steps", 0))
    facts = {"model": kind, "target": TARGETS[kind], "relax_steps": steps, "free_torsions": free}
    if kind == "cartesian":
        facts["family"] = model.config.flow.family
    if kind == "states":
        facts["states"] = [
            {
                "state": k,
                "mirror": sign < 0,
                "relabelled": p > 0,
                "reference_energy_kJ_mol": float(layout["energies"][k]),
                "local_entropy": float(model.corrections[k]),
                "pi": float(model.log_pi[e].exp()),
            }
            for e, (k, sign, p) in enumerate(model.entries)
        ]
        facts["states_found"] = int(layout["found"])
        facts["states_left_out"] = int(layout["left_out"])
    return facts


def _clusters_report(ensemble: Ensemble, clusters: Clusters) -> list[dict[str, Any]]:
    """Per cluster: populations, free energies, the representative's energies and state.

    With a second level, ``population`` is at that level and ``population_force_field`` at the
    force field, from the same clusters.
    """
    entries = [
        {
            "population": float(clusters.population[k]),
            "log_population": float(clusters.log_population[k]),
            "free_energy_kT": float(clusters.free_energy[k]),
            "free_energy_kT_std": float(clusters.free_energy_std[k]),
            "size": int((clusters.labels == k).sum()),
            "energy_kJ_mol": float(ensemble.energy[clusters.representatives[k]]),
            "state": int(ensemble.state[clusters.representatives[k]]),
        }
        for k in range(len(clusters.representatives))
    ]
    level = ensemble.level
    if level is not None:
        k = len(entries)
        force_field = log_populations(clusters.labels, level.force_field_log_w, k).exp()
        for c, entry in enumerate(entries):
            entry["population_force_field"] = float(force_field[c])
            entry[f"energy_{level.method}_kJ_mol"] = float(
                level.energy[clusters.representatives[c]]
            )
    return entries


def _level_report(ensemble: Ensemble) -> dict[str, Any]:
    """The second level: its ESS figures, failures and energies (kJ/mol)."""
    level = ensemble.level
    assert level is not None
    return {
        "name": level.name,
        "ess": ensemble.ess,
        "ess_change": level.ess_change,
        "ess_force_field": level.ess_force_field,
        "failed": level.failed,
        "failures": [{"sample": i, "message": m} for i, m in level.failures],
        "energy_min_kJ_mol": float(level.energy.min()),
        "energy_mean_kJ_mol": float(expectation(level.energy, ensemble.log_w)),
        "refinement": level.refinement,
    }


def build_report(
    config: GenerateConfig,
    molecule: Molecule,
    *,
    facts: dict[str, Any],
    summary: TrainingSummary,
    skipped: bool,
    ensemble: Ensemble,
    clusters: Clusters | None,
    n_seeds: int,
    md_frames: int,
    records: int,
    timings: dict[str, float],
    wall_s: float,
    device: str,
    checkpoint: Path,
) -> dict[str, Any]:
    """The JSON report of one molecule's run.

    Args:
        config: the settings.
        molecule: the molecule.
        facts: the model's :func:`model_facts`, and ``compiled_mmff`` (training's MMFF kernel
            was compiled, see ``GenerateConfig.compile``).
        summary: the training's summary (empty when training was skipped).
        skipped: training was skipped (a checkpoint was reused).
        ensemble: the reweighted samples.
        clusters: the clusters, or ``None``.
        n_seeds: seed conformers embedded.
        md_frames: training positions (MD frames and the seeds, the seeds alone without MD; 0
            when skipped).
        records: SD records written.
        timings: seconds per stage.
        wall_s: total seconds.
        device: the training and sampling device.
        checkpoint: the model file.

    Returns:
        Plain JSON-ready data (see :func:`~confflow.generate.writers.write_report`).
    """
    n_kept = int(ensemble.x.shape[0])
    report: dict[str, Any] = {
        "smiles": config.smiles,
        "molecule": molecule.smiles,
        "n_atoms": molecule.n_atoms,
        "rotatable_torsions": [list(t) for t in rotatable_torsions(molecule)],
        "temperature_K": config.temperature,
        "energy": config.variant,
        **facts,
        "n_seeds": n_seeds,
        "ess": ensemble.ess,
        "ess_effective_samples": ensemble.ess * n_kept,
        "largest_weight": largest_weight_share(ensemble.log_w),
        "energy_min_kJ_mol": float(ensemble.energy.min()),
        "energy_mean_kJ_mol": float(expectation(ensemble.energy, ensemble.log_w)),
        "samples_drawn": ensemble.drawn,
        "samples_kept": n_kept,
        "nonfinite_rejected": ensemble.nonfinite,
        "stereo_rejected": ensemble.stereo_rejected,
        "state_rejected": ensemble.state_rejected,
        "records_written": records,
        "target_evaluations": summary.target_evaluations + ensemble.drawn,
        "training": {
            "nll_steps": summary.nll_steps,
            "refine_steps": summary.refine_steps,
            "val_nll": summary.val_nll,
            "ess_history": summary.ess_history,
            "stopped_early": summary.stopped_early,
            "skipped": skipped,
            "states": summary.states,
        },
        "md_frames": md_frames,
        "wall_s": wall_s,
        "timings_s": timings,
        "device": device,
        "checkpoint": str(checkpoint),
        "config": config.to_dict(),
        "versions": versions(),
    }
    if "states" in facts:
        log_total = torch.logsumexp(ensemble.log_w, 0)
        labeler = ConformationLabeler(molecule)
        for e, entry in enumerate(report["states"]):
            members = torch.nonzero(ensemble.state == e).squeeze(1)
            log_pop = float(torch.logsumexp(ensemble.log_w[members], 0) - log_total)
            entry.update(
                samples=int(members.numel()), log_population=log_pop, population=math.exp(log_pop)
            )
            if ensemble.level is not None:
                ff = ensemble.level.force_field_log_w
                log_ff = float(torch.logsumexp(ff[members], 0) - torch.logsumexp(ff, 0))
                entry["population_force_field"] = math.exp(log_ff)
            if members.numel():
                lowest = members[torch.argmin(ensemble.energy[members])]
                entry["conformation"] = labeler.labels(ensemble.x[lowest][None])[0]
    if ensemble.level is not None:
        report["level"] = _level_report(ensemble)
    if clusters is not None:
        report["clusters"] = _clusters_report(ensemble, clusters)
    return report
