"""The ``generate`` pipeline: SMILES -> Boltzmann-weighted conformer ensemble (SDF + report).

Stages (each timed in the report): ``molecule`` (parse, validate), ``seeds`` (ETKDG + MMFF),
``md`` (replica-exchange MMFF MD with OpenMM), ``training`` (maximum likelihood, then mixed
refinement with early stopping on ESS; skipped with a checkpoint), ``sampling`` (flow samples,
stereo filter, energies, log-weights), ``clustering`` (with ``unique``) and ``writing``.

The trained model is saved to ``<run_dir>/model.pt`` as soon as training ends, so an
interruption later keeps it and ``checkpoint=<run_dir>/model.pt`` skips training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from confflow.coordinates import StereoCheck
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.data import md_samples, seed_conformers
from confflow.generate.ensemble import Clusters, Ensemble, cluster, sample_ensemble
from confflow.generate.model import (
    TrainingSummary,
    build_model,
    load_model,
    model_kind,
    model_layout,
    resolve_model,
    save_model,
    train_model,
    training_data,
)
from confflow.generate.molecule import load_molecule, rotatable_torsions
from confflow.generate.writers import versions, write_ensemble_sdf, write_plots, write_report
from confflow.training import resolve_device

__all__ = ["GenerateResult", "check_writable", "run_generate"]

#: Seed conformers embedded (the lowest-energy one starts the MD).
N_SEEDS = 16


@dataclass
class GenerateResult:
    """What a run wrote and measured.

    Attributes:
        sdf: the ensemble file; report: the JSON report; checkpoint: the trained model.
        ess: Kish ESS fraction of the kept samples.
        n_written: SD records written.
        stereo_rejected: samples dropped for changed stereochemistry.
        wall_s: total wall time in s.
        timings: seconds per stage.
        report_data: the report's contents.
    """

    sdf: Path
    report: Path
    checkpoint: Path
    ess: float
    n_written: int
    stereo_rejected: int
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    report_data: dict[str, Any] = field(default_factory=dict)


def check_writable(config: GenerateConfig) -> None:
    """Fails early when the SDF, report or run folder cannot be written.

    Raises:
        GenerateError: a missing or read-only folder, or an output that is a directory.
    """
    for path in (config.out, config.report_path):
        if path.is_dir():
            raise GenerateError(f"--out {config.out}: {path} is a directory")
    folder = config.out.parent
    probe = folder / f".{config.out.name}.probe"
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise GenerateError(f"--out {config.out}: cannot write there ({err.strerror})") from err


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
    return value


def _outputs(ensemble: Ensemble, clusters: Clusters | None) -> dict:
    """SD tags for the written records: every sample, or one representative per cluster."""
    if clusters is None:
        idx = torch.arange(ensemble.x.shape[0])
        weight = ensemble.weights
        extra: dict[str, torch.Tensor] = {}
    else:
        idx = clusters.representatives
        weight = clusters.population
        extra = {
            "free_energy_kT": clusters.free_energy,
            "free_energy_kT_std": clusters.free_energy_std,
            "cluster_size": torch.bincount(clusters.labels).double(),
        }
    tags = {
        "energy_kJ_mol": ensemble.energy[idx],
        "log_q": ensemble.log_q[idx],
        "log_w": ensemble.log_w[idx],
        "weight": weight,
        **extra,
    }
    return {"x": ensemble.x[idx], "tags": tags}


def _free_torsions(model) -> list[list[int]]:
    """Atom quadruples of the torsional model's free torsions (empty for the Cartesian one)."""
    if model_kind(model) != "torsional":
        return []
    return [list(t) for t in model.energy.embedding.torsions]


def run_generate(
    config: GenerateConfig, log: Callable[[str], None] = lambda _: None
) -> GenerateResult:
    """Runs the whole pipeline.

    Args:
        config: the validated settings.
        log: receives one line per finished stage (``print`` for a chatty CLI).

    Returns:
        The :class:`GenerateResult`.

    Raises:
        GenerateError: bad molecule, output path, checkpoint or device.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    molecule = _timed(
        timings, "molecule", lambda: load_molecule(config.smiles, config.largest_fragment)
    )
    check_writable(config)
    if config.checkpoint is None:
        resolve_model(molecule, config)  # fails before MD on --model torsional without rotors
    try:
        device = resolve_device(config.device)
    except ValueError as err:
        raise GenerateError(f"--device: {err}") from err
    torch.manual_seed(config.seed)
    seeds = _timed(
        timings,
        "seeds",
        lambda: seed_conformers(molecule, N_SEEDS, config.seed + 1, config.variant),
    )
    log(f"seed conformers: {seeds.shape[0]} ({timings['seeds']:.1f} s)")
    stereo = StereoCheck(molecule, seed=config.seed + 1)
    checkpoint = config.run_dir / "model.pt"
    md_x = seeds
    summary = TrainingSummary()
    if config.checkpoint is not None:
        model, layout = _timed(
            timings, "training", lambda: load_model(config.checkpoint, molecule, config)
        )
        checkpoint = config.checkpoint
        log(f"model: reused {config.checkpoint} (training skipped)")
    else:
        if config.md_ns > 0:
            md_x = _timed(
                timings,
                "md",
                lambda: md_samples(molecule, seeds[0], config, config.run_dir / "md"),
            )
            log(f"MD: {md_x.shape[0]} frames ({timings['md']:.1f} s)")
        layout = model_layout(molecule, config, seeds[0], md_x)
        model = build_model(molecule, config, layout).to(device)

        def keep(m) -> None:
            save_model(checkpoint, m, config, layout)

        data = training_data(model, md_x)
        summary = _timed(timings, "training", lambda: train_model(model, data, config, keep))
        log(
            f"training: {summary.nll_steps} ML + {summary.refine_steps} refinement steps, "
            f"ESS {100 * summary.best_ess:.1f}% ({timings['training']:.1f} s)"
        )
    model = model.to(device)
    ensemble = _timed(
        timings, "sampling", lambda: sample_ensemble(model, stereo, config.n, config.seed + 2)
    )
    log(
        f"sampling: {ensemble.x.shape[0]} of {config.n} kept, ESS {100 * ensemble.ess:.1f}%, "
        f"{ensemble.stereo_rejected} stereo rejections ({timings['sampling']:.1f} s)"
    )
    clusters = None
    if config.unique is not None:
        clusters = _timed(
            timings,
            "clustering",
            lambda: cluster(molecule, ensemble, config.unique, config.bootstrap, config.seed),
        )
        log(f"clustering: {len(clusters.representatives)} conformers")
    out = _outputs(ensemble, clusters)
    _timed(timings, "writing", lambda: write_ensemble_sdf(config.out, molecule, **out))
    if config.plots:
        torsions = rotatable_torsions(molecule)
        _timed(
            timings,
            "plots",
            lambda: write_plots(config.run_dir, torsions, md_x, ensemble.x, ensemble.log_w),
        )
    wall = time.perf_counter() - t0
    report = {
        "smiles": config.smiles,
        "molecule": molecule.smiles,
        "n_atoms": molecule.n_atoms,
        "rotatable_torsions": [list(t) for t in rotatable_torsions(molecule)],
        "temperature_K": config.temperature,
        "energy": config.variant,
        "model": layout["model"],
        "relax_steps": int(layout.get("relax_steps", 0)),
        "free_torsions": _free_torsions(model),
        "ess": ensemble.ess,
        "ess_effective_samples": ensemble.ess * ensemble.x.shape[0],
        "samples_drawn": ensemble.drawn,
        "samples_kept": int(ensemble.x.shape[0]),
        "nonfinite_rejected": ensemble.nonfinite,
        "stereo_rejected": ensemble.stereo_rejected,
        "records_written": int(out["x"].shape[0]),
        "target_evaluations": summary.target_evaluations + ensemble.drawn,
        "training": {
            "nll_steps": summary.nll_steps,
            "refine_steps": summary.refine_steps,
            "val_nll": summary.val_nll,
            "ess_history": summary.ess_history,
            "stopped_early": summary.stopped_early,
            "skipped": config.checkpoint is not None,
        },
        "md_frames": int(md_x.shape[0]) if config.checkpoint is None else 0,
        "wall_s": wall,
        "timings_s": timings,
        "device": str(device),
        "checkpoint": str(checkpoint),
        "config": config.to_dict(),
        "versions": versions(),
    }
    if clusters is not None:
        report["clusters"] = [
            {
                "population": float(clusters.population[k]),
                "log_population": float(clusters.log_population[k]),
                "free_energy_kT": float(clusters.free_energy[k]),
                "free_energy_kT_std": float(clusters.free_energy_std[k]),
                "size": int((clusters.labels == k).sum()),
                "energy_kJ_mol": float(ensemble.energy[clusters.representatives[k]]),
            }
            for k in range(len(clusters.representatives))
        ]
    write_report(config.report_path, report)
    return GenerateResult(
        config.out,
        config.report_path,
        checkpoint,
        ensemble.ess,
        int(out["x"].shape[0]),
        ensemble.stereo_rejected,
        wall,
        timings,
        report,
    )
