"""The per-molecule stages of a pipeline, each one a Dask task.

A stage takes the molecule's *state* (a small dict passed from task to task) and returns the
next state. Its outputs live in the molecule's folder and are written atomically; a marker
``stages/<stage>.json`` with the sizes and SHA-256 of the outputs is written last, so a stage
whose marker matches its files is complete and is not redone (reruns, and retries after a
killed worker). A molecule-level failure (bad SMILES, no MMFF94 parameters, diverged
training) sets ``status = "failed"`` with the stage and reason; later stages pass it through.

Folder of one molecule::

    seeds.npz            ETKDG + MMFF94-minimised conformers x [C, N, 3] nm, energy [C] kJ/mol
    md/                  reference MD run (only with md_ps > 0)
    reference.npz        training positions x [M, N, 3] nm
    train/               Trainer folder (checkpoint.pt, final.json, metrics.jsonl)
    samples.npz          flow samples x (nm), energy (kJ/mol), log_q, log_w (nats)
    ensemble.sdf         finite samples (Angstrom) with energy, log q and normalised weight
    metrics.json         ESS, largest weight, energies
    result.json          the molecule's record, with the checksums of every output
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confflow.pipeline.config import PipelineConfig
from confflow.pipeline.files import (
    atomic_path,
    describe_files,
    files_match,
    read_json,
    write_json,
)

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
    "train/checkpoint.pt",
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

    Keeps a killed run's checkpoints for its retry, and drops those of other settings.
    """
    path, stamp = root / name, root / "stages" / f"{name}.dir-key"
    if path.exists() and (not stamp.exists() or stamp.read_text() != key):
        shutil.rmtree(path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(key)
    return path


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)


@_stage("featurize")
def featurize(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Parses and validates the SMILES, seeds MMFF94-minimised conformers, checks MMFF94."""
    from confflow.chem import Molecule
    from confflow.energies.mmff import MMFFEnergy

    molecule = Molecule.from_smiles(state["smiles"], stereo="first")
    x = molecule.embed(config.n_conformers, seed=config.seed, num_threads=1, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x).detach()
    if not bool(torch.isfinite(energy).all()):
        raise ValueError(f"{molecule.source}: non-finite MMFF94 energy of a seed conformer")
    _save_npz(root / "seeds.npz", x=x.numpy(), energy=energy.numpy())
    metrics = {"canonical_smiles": molecule.smiles, "n_atoms": molecule.n_atoms}
    metrics["seed_energy_min"] = float(energy.min())
    return metrics, ["seeds.npz"]


@_stage("reference")
def reference(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Training data: seed conformers, or a short MD run (MMFF94, OpenMM) when ``md_ps > 0``."""
    if config.md_ps == 0:
        with np.load(root / "seeds.npz") as seeds:
            x = seeds["x"]
        source = "seeds"
    else:
        import mdtraj

        from confflow.md import MDConfig, run_md
        from confflow.md.systems import smiles_system

        md_dir = _owned_dir(root, "md", state["key"])
        complete = (md_dir / "metadata.json").exists()
        if md_dir.exists() and not complete:
            shutil.rmtree(md_dir)  # a killed run without metadata: start over
        md_config = MDConfig(
            temperature=config.temperature,
            ns=config.md_ps / 1000,
            stride_ps=config.md_stride_ps,
            chunk_frames=1000,
            equilibration_ps=min(10.0, config.md_ps),
            seed=config.seed + 1,
        )
        system = smiles_system(state["smiles"], seed=config.seed + 1)
        result = run_md(system, md_config, md_dir, resume=complete)
        x = mdtraj.load(str(result.trajectory)).xyz.astype(np.float64)
        source = "md"
    _save_npz(root / "reference.npz", x=x)
    return {"reference": source, "n_reference": len(x)}, ["reference.npz"]


@_stage("train")
def train(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Trains the Boltzmann generator (resuming its checkpoint after a killed worker)."""
    from confflow.models import BGConfig, FlowConfig, TargetConfig, build_boltzmann_generator
    from confflow.training import TrainConfig, Trainer

    with np.load(root / "reference.npz") as ref:
        data = torch.from_numpy(ref["x"]).float()
    n_val = len(data) // 5 if len(data) >= 10 else 0
    train_x, val_x = data[: len(data) - n_val], (data[len(data) - n_val :] if n_val else None)
    bg_config = BGConfig(
        TargetConfig("smiles", {"smiles": state["smiles"]}),
        temperature=config.temperature,
        flow=FlowConfig(layers=config.layers, bins=config.bins, hidden=config.hidden),
    )
    torch.manual_seed(config.seed)
    model = build_boltzmann_generator(bg_config, data=train_x)
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        kl_batch_size=config.kl_batch_size,
        kl_weight=config.kl_weight,
        lr=config.lr,
        warmup=min(50, config.steps // 10),
        val_every=max(1, config.steps // 5),
        val_batch_size=min(1024, config.n_samples),
        checkpoint_every=max(1, config.steps // 10),
        seed=config.seed,
        device=config.device,
        progress=False,
    )
    out_dir = _owned_dir(root, "train", state["key"])
    result = Trainer(model, train_config, train_x, val_x, out_dir).fit(resume=True)
    metrics = {f"train_{k}": v for k, v in result.metrics.items() if math.isfinite(v)}
    metrics["train_steps"] = result.step
    metrics["train_resumed_from"] = result.resumed_from
    return metrics, ["train/checkpoint.pt"]


@_stage("sample")
def sample(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """Draws ``n_samples`` with energies (kJ/mol), ``log q`` and log-weights (nats)."""
    from confflow.energies import kT
    from confflow.training import load_generator, resolve_device

    device = resolve_device(config.device)
    model, _ = load_generator(root / "train" / "checkpoint.pt", device)
    gen = torch.Generator(device).manual_seed(config.seed + 7)
    xs, energies, log_qs = [], [], []
    with torch.no_grad():
        for start in range(0, config.n_samples, 1024):
            x, log_q = model.sample(min(1024, config.n_samples - start), gen)
            ok = torch.isfinite(x.flatten(1)).all(1) & torch.isfinite(log_q)
            energy = torch.full_like(log_q, math.inf, dtype=torch.float64)
            if bool(ok.any()):
                energy[ok] = model.energy.energy(x[ok]).double()
            xs.append(x.cpu().double())
            energies.append(energy.cpu())
            log_qs.append(log_q.cpu().double())
    x, energy, log_q = torch.cat(xs), torch.cat(energies), torch.cat(log_qs)
    log_w = -energy / kT(model.temperature) - log_q
    log_w = torch.where(torch.isnan(log_w), -math.inf, log_w)
    _save_npz(
        root / "samples.npz",
        x=x.numpy(),
        energy=energy.numpy(),
        log_q=log_q.numpy(),
        log_w=log_w.numpy(),
    )
    return {"n_samples": len(x), "n_finite": int(torch.isfinite(log_w).sum())}, ["samples.npz"]


@_stage("reweight")
def reweight(root: Path, state: State, config: PipelineConfig) -> tuple[dict, list[str]]:
    """ESS and normalised weights; the weighted ensemble as SDF (finite samples only)."""
    from confflow.chem import Molecule, write_sdf
    from confflow.reweighting import expectation, kish_ess, largest_weight_share

    with np.load(root / "samples.npz") as data:
        x, energy = torch.from_numpy(data["x"]), torch.from_numpy(data["energy"])
        log_q, log_w = torch.from_numpy(data["log_q"]), torch.from_numpy(data["log_w"])
    finite = torch.isfinite(log_w)
    if not bool(finite.any()):
        raise ValueError("reweight: no flow sample has a finite energy and log-density")
    x, energy, log_q, log_w = x[finite], energy[finite], log_q[finite], log_w[finite]
    weights = torch.exp(log_w - torch.logsumexp(log_w, 0))
    molecule = Molecule.from_smiles(state["smiles"], stereo="first")
    with atomic_path(root / "ensemble.sdf") as tmp:
        write_sdf(tmp, molecule, x, energies=energy, log_likelihoods=log_q, weights=weights)
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
