"""The ``generate`` pipeline: SMILES -> Boltzmann-weighted conformer ensemble (SDF + report).

Stages (each timed in the report): ``molecule`` (parse, validate), ``seeds`` (ETKDG + MMFF),
``md`` (replica-exchange MMFF MD with OpenMM), ``training`` (maximum likelihood, then mixed
refinement with early stopping on ESS; skipped with a checkpoint), ``sampling`` (flow samples,
stereo filter, energies, log-weights), ``level`` (with ``level``: GFN-xTB energies and
weights, and ``level_refine`` when their ESS is small; :mod:`confflow.generate.level`),
``clustering`` (with ``unique``) and ``writing``.
The stage functions are those of :mod:`confflow.generate.stages`, which the pipeline's Dask
tasks (:mod:`confflow.pipeline.stages`) call too.

The trained model is saved to ``<run_dir>/model.pt`` as soon as training ends, so an
interruption later keeps it and ``checkpoint=<run_dir>/model.pt`` skips training.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from confflow.chem import Molecule
from confflow.energies import XTBEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.ensemble import Ensemble
from confflow.generate.level import ROUND_SEED, level_energy, refine_at_level, reweight_to_level
from confflow.generate.model import Model, load_model
from confflow.generate.molecule import rotatable_torsions
from confflow.generate.report import build_report, model_facts
from confflow.generate.stages import (
    cluster_ensemble,
    device_of,
    prepare_molecule,
    reference_data,
    sample,
    seeds,
    start_compiling,
    train,
    write_sdf,
)
from confflow.generate.training import TrainingSummary
from confflow.generate.writers import write_plots, write_report

__all__ = ["GenerateResult", "check_writable", "run_generate"]


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


def _refine_at_level(
    model: Model,
    xtb: XTBEnergy,
    frames: Tensor,
    molecule: Molecule,
    ensemble: Ensemble,
    config: GenerateConfig,
    timings: dict[str, float],
    log: Callable[[str], None],
) -> Ensemble:
    """Refines the model at the level in rounds and keeps the best ensemble (the level stage)."""
    log(
        f"level {config.level}: ESS {100 * ensemble.ess:.1f}%, refining ({config.level_refine:g} s)"
    )

    def draw(round_: int, n: int) -> Ensemble:
        settings = dataclasses.replace(config, seed=config.seed + ROUND_SEED * round_, n=n)
        return reweight_to_level(sample(model, molecule, settings), xtb, config.temperature)

    best, refinement = _timed(
        timings,
        "level_refine",
        lambda: refine_at_level(model, ensemble, frames, draw, config, timings["level"]),
    )
    refinement["seconds"] = timings["level_refine"]
    assert best.level is not None
    best.level.refinement = refinement
    return best


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
    molecule = _timed(timings, "molecule", lambda: prepare_molecule(config))
    xtb = level_energy(molecule, config)
    check_writable(config)
    device = device_of(config)
    compiling = None if config.checkpoint is not None else start_compiling(molecule, config, device)
    seed_x, _ = _timed(timings, "seeds", lambda: seeds(molecule, config))
    log(f"seed conformers: {seed_x.shape[0]} ({timings['seeds']:.1f} s)")
    checkpoint = config.run_dir / "model.pt"
    md_x = seed_x
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
                lambda: reference_data(molecule, seed_x, config, config.run_dir / "md"),
            )
            n_frames = md_x.shape[0] - seed_x.shape[0]
            log(f"MD: {n_frames} frames ({timings['md']:.1f} s), trained on with the seeds")
        trained = _timed(
            timings,
            "training",
            lambda: train(molecule, config, seed_x, md_x, checkpoint, device),
        )
        model, layout, summary = trained.model, trained.layout, trained.summary
        log(
            f"training: {summary.nll_steps} ML + {summary.refine_steps} refinement steps, "
            f"ESS {100 * summary.best_ess:.1f}% ({timings['training']:.1f} s)"
        )
    compiled = False
    if compiling is not None:  # waits only when training ended before the compilation
        compiled = _timed(timings, "compile_wait", compiling.result)
        log(f"MMFF kernel: {'compiled' if compiled else 'eager (compilation failed)'}")
    model = model.to(device)
    ensemble = _timed(timings, "sampling", lambda: sample(model, molecule, config))
    log(
        f"sampling: {ensemble.x.shape[0]} of {config.n} kept, ESS {100 * ensemble.ess:.1f}%, "
        f"{ensemble.stereo_rejected} stereo rejections ({timings['sampling']:.1f} s)"
    )
    if xtb is not None:
        ensemble = _timed(
            timings, "level", lambda: reweight_to_level(ensemble, xtb, config.temperature)
        )
        assert ensemble.level is not None
        if config.level_refine > 0 and ensemble.ess < config.level_ess:
            ensemble = _refine_at_level(model, xtb, md_x, molecule, ensemble, config, timings, log)
        log(
            f"level {ensemble.level.name}: ESS {100 * ensemble.ess:.1f}% "
            f"({100 * ensemble.level.ess_change:.0f}% of the force field's), "
            f"{ensemble.level.failed} failed "
            f"({timings['level']:.1f} s)"
        )
    clusters = None
    if config.unique is not None:
        clusters = _timed(
            timings, "clustering", lambda: cluster_ensemble(molecule, ensemble, config)
        )
        log(f"clustering: {len(clusters.representatives)} conformers")
    written = _timed(
        timings, "writing", lambda: write_sdf(config.out, molecule, ensemble, clusters)
    )
    if config.plots:
        torsions = rotatable_torsions(molecule)
        _timed(
            timings,
            "plots",
            lambda: write_plots(config.run_dir, torsions, md_x, ensemble.x, ensemble.log_w),
        )
    wall = time.perf_counter() - t0
    report = build_report(
        config,
        molecule,
        facts={**model_facts(model, layout), "compiled_mmff": compiled},
        summary=summary,
        skipped=config.checkpoint is not None,
        ensemble=ensemble,
        clusters=clusters,
        n_seeds=int(seed_x.shape[0]),
        md_frames=int(md_x.shape[0]) if config.checkpoint is None else 0,
        records=written,
        timings=timings,
        wall_s=wall,
        device=str(device),
        checkpoint=checkpoint,
    )
    write_report(config.report_path, report)
    return GenerateResult(
        config.out,
        config.report_path,
        checkpoint,
        ensemble.ess,
        written,
        ensemble.stereo_rejected,
        wall,
        timings,
        report,
    )
