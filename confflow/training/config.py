"""Validated training configuration, saved with every checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from confflow.models.config import ConfigError

__all__ = ["OBJECTIVE_NAMES", "TrainConfig"]

#: The objectives :class:`~confflow.training.Trainer` knows
#: (:mod:`confflow.training.objectives`).
OBJECTIVE_NAMES = ("likelihood", "flow-matching", "fab")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :class:`~confflow.training.Trainer`.

    ``objective`` names the loss (:data:`~confflow.training.objectives.OBJECTIVES`). With
    ``"likelihood"`` (the default) the loss is ``(1 - kl_weight) * NLL(data) + kl_weight * E``:
    ``kl_weight = 0`` is maximum likelihood on samples, ``1`` trains on the energy alone (no
    data needed). The energy term ``E = (1 - forward_weight) * KL(q || p) + forward_weight *
    IS-forward-KL`` mixes reverse KL with the importance-weighted forward KL on the same flow
    samples (:func:`~confflow.training.energy_loss`). ``"flow-matching"`` regresses the vector
    field of the flow's continuous layer on straight paths between base and data samples
    (settings ``fm_*``). ``"fab"`` trains without data by the alpha-2 divergence, estimated by
    annealed importance sampling towards ``p^2 / q`` with a prioritised replay buffer
    (settings ``fab_*`` and ``kl_batch_size``; :mod:`confflow.training.fab`).

    Non-finite values: a step whose data batch, loss or gradient norm is not finite is
    skipped (no parameter update; the schedule still advances) and logged; after
    ``max_nonfinite`` skipped steps the run stops with
    :class:`~confflow.training.TrainingDivergedError`. This is the one policy of every
    objective.

    Attributes:
        objective: ``"likelihood"``, ``"flow-matching"`` or ``"fab"``.
        steps: optimiser steps.
        batch_size: data samples per step (NLL term).
        kl_batch_size: flow samples per step (reverse-KL term).
        kl_weight: weight of the energy term, in ``[0, 1]``.
        forward_weight: share of the importance-weighted forward KL in the energy term, in
            ``[0, 1]`` (``0``: reverse KL only).
        forward_replay: samples of recent steps the forward term pools, each weighted against
            the flow that drew it (``0``: the step's own samples); for targets whose
            evaluations are dear.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps before the cosine decay.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        clip: maximum gradient norm.
        cap_threshold: reduced energies (kT) above this are capped (smooth linear-log) in the
            reverse-KL loss.
        cap_scale: scale of the logarithmic part of the cap (kT).
        max_nonfinite: stop with :class:`~confflow.training.TrainingDivergedError` after this many
            skipped steps (non-finite batch, loss or gradient).
        val_every: steps between validations (and early-stopping checks).
        val_batch_size: samples per validation batch.
        patience: stop after this many validations without improvement of the validation
            loss, ``(1 - kl_weight) * NLL(validation data) + kl_weight * KL(flow samples)``
            (``0``: never).
        checkpoint_every: steps between checkpoints (``0``: only at the end).
        seed: seed of initialisation, mini-batches and flow samples.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
        progress: show a progress bar.
        fm_sigma: flow matching: standard deviation of the path around the straight line
            (data units, nm for positions; ``>= 0``).
        fm_ot: flow matching: pair base and data samples by minibatch optimal transport.
        fm_align: flow matching: align each data sample of positions to its base sample
            (Kabsch rotation, and Hungarian permutation of identical atoms when known).
        fm_align_iterations: flow matching: rotation/permutation alternations (``>= 1``).
        fab_stages: FAB: AIS stages (intermediate densities, one HMC transition each).
        fab_leapfrog: FAB: leapfrog steps per HMC transition.
        fab_replay: FAB: buffer steps after each AIS step.
        fab_buffer: FAB: samples the replay buffer keeps.
        fab_accept: FAB: HMC acceptance rate the step sizes adapt to, in ``(0, 1)``.
    """

    objective: str = "likelihood"
    steps: int = 1000
    batch_size: int = 256
    kl_batch_size: int = 256
    kl_weight: float = 0.0
    forward_weight: float = 0.0
    forward_replay: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    min_lr_ratio: float = 0.0
    clip: float = 10.0
    cap_threshold: float = 1e3
    cap_scale: float = 1e2
    max_nonfinite: int = 100
    val_every: int = 100
    val_batch_size: int = 4096
    patience: int = 0
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    fm_sigma: float = 0.0
    fm_ot: bool = True
    fm_align: bool = True
    fm_align_iterations: int = 2
    fab_stages: int = 8
    fab_leapfrog: int = 4
    fab_replay: int = 4
    fab_buffer: int = 8192
    fab_accept: float = 0.65

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_NAMES:
            raise ConfigError(
                f"train.objective: unknown objective {self.objective!r}; choose one of "
                f"{', '.join(OBJECTIVE_NAMES)}"
            )
        positive = ("steps", "batch_size", "kl_batch_size", "val_every", "val_batch_size")
        positive += ("fm_align_iterations", "fab_stages", "fab_leapfrog", "fab_buffer")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"train.{name}: must be a positive integer, got {v!r}")
        for name in (
            "warmup",
            "max_nonfinite",
            "patience",
            "checkpoint_every",
            "seed",
            "fab_replay",
            "forward_replay",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"train.{name}: must be a non-negative integer, got {v!r}")
        for name in ("lr", "clip", "cap_scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"train.{name}: must be a positive number, got {v!r}")
        for name in ("kl_weight", "forward_weight", "min_lr_ratio"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 <= v <= 1):
                raise ConfigError(f"train.{name}: must be in [0, 1], got {v!r}")
        if not (isinstance(self.fab_accept, int | float) and 0 < self.fab_accept < 1):
            raise ConfigError(f"train.fab_accept: must be in (0, 1), got {self.fab_accept!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ConfigError(f"train.weight_decay: must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.fm_sigma, int | float) and 0 <= self.fm_sigma < math.inf):
            raise ConfigError(f"train.fm_sigma: must be finite and >= 0, got {self.fm_sigma!r}")
        if not (isinstance(self.cap_threshold, int | float) and math.isfinite(self.cap_threshold)):
            raise ConfigError(f"train.cap_threshold: must be finite, got {self.cap_threshold!r}")
        if not (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda")):
            raise ConfigError(
                f"train.device: expected 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Inverse of :meth:`to_dict`; raises :class:`ConfigError` on unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"train: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"train: unknown keys {unknown}")
        return cls(**data)
