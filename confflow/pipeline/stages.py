"""The per-molecule stages of a pipeline, each one a Dask task.

Each task calls the stage functions of ``confflow generate`` (:mod:`confflow.generate.stages`)
with the molecule's :class:`~confflow.generate.GenerateConfig`
(:meth:`PipelineConfig.generate_config`), so a molecule's ``ensemble.sdf`` and its report
``ensemble.json`` are those ``confflow generate --out ensemble.sdf`` writes with the same
settings. What one task hands the next goes through the molecule's folder. On purpose the
pipeline differs in: ``n_seeds`` when set, the folder layout below, the
report's ``timings_s`` (seconds per task, which ``wall_s`` sums: time queued between tasks is
not counted), and no plots or checkpoint reuse (a rerun reuses the stages already done).

A stage takes the molecule's *state* (a small dict passed from task to task) and returns the
next state. Its outputs live in the molecule's folder and are written atomically; a marker
``stages/<stage>.json`` with the sizes and SHA-256 of the outputs is written last, so a stage
whose marker matches its files is complete and is not redone (reruns, and retries after a
killed worker). A molecule-level failure (bad SMILES, no MMFF94 parameters, diverged
training) sets ``status = "failed"`` with the stage and reason; later stages pass it through.

Folder of one molecule::

    seeds.npz            ETKDG + MMFF94-minimised conformers x [C, N, 3] nm, energy [C] kJ/mol
    md/                  reference MD run (only with md_ns > 0)
    reference.npz        training positions x [M, N, 3] nm
    train/model.pt       the trained generator (as ``confflow generate`` saves it)
    samples.npz          kept flow samples x (nm), energy (kJ/mol), log_q, log_w (nats), and
                         the counts drawn, nonfinite, stereo_rejected
    ensemble.sdf         the samples, or one per cluster with ``unique`` (``confflow generate``'s)
    ensemble.json        the report of ``confflow generate``
    result.json          the molecule's record, with the checksums of every output
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from confflow.atomic import atomic_path, write_json, write_text
from confflow.chem import Molecule
from confflow.generate import GenerateConfig
from confflow.generate import report as reporting
from confflow.generate import stages as shared
from confflow.generate.ensemble import Ensemble
from confflow.generate.level import level_energy, reweight_to_level
from confflow.generate.model import load_model
from confflow.generate.molecule import rotatable_torsions
from confflow.generate.training import TrainingSummary
from confflow.generate.writers import write_report
from confflow.pipeline.config import PipelineConfig
from confflow.pipeline.files import describe_files, files_match, read_json

__all__ = [
    "STAGES",
    "featurize",
    "is_complete",
    "reference",
    "reweight",
    "sample",
    "train",
    "write",
]

#: Outputs listed in ``result.json``; all must match for a molecule to count as complete.
RESULT_FILES = [
    "seeds.npz",
    "reference.npz",
    "train/model.pt",
    "samples.npz",
    "ensemble.sdf",
    "ensemble.json",
]

State = dict[str, Any]
StageBody = Callable[[Path, State, PipelineConfig], tuple[dict[str, Any], list[str]]]


def _stage(name: str) -> Callable[[StageBody], Callable[[State, PipelineConfig], State]]:
    """Wraps a stage body with skip-if-complete, timing, failure recording and its marker."""

    def wrap(body: StageBody) -> Callable[[State, PipelineConfig], State]:
        @functools.wraps(body)
        def run(state: State, config: PipelineConfig) -> State:
            if state["status"] == "failed":
                return state
            state = {**state, "timings": dict(state["timings"]), "metrics": dict(state["metrics"])}
            root = Path(state["dir"])
            marker = root / "stages" / f"{name}.json"
            record = read_json(marker)
            if (
                isinstance(record, dict)
                and record.get("key") == state["key"]
                and files_match(root, record.get("files"))
            ):
                state["metrics"].update(record["metrics"])
                state["timings"][name] = record["seconds"]
                state["reused"] = [*state.get("reused", []), name]
                state["status"] = "done" if name == "write" else state["status"]
                return state
            torch.set_num_threads(config.threads)
            start = time.perf_counter()
            try:
                metrics, files = body(root, state, config)
            except (ValueError, RuntimeError, ArithmeticError) as err:
                state.update(status="failed", failed_stage=name)
                state["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
                state["timings"][name] = time.perf_counter() - start
                return state
            seconds = time.perf_counter() - start
            write_json(
                marker,
                {
                    "key": state["key"],
                    "seconds": seconds,
                    "host": socket.gethostname(),
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "metrics": metrics,
                    "files": describe_files(root, files),
                },
            )
            state["metrics"].update(metrics)
            state["timings"][name] = seconds
            state["status"] = "done" if name == "write" else state["status"]
            return state

        return run

    return wrap


def _owned_dir(root: Path, name: str, key: str) -> Path:
    """``root/name``, emptied unless it was written for the same ``key`` (settings, molecule).

    Keeps a killed run's partial results (MD chunks) for its retry, drops those of other
    settings.
    """
    path, stamp = root / name, root / "stages" / f"{name}.dir-key"
    if path.exists() and (not stamp.exists() or stamp.read_text() != key):
        shutil.rmtree(path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_text(stamp, key)
    return path


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)


def _molecule(state: State, config: PipelineConfig) -> tuple[Molecule, GenerateConfig]:
    """The molecule (checked as ``confflow generate`` does) and its :class:`GenerateConfig`."""
    generate = config.generate_config(state["smiles"], Path(state["dir"]) / "ensemble.sdf")
    return shared.prepare_molecule(generate), generate


def _seeds(root: Path) -> Tensor:
    with np.load(root / "seeds.npz") as data:
        return torch.from_numpy(data["x"])


@_stage("featurize")
def featurize(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Parses and checks the molecule, seeds MMFF94-minimised conformers, checks MMFF94."""
    molecule, generate = _molecule(state, config)
    x, energies = shared.seeds(molecule, generate, config.n_seeds)
    _save_npz(root / "seeds.npz", x=x.numpy(), energy=energies.numpy())
    metrics = {"canonical_smiles": molecule.smiles, "n_atoms": molecule.n_atoms}
    metrics["rotatable_torsions"] = len(rotatable_torsions(molecule))
    metrics["n_seeds"] = int(x.shape[0])
    metrics["seed_energy_min"] = float(energies.min())
    return metrics, ["seeds.npz"]


@_stage("reference")
def reference(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Training data: the seeds, or MMFF (replica-exchange) MD when ``md_ns > 0``."""
    molecule, generate = _molecule(state, config)
    md_dir = root / "md"
    if config.md_ns > 0:
        md_dir = _owned_dir(root, "md", state["key"])
        if md_dir.exists() and not (md_dir / "metadata.json").exists():
            shutil.rmtree(md_dir)  # killed before its first chunk: start over
    x = shared.reference_data(molecule, _seeds(root), generate, md_dir)
    _save_npz(root / "reference.npz", x=x.numpy())
    source = "md" if config.md_ns > 0 else "seeds"
    return {"reference": source, "n_reference": len(x)}, ["reference.npz"]


@_stage("train")
def train(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Trains the Boltzmann generator of ``confflow generate`` within ``budget`` seconds."""
    molecule, generate = _molecule(state, config)
    with np.load(root / "reference.npz") as ref:
        data = torch.from_numpy(ref["x"])
    device = shared.device_of(generate)
    path = _owned_dir(root, "train", state["key"]) / "model.pt"
    # A worker's first molecules compile while they train (a compilation that outlasts the
    # training goes on in the worker without holding up the task); later ones find it ready.
    compiling = shared.start_compiling(molecule, generate, device)
    summary = shared.train(molecule, generate, _seeds(root), data, path, device).summary
    compiled = compiling is not None and compiling.done() and compiling.result()
    metrics = {
        "train_nll_steps": summary.nll_steps,
        "train_refine_steps": summary.refine_steps,
        "train_best_ess": summary.best_ess,
        "train_device": str(device),
        "train_compiled_mmff": compiled,
        "training": dataclasses.asdict(summary),
    }
    return metrics, ["train/model.pt"]


@_stage("sample")
def sample(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Draws ``n_samples``, keeps the finite ones with the input's stereo, log-weights them."""
    molecule, generate = _molecule(state, config)
    model, layout = load_model(root / "train" / "model.pt", molecule, generate)
    device = shared.device_of(generate)
    ensemble = shared.sample(model.to(device), molecule, generate)
    _save_npz(
        root / "samples.npz",
        x=ensemble.x.numpy(),
        energy=ensemble.energy.numpy(),
        log_q=ensemble.log_q.numpy(),
        log_w=ensemble.log_w.numpy(),
        state=ensemble.state.numpy(),
        drawn=np.array(ensemble.drawn),
        nonfinite=np.array(ensemble.nonfinite),
        stereo_rejected=np.array(ensemble.stereo_rejected),
        state_rejected=np.array(ensemble.state_rejected),
    )
    metrics = {
        "n_drawn": ensemble.drawn,
        "n_kept": int(ensemble.x.shape[0]),
        "nonfinite_rejected": ensemble.nonfinite,
        "stereo_rejected": ensemble.stereo_rejected,
        "sample_device": str(device),
        "model_facts": reporting.model_facts(model, layout),
    }
    return metrics, ["samples.npz"]


def _ensemble(path: Path) -> Ensemble:
    """The :class:`Ensemble` the sample stage saved."""
    with np.load(path) as data:
        tensors = [torch.from_numpy(data[k]) for k in ("x", "energy", "log_q", "log_w", "state")]
        names = ("drawn", "nonfinite", "stereo_rejected", "state_rejected")
        counts = [int(data[k]) for k in names]
    return Ensemble(*tensors, *counts)


@_stage("reweight")
def reweight(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Clusters (with ``unique``), writes the SDF and the report as ``confflow generate`` does."""
    molecule, generate = _molecule(state, config)
    ensemble = _ensemble(root / "samples.npz")
    timings = dict(state["timings"])
    xtb = level_energy(molecule, generate)
    if xtb is not None:
        start = time.perf_counter()
        ensemble = reweight_to_level(ensemble, xtb, generate.temperature)
        timings["level"] = time.perf_counter() - start
    clusters = shared.cluster_ensemble(molecule, ensemble, generate)
    written = shared.write_sdf(generate.out, molecule, ensemble, clusters)
    metrics = state["metrics"]
    report = reporting.build_report(
        generate,
        molecule,
        facts={**metrics["model_facts"], "compiled_mmff": metrics["train_compiled_mmff"]},
        summary=TrainingSummary(**metrics["training"]),
        skipped=False,
        ensemble=ensemble,
        clusters=clusters,
        n_seeds=metrics["n_seeds"],
        md_frames=metrics["n_reference"],
        records=written,
        timings=timings,
        wall_s=sum(timings.values()),
        device=metrics["sample_device"],
        checkpoint=root / "train" / "model.pt",
    )
    write_report(generate.report_path, report)
    outcome = {
        "ess": report["ess"],
        "ess_samples": report["ess_effective_samples"],
        "largest_weight": report["largest_weight"],
        "energy_mean": report["energy_mean_kJ_mol"],
        "energy_min": report["energy_min_kJ_mol"],
        "records_written": written,
    }
    return outcome, ["ensemble.sdf", "ensemble.json"]


@_stage("write")
def write(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Writes ``result.json``: the molecule's record with the checksums of all its outputs."""
    record = {
        "key": state["key"],
        "name": state["name"],
        "smiles": state["smiles"],
        "status": "done",
        "metrics": state["metrics"],
        "timings": state["timings"],
        "files": describe_files(root, RESULT_FILES),
    }
    write_json(root / "result.json", record)
    return {}, ["result.json"]


#: Stage order; the runner submits one task per stage and molecule.
STAGES: dict[str, Callable[[State, PipelineConfig], State]] = {
    "featurize": featurize,
    "reference": reference,
    "train": train,
    "sample": sample,
    "reweight": reweight,
    "write": write,
}


def is_complete(root: Path, key: str) -> dict[str, Any] | None:
    """The ``result.json`` record of a complete, valid molecule folder, else ``None``."""
    record = read_json(root / "result.json")
    valid = isinstance(record, dict) and record.get("key") == key
    if valid and record.get("status") == "done" and files_match(root, record.get("files")):
        return record
    return None
