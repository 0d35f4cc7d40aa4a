"""Stage 3: the Boltzmann generator of the molecule — build, train under a time budget, save.

The model is the standard confflow generator (spline couplings over normalised internal
coordinates, see :mod:`confflow.models.builder`), assembled here from the public pieces so it
uses *this* run's molecule (atom order of the input, largest fragment, chosen MMFF variant).

Training, within ``budget`` seconds of wall time:

1. maximum likelihood on the MD frames (cosine schedule sized from the measured step time);
2. mixed refinement (half NLL, half reverse KL on the MMFF energy) in segments; after each
   segment the ESS of fresh flow samples is measured, the best model by ESS is kept and the
   refinement stops early when the ESS has not improved for ``PATIENCE`` segments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.coordinates import InternalCoordinates, InternalNormalization, ZMatrix
from confflow.distributions import DomainProduct, Flow
from confflow.energies.mmff import MMFFEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.models import BGConfig, BoltzmannGenerator, FlowConfig, Target, TargetConfig
from confflow.models.builder import coupling_stack
from confflow.training import CheckpointError, TrainConfig, Trainer, read_checkpoint
from confflow.training import write_checkpoint as _write
from confflow.transforms import Compose

__all__ = ["FLOW", "TrainingSummary", "build_model", "load_model", "save_model", "train_model"]

#: Flow architecture of ``generate`` (small enough for minutes of CPU training).
FLOW = FlowConfig(layers=8, bins=8, hidden=(128, 128))
#: Fraction of the budget spent on maximum likelihood before refinement.
NLL_SHARE = 0.6
#: Refinement steps per ESS check, and checks without improvement before stopping.
SEGMENT, PATIENCE = 40, 3


def _fingerprint(molecule: Molecule, variant: str) -> str:
    ident = {
        "elements": list(molecule.elements),
        "bonds": [list(b) for b in molecule.bonds],
        "smiles": molecule.smiles,
        "energy": variant,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def build_model(
    molecule: Molecule, config: GenerateConfig, normalization: dict[str, list[float]]
) -> BoltzmannGenerator:
    """The (untrained) generator for ``molecule`` with the given normalisation statistics.

    Args:
        molecule: the molecule.
        config: run settings (``temperature``, ``energy``).
        normalization: ``{"mean", "std"}`` of the internal coordinates (nm, rad).

    Returns:
        The model in float32 on the CPU.
    """
    ic = InternalCoordinates(ZMatrix.from_molecule(molecule))
    norm = InternalNormalization(
        ic.latent_domain,
        torch.tensor(normalization["mean"]),
        torch.tensor(normalization["std"]),
    )
    latent = norm.latent_domain
    transform = Compose([*coupling_stack(latent, FLOW).transforms, norm, ic])
    energy = MMFFEnergy(molecule.rdkit_mol, variant=config.variant)
    target = Target(
        energy,
        molecule,
        _fingerprint(molecule, config.variant),
        f"{molecule.smiles} with {config.variant}",
    )
    bg_config = BGConfig(
        TargetConfig("smiles", {"smiles": config.smiles}),
        temperature=config.temperature,
        flow=FLOW,
        normalization=normalization,
    )
    return BoltzmannGenerator(bg_config, Flow(DomainProduct(latent), transform), target)


def normalization_from(molecule: Molecule, data: Tensor) -> dict[str, list[float]]:
    """Mean and std of the internal coordinates of ``data`` ``[M, N, 3]`` nm."""
    ic = InternalCoordinates(ZMatrix.from_molecule(molecule))
    z, _ = ic.inverse(data.to(torch.float64))
    norm = InternalNormalization.from_data(z, ic.latent_domain)
    return {"mean": norm.mean.tolist(), "std": norm.std.tolist()}


@dataclasses.dataclass
class TrainingSummary:
    """What training did.

    Attributes:
        nll_steps: maximum-likelihood steps.
        refine_steps: refinement steps.
        ess_history: ESS (fraction) after each refinement segment.
        best_ess: ESS of the kept model.
        target_evaluations: MMFF energy evaluations (refinement samples and ESS checks).
        stopped_early: refinement stopped for lack of ESS improvement.
        val_nll: validation NLL (nats) after maximum likelihood.
    """

    nll_steps: int = 0
    refine_steps: int = 0
    ess_history: list[float] = dataclasses.field(default_factory=list)
    best_ess: float = 0.0
    target_evaluations: int = 0
    stopped_early: bool = False
    val_nll: float = float("nan")


def _grow(trainer: Trainer, steps: int) -> None:
    trainer.config = dataclasses.replace(trainer.config, steps=trainer.step + steps)
    trainer.fit(resume=False)


def train_model(
    model: BoltzmannGenerator,
    data: Tensor,
    config: GenerateConfig,
    on_checkpoint: Any = None,
) -> TrainingSummary:
    """Trains ``model`` in place within ``config.budget`` seconds.

    Args:
        model: the generator.
        data: ``[M, N, 3]`` nm training frames (a tenth is held out for validation).
        config: run settings (``budget``, ``seed``, ``device``).
        on_checkpoint: called with the model after maximum likelihood and at the end.

    Returns:
        The :class:`TrainingSummary`.
    """
    deadline = time.perf_counter() + config.budget
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(data.shape[0], generator=gen)
    n_val = max(1, data.shape[0] // 10)
    val, train = data[perm[:n_val]].float(), data[perm[n_val:]].float()
    batch = min(256, train.shape[0])
    common = {"seed": config.seed, "device": config.device, "progress": config.progress}
    common["checkpoint_every"] = 0
    nll_config = TrainConfig(
        steps=20, batch_size=batch, lr=2e-3, warmup=20, val_every=10**9, val_batch_size=512
    )
    trainer = Trainer(model, dataclasses.replace(nll_config, **common), train, val)
    summary = TrainingSummary()
    t0 = time.perf_counter()
    trainer.fit(resume=False)
    per_step = (time.perf_counter() - t0) / 20
    nll_left = NLL_SHARE * config.budget - (time.perf_counter() - t0)
    more = max(0, int(nll_left / per_step))
    trainer.config = dataclasses.replace(trainer.config, steps=20 + more)
    if more:
        trainer.fit(resume=False)
    summary.nll_steps = trainer.step
    summary.val_nll = float(trainer.metrics.get("val_nll", float("nan")))
    if on_checkpoint is not None:
        on_checkpoint(model)
    refine = TrainConfig(
        steps=1,
        batch_size=batch,
        kl_batch_size=128,
        kl_weight=0.5,
        lr=3e-4,
        warmup=0,
        min_lr_ratio=1.0,
        val_every=SEGMENT,
        val_batch_size=512,
        cap_threshold=100.0,
        cap_scale=10.0,
    )
    trainer = Trainer(model, dataclasses.replace(refine, **common), train, None)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    summary.best_ess = float(trainer.validate().get("ess", 0.0))
    summary.target_evaluations += refine.val_batch_size
    summary.ess_history.append(summary.best_ess)
    since_best = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        _grow(trainer, SEGMENT)
        summary.target_evaluations += refine.val_batch_size
        ess = float(trainer.metrics.get("ess", 0.0))
        summary.ess_history.append(ess)
        if ess > summary.best_ess:
            summary.best_ess, since_best = ess, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        if since_best >= PATIENCE:
            summary.stopped_early = True
            break
        if time.perf_counter() + (time.perf_counter() - start) > deadline:
            break
    summary.refine_steps = trainer.step
    summary.target_evaluations += trainer.evaluations
    model.load_state_dict(best_state)
    model.eval()
    if on_checkpoint is not None:
        on_checkpoint(model)
    return summary


def save_model(path: Path, model: BoltzmannGenerator, config: GenerateConfig) -> None:
    """Writes the trained generator atomically (reloaded by :func:`load_model`)."""
    payload = {
        "fingerprint": model.fingerprint,
        "model_config": model.config.to_dict(),
        "energy": config.energy,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _write(path, payload)


def load_model(path: Path, molecule: Molecule, config: GenerateConfig) -> BoltzmannGenerator:
    """Rebuilds the generator saved by :func:`save_model` for this molecule and energy.

    Raises:
        GenerateError: unreadable checkpoint, or one of another molecule or force field.
    """
    try:
        data = read_checkpoint(path)
    except CheckpointError as err:
        raise GenerateError(f"--checkpoint {path}: {err}") from err
    expected = _fingerprint(molecule, config.variant)
    if data["fingerprint"] != expected:
        raise GenerateError(
            f"--checkpoint {path}: trained for another molecule or force field "
            f"(fingerprint {data['fingerprint']}, this run {expected})"
        )
    try:
        model = build_model(molecule, config, data["model_config"]["normalization"])
    except (KeyError, TypeError, ValueError) as err:
        raise GenerateError(f"--checkpoint {path}: not a generate checkpoint ({err})") from err
    model.load_state_dict(data["model"])
    return model.eval()
