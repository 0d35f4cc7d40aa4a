"""Stage 3: the Boltzmann generator of the molecule — build, train under a time budget, save.

Two models, chosen by ``GenerateConfig.model``:

* ``"cartesian"``: the standard confflow generator over all ``3N-6`` normalised
  internal coordinates (:mod:`confflow.models.builder`); the target is the full MMFF
  Boltzmann distribution, hard to match in minutes of CPU training.
* ``"torsional"`` (what the default ``"auto"`` picks whenever a bond rotates): a flow over
  the free torsions (one per rotatable bond, hydrogen rotors included)
  (:class:`~confflow.coordinates.TorsionalEmbedding`). Its target is the MMFF energy at each
  torsion set with the local structure (bonds, angles, rigid torsions) of the lowest-energy
  seed relaxed by ``relax_steps`` preconditioned gradient steps
  (:class:`~confflow.energies.TorsionalEnergy`, :class:`~confflow.energies.LocalRelaxation`):
  the frozen structure of torsional Boltzmann generators (``relax_steps=0``) charges conformers
  far from the reference several kT too much, because bond angles cannot open as the torsions
  turn, and its torsion marginals come out too narrow. An elementwise circular spline, then
  circular spline couplings.

Both are built by the one builder of :mod:`confflow.models` (the ``coupling`` and ``torsional``
families) from *this* run's SMILES, largest-fragment choice and MMFF variant.

Training, within ``budget`` seconds of wall time:

1. maximum likelihood on the MD frames (60% of the budget at most for the Cartesian model, 10%
   for the torsional one, whose MD data are not samples of its target), validated every
   :data:`ML_CHECK` steps and stopped after :data:`ML_PATIENCE` validations without a lower
   validation NLL, keeping the best model (a few hundred correlated frames are overfitted in
   seconds: on phenacetin 379 steps ended at a validation NLL of 11.0 nats, the best model
   at 5.3);
2. refinement on the MMFF energy, capped 100 kT above the lowest training frame (Cartesian:
   half NLL, half reverse KL; torsional: 20% reverse KL, 80% importance-weighted forward KL on
   the same flow samples, which cuts the heavy weight tails that reverse KL alone leaves), in
   segments; after each segment the ESS of fresh flow samples is measured, the best model by
   ESS is kept and the refinement stops early when the ESS has not improved for ``patience``
   segments (:data:`SCHEDULES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.coordinates import (
    InternalCoordinates,
    InternalNormalization,
    ZMatrix,
    rotatable_bonds,
    structurally_rigid,
)
from confflow.energies import TorsionalEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.models import (
    BGConfig,
    BoltzmannGenerator,
    FlowConfig,
    TargetConfig,
    build_boltzmann_generator,
)
from confflow.training import CheckpointError, TrainConfig, Trainer, read_checkpoint
from confflow.training import write_checkpoint as _write

__all__ = [
    "FLOW",
    "SCHEDULES",
    "Schedule",
    "TrainingSummary",
    "build_model",
    "load_model",
    "model_kind",
    "model_layout",
    "resolve_model",
    "save_model",
    "train_model",
    "training_data",
]

#: Flow architecture of ``generate`` (small enough for minutes of CPU training).
FLOW = FlowConfig(layers=8, bins=8, hidden=(128, 128), circular_components=0)
#: Reduced energy (kT) above the lowest of the training frames where the energy cap starts.
CAP_ABOVE_MIN = 100.0
#: Maximum-likelihood steps between validations, and validations without a lower validation
#: NLL before maximum likelihood stops.
ML_CHECK = 20
ML_PATIENCE = 3


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How one kind of model is trained within the budget.

    Attributes:
        nll_share: fraction of the budget spent on maximum likelihood before refinement.
        kl_weight: weight of the energy term in the refinement (the rest is NLL on the frames).
        forward_weight: share of importance-weighted forward KL in the energy term.
        kl_batch_size: flow samples per refinement step.
        lr: refinement learning rate.
        segment: refinement steps per ESS check.
        patience: ESS checks without improvement before stopping.
        ess_samples: flow samples per ESS check (estimates from few samples are noisy).
    """

    nll_share: float
    kl_weight: float
    forward_weight: float
    kl_batch_size: int
    lr: float
    segment: int
    patience: int
    ess_samples: int


#: Per model. The torsional model's MD data come from the flexible molecule, not from its
#: target, so maximum likelihood only warms it up and the energy does the rest.
SCHEDULES = {
    "cartesian": Schedule(0.6, 0.5, 0.0, 128, 3e-4, 40, 3, 512),
    "torsional": Schedule(0.1, 1.0, 0.8, 256, 5e-4, 100, 5, 1024),
}


def model_kind(model: BoltzmannGenerator) -> str:
    """``"torsional"`` or ``"cartesian"``: the coordinates ``model`` samples."""
    return "torsional" if isinstance(model.energy, TorsionalEnergy) else "cartesian"


def _fingerprint(molecule: Molecule, variant: str) -> str:
    ident = {
        "elements": list(molecule.elements),
        "bonds": [list(b) for b in molecule.bonds],
        "smiles": molecule.smiles,
        "energy": variant,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def resolve_model(molecule: Molecule, config: GenerateConfig) -> str:
    """``config.model`` with ``"auto"`` resolved: torsional if any bond rotates, else Cartesian.

    Raises:
        GenerateError: ``"torsional"`` for a molecule without rotatable bonds.
    """
    rotates = bool(rotatable_bonds(molecule))
    if config.model == "torsional" and not rotates:
        raise GenerateError(
            f"{molecule.source}: no rotatable bonds for --model torsional (use cartesian)"
        )
    if config.model != "auto":
        return config.model
    return "torsional" if rotates else "cartesian"


def model_layout(
    molecule: Molecule, config: GenerateConfig, reference: Tensor, data: Tensor
) -> dict:
    """What fixes the model's coordinates, saved with it (plain lists).

    Args:
        molecule: the molecule.
        config: run settings (``model``, see :func:`resolve_model`).
        reference: ``[N, 3]`` nm lowest-energy seed conformer (the torsional model's local
            structure).
        data: ``[M, N, 3]`` nm training frames (the Cartesian model's normalisation).

    Returns:
        ``{"model": "torsional", "reference": [[x, y, z], ...], "relax_steps": int}`` or
        ``{"model": "cartesian", "normalization": {"mean", "std", "rigid"}}``.
    """
    if resolve_model(molecule, config) == "torsional":
        reference_list = reference.double().tolist()
        steps = config.relax_steps
        return {"model": "torsional", "reference": reference_list, "relax_steps": steps}
    ic = InternalCoordinates(ZMatrix.from_molecule(molecule))
    z, _ = ic.inverse(data.to(torch.float64))
    # rotors stay circular even where the short MD did not cross their barriers
    rigid = structurally_rigid(molecule, ic)
    norm = InternalNormalization.from_data(z, ic.latent_domain, rigid=rigid)
    return {"model": "cartesian", "normalization": norm.stats()}


def build_model(molecule: Molecule, config: GenerateConfig, layout: dict) -> BoltzmannGenerator:
    """The (untrained) generator for ``molecule`` with the coordinates of ``layout``.

    Built by :func:`~confflow.models.build_boltzmann_generator`: the ``torsional`` family, or
    the ``coupling`` family over internal coordinates for the Cartesian model.

    Args:
        molecule: the molecule (as :func:`~confflow.generate.molecule.load_molecule` parses
            ``config.smiles``).
        config: run settings (``smiles``, ``temperature``, ``energy``, ``largest_fragment``).
        layout: from :func:`model_layout`.

    Returns:
        The model in float32 on the CPU. Its samples are torsions ``[B, K]`` (rad) for the
        torsional model and positions ``[B, N, 3]`` (nm) for the Cartesian one.

    Raises:
        ValueError: a layout of the former ``--relax`` minimisation.
        GenerateError: ``config.smiles`` parses to another molecule than ``molecule``.
    """
    params: dict[str, Any] = {"smiles": config.smiles, "variant": config.variant}
    if config.largest_fragment:
        params["largest_fragment"] = True
    flow, normalization = FLOW, None
    if layout["model"] == "torsional":
        if layout.get("relaxed", False):
            raise ValueError("trained with the former --relax minimisation; train it again")
        # checkpoints from before local relaxation are frozen
        options = {"reference": layout["reference"], "relax_steps": layout.get("relax_steps", 0)}
        flow = dataclasses.replace(FLOW, family="torsional", options=options)
    else:
        normalization = layout["normalization"]
    bg_config = BGConfig(
        TargetConfig("smiles", params),
        temperature=config.temperature,
        flow=flow,
        normalization=normalization,
    )
    model = build_boltzmann_generator(bg_config)
    built = model.target.molecule
    if built is None or (built.elements, built.bonds) != (molecule.elements, molecule.bonds):
        raise GenerateError(f"{molecule.source}: the model's molecule differs from the input")
    return model


def training_data(model: BoltzmannGenerator, frames: Tensor) -> Tensor:
    """MD frames ``[M, N, 3]`` nm as the model's samples (torsions for the torsional model)."""
    if model_kind(model) == "torsional":
        return model.energy.embedding.project(frames.to(torch.float64)).float()
    return frames.float()


@dataclasses.dataclass
class TrainingSummary:
    """What training did.

    Attributes:
        nll_steps: maximum-likelihood steps.
        refine_steps: refinement steps.
        ess_history: ESS (fraction) after each refinement segment.
        best_ess: ESS of the kept model.
        target_evaluations: energy evaluations of the target (refinement samples and ESS
            checks; the relaxation's gradient steps are part of one evaluation).
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


def _maximum_likelihood(trainer: Trainer, deadline: float) -> None:
    """Maximum likelihood in checks of :data:`ML_CHECK` steps until ``deadline``.

    Stops after :data:`ML_PATIENCE` checks without a lower validation NLL (a few hundred MD
    frames are overfitted within seconds) and leaves the model of the lowest one.
    """
    model = trainer.model
    best, best_state, since_best = math.inf, None, 0
    while True:
        start = time.perf_counter()
        trainer.fit_more(ML_CHECK)
        nll = float(trainer.metrics.get("val_nll", math.inf))
        if nll < best:
            best, since_best = nll, 0
            best_state = trainer.snapshot()
        else:
            since_best += 1
        if (
            since_best >= ML_PATIENCE
            or time.perf_counter() + (time.perf_counter() - start) > deadline
        ):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        trainer.metrics["val_nll"] = best


def _refine_trainer(
    model: BoltzmannGenerator,
    train: Tensor,
    cap_threshold: float,
    common: dict,
    batch: int,
    plan: Schedule,
) -> Trainer:
    """The trainer of a refinement on the energy with the settings of ``plan``."""
    config = TrainConfig(
        steps=1,
        batch_size=batch,
        kl_batch_size=plan.kl_batch_size,
        kl_weight=plan.kl_weight,
        forward_weight=plan.forward_weight,
        lr=plan.lr,
        warmup=0,
        min_lr_ratio=1.0,
        val_every=plan.segment,
        val_batch_size=plan.ess_samples,
        cap_threshold=cap_threshold,
        cap_scale=10.0,
    )
    return Trainer(model, dataclasses.replace(config, **common), train, None)


def _refine(
    model: BoltzmannGenerator,
    train: Tensor,
    cap_threshold: float,
    common: dict,
    batch: int,
    summary: TrainingSummary,
    plan: Schedule,
    deadline: float,
) -> None:
    """Refines on the energy in segments until ``deadline`` (or early stop).

    Updates ``summary`` (steps, ESS history, evaluations) and leaves the best model by ESS in
    ``model``.
    """
    trainer = _refine_trainer(model, train, cap_threshold, common, batch, plan)
    best_state = trainer.snapshot()
    summary.best_ess = float(trainer.validate().get("ess", 0.0))
    summary.target_evaluations += plan.ess_samples
    summary.ess_history.append(summary.best_ess)
    since_best = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        trainer.fit_more(plan.segment)
        summary.target_evaluations += plan.ess_samples
        ess = float(trainer.metrics.get("ess", 0.0))
        summary.ess_history.append(ess)
        if ess > summary.best_ess:
            summary.best_ess, since_best = ess, 0
            best_state = trainer.snapshot()
        else:
            since_best += 1
        if since_best >= plan.patience:
            summary.stopped_early = True
            break
        if time.perf_counter() + (time.perf_counter() - start) > deadline:
            break
    summary.refine_steps += trainer.step
    summary.target_evaluations += trainer.evaluations
    model.load_state_dict(best_state)


def train_model(
    model: BoltzmannGenerator,
    data: Tensor,
    config: GenerateConfig,
    on_checkpoint: Any = None,
) -> TrainingSummary:
    """Trains ``model`` in place within ``config.budget`` seconds.

    Args:
        model: the generator.
        data: ``[M, *event_shape]`` training samples from :func:`training_data`: positions
            ``[M, N, 3]`` nm, or torsions ``[M, K]`` rad (a tenth is held out for validation).
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
        steps=ML_CHECK,
        batch_size=batch,
        lr=2e-3,
        warmup=ML_CHECK,
        min_lr_ratio=1.0,
        val_every=ML_CHECK,
        val_batch_size=256,
    )
    summary = TrainingSummary()
    plan = SCHEDULES[model_kind(model)]
    trainer = Trainer(model, dataclasses.replace(nll_config, **common), train, val)
    _maximum_likelihood(trainer, time.perf_counter() + plan.nll_share * config.budget)
    summary.nll_steps = trainer.step
    summary.target_evaluations += trainer.evaluations  # validation ESS samples
    summary.val_nll = float(trainer.metrics.get("val_nll", float("nan")))
    if on_checkpoint is not None:
        on_checkpoint(model)
    with torch.no_grad():
        u_min = float(model.reduced_energy(train[:256].to(trainer.device)).min())
    cap = u_min + CAP_ABOVE_MIN
    _refine(model, train, cap, common, batch, summary, plan, deadline)
    model.eval()
    if on_checkpoint is not None:
        on_checkpoint(model)
    return summary


def save_model(path: Path, model: BoltzmannGenerator, config: GenerateConfig, layout: dict) -> None:
    """Writes the trained generator atomically (reloaded by :func:`load_model`).

    Args:
        path: checkpoint file.
        model: the generator.
        config: run settings (``energy``).
        layout: the model's :func:`model_layout`.
    """
    payload = {
        "fingerprint": model.fingerprint,
        "model_config": model.config.to_dict(),
        "layout": layout,
        "energy": config.energy,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _write(path, payload)


def load_model(
    path: Path, molecule: Molecule, config: GenerateConfig
) -> tuple[BoltzmannGenerator, dict]:
    """Rebuilds the generator saved by :func:`save_model` for this molecule and energy.

    The checkpoint's layout decides the model kind (torsional or Cartesian), whatever
    ``config.model`` says.

    Returns:
        ``(model, layout)``.

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
        layout = data["layout"]
        model = build_model(molecule, config, layout)
        model.load_state_dict(data["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise GenerateError(f"--checkpoint {path}: not a generate checkpoint ({err})") from err
    return model.eval(), layout
