"""The per-molecule stages of a pipeline, each one a Dask task.

The stage bodies call the stage functions of ``confflow generate`` (:mod:`confflow.generate`),
so a molecule's ensemble is the one ``confflow generate`` would write with the same settings.

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
    samples.npz          kept flow samples x (nm), energy (kJ/mol), log_q, log_w (nats)
    ensemble.sdf         the samples (Angstrom) with energy, log q, log w and normalised weight
    metrics.json         ESS, largest weight, energies
    result.json          the molecule's record, with the checksums of every output
"""

from __future__ import annotations

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

from confflow.atomic import atomic_path, write_json, write_text
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
    "metrics.json",
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


def _molecule(state: State, config: PipelineConfig) -> tuple[Any, Any]:
    """The molecule (parsed as ``confflow generate`` does) and its :class:`GenerateConfig`."""
    from confflow.generate.molecule import load_molecule

    generate = config.generate_config(state["smiles"], Path(state["dir"]) / "ensemble.sdf")
    return load_molecule(state["smiles"], config.largest_fragment), generate


@_stage("featurize")
def featurize(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Parses and checks the molecule, seeds MMFF94-minimised conformers, checks MMFF94."""
    from confflow.energies.mmff import MMFFEnergy
    from confflow.generate.data import seed_conformers
    from confflow.generate.molecule import rotatable_torsions

    molecule, generate = _molecule(state, config)
    # lowest energy first: it starts the MD and is the torsional model's local structure
    x = seed_conformers(molecule, config.n_seeds, config.seed + 1, generate.variant)
    energy = MMFFEnergy(molecule.rdkit_mol, variant=generate.variant).double()
    energies = energy.energy(x).detach()
    if not bool(torch.isfinite(energies).all()):
        raise ValueError(f"{molecule.source}: non-finite MMFF94 energy of a seed conformer")
    _save_npz(root / "seeds.npz", x=x.numpy(), energy=energies.numpy())
    metrics = {"canonical_smiles": molecule.smiles, "n_atoms": molecule.n_atoms}
    metrics["rotatable_torsions"] = len(rotatable_torsions(molecule))
    metrics["seed_energy_min"] = float(energies.min())
    return metrics, ["seeds.npz"]


@_stage("reference")
def reference(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Training data: the seeds, or MMFF (replica-exchange) MD when ``md_ns > 0``."""
    with np.load(root / "seeds.npz") as seeds:
        x = torch.from_numpy(seeds["x"])
    source = "seeds"
    if config.md_ns > 0:
        from confflow.generate.data import md_samples

        molecule, generate = _molecule(state, config)
        md_dir = _owned_dir(root, "md", state["key"])
        if md_dir.exists() and not (md_dir / "metadata.json").exists():
            shutil.rmtree(md_dir)  # killed before its first chunk: start over
        x, source = md_samples(molecule, x[0], generate, md_dir), "md"
    _save_npz(root / "reference.npz", x=x.numpy())
    return {"reference": source, "n_reference": len(x)}, ["reference.npz"]


@_stage("train")
def train(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Trains the Boltzmann generator of ``confflow generate`` within ``budget`` seconds."""
    from confflow.generate.model import (
        build_model,
        model_layout,
        save_model,
        train_model,
        training_data,
    )
    from confflow.training import resolve_device

    molecule, generate = _molecule(state, config)
    with np.load(root / "reference.npz") as ref:
        data = torch.from_numpy(ref["x"])
    with np.load(root / "seeds.npz") as seeds:
        lowest = torch.from_numpy(seeds["x"][0])
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    layout = model_layout(molecule, generate, lowest, data)
    model = build_model(molecule, generate, layout).to(device)
    path = _owned_dir(root, "train", state["key"]) / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)

    def keep(m) -> None:
        save_model(path, m, generate, layout)

    summary = train_model(model, training_data(model, data), generate, keep)
    keep(model)
    metrics = {
        "train_nll_steps": summary.nll_steps,
        "train_refine_steps": summary.refine_steps,
        "train_best_ess": summary.best_ess,
        "train_device": str(device),
    }
    return metrics, ["train/model.pt"]


@_stage("sample")
def sample(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Draws ``n_samples``, keeps the finite ones with the input's stereo, log-weights them."""
    from confflow.coordinates import StereoCheck
    from confflow.generate.ensemble import sample_ensemble
    from confflow.generate.model import load_model
    from confflow.training import resolve_device

    molecule, generate = _molecule(state, config)
    model, _ = load_model(root / "train" / "model.pt", molecule, generate)
    model = model.to(resolve_device(config.device))
    stereo = StereoCheck(molecule, seed=config.seed + 1)
    ensemble = sample_ensemble(model, stereo, config.n_samples, config.seed + 2)
    _save_npz(
        root / "samples.npz",
        x=ensemble.x.numpy(),
        energy=ensemble.energy.numpy(),
        log_q=ensemble.log_q.numpy(),
        log_w=ensemble.log_w.numpy(),
    )
    metrics = {
        "n_drawn": ensemble.drawn,
        "n_kept": int(ensemble.x.shape[0]),
        "nonfinite_rejected": ensemble.nonfinite,
        "stereo_rejected": ensemble.stereo_rejected,
    }
    return metrics, ["samples.npz"]


@_stage("reweight")
def reweight(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """ESS and normalised weights; the weighted ensemble as SDF (tags as ``confflow generate``)."""
    from confflow.generate.writers import write_ensemble_sdf
    from confflow.reweighting import expectation, kish_ess, largest_weight_share

    molecule, _ = _molecule(state, config)
    with np.load(root / "samples.npz") as data:
        x, energy = torch.from_numpy(data["x"]), torch.from_numpy(data["energy"])
        log_q, log_w = torch.from_numpy(data["log_q"]), torch.from_numpy(data["log_w"])
    weights = torch.exp(log_w - torch.logsumexp(log_w, 0))
    tags = {"energy_kJ_mol": energy, "log_q": log_q, "log_w": log_w, "weight": weights}
    write_ensemble_sdf(root / "ensemble.sdf", molecule, x, tags)
    metrics = {
        "ess": kish_ess(log_w),
        "ess_samples": kish_ess(log_w) * len(log_w),
        "largest_weight": largest_weight_share(log_w),
        "energy_mean": float(expectation(energy, log_w)),
        "energy_min": float(energy.min()),
    }
    write_json(root / "metrics.json", metrics)
    return metrics, ["ensemble.sdf", "metrics.json"]


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
