"""Validated settings of the per-molecule stages of a pipeline run."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["PipelineConfig", "PipelineError"]


class PipelineError(ValueError):
    """Bad pipeline input: input file, settings, cluster choice or cluster configuration."""


@dataclass(frozen=True)
class PipelineConfig:
    """What each stage does for one molecule (the same for every molecule of a run).

    Attributes:
        n_conformers: ETKDG seed conformers, MMFF94-minimised (featurize stage).
        md_ps: reference MD length in ps per molecule (OpenMM, MMFF94); ``0`` skips MD and
            trains on the seed conformers.
        md_stride_ps: time between stored MD frames in ps.
        temperature: K, of the target ``exp(-E / kT)`` and of the MD.
        layers: spline coupling layers of the flow (even, >= 2).
        bins: spline bins.
        hidden: widths of the conditioners' hidden layers.
        steps: optimiser steps of training.
        batch_size: data samples per step (NLL term).
        kl_batch_size: flow samples per step (reverse-KL term).
        kl_weight: weight of reverse KL in the loss, in ``[0, 1]``.
        lr: peak learning rate.
        n_samples: flow samples drawn and reweighted per molecule.
        seed: seed of conformers, MD, training and sampling.
        device: training and sampling device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        threads: torch threads per task (match the cores of one Dask worker thread).
        retries: Dask retries of a task whose worker died or raised unexpectedly.
    """

    n_conformers: int = 32
    md_ps: float = 0.0
    md_stride_ps: float = 0.1
    temperature: float = 300.0
    layers: int = 8
    bins: int = 8
    hidden: tuple[int, ...] = (128, 128)
    steps: int = 1000
    batch_size: int = 128
    kl_batch_size: int = 128
    kl_weight: float = 0.5
    lr: float = 1e-3
    n_samples: int = 2000
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    retries: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        positive = ("n_conformers", "steps", "batch_size", "kl_batch_size", "n_samples", "threads")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PipelineError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("seed", "retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PipelineError(f"{name}: must be a non-negative integer, got {value!r}")
        for name in ("md_ps", "md_stride_ps", "temperature", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PipelineError(f"{name}: must be a finite number >= 0, got {value!r}")
        for name in ("md_stride_ps", "temperature", "lr"):
            if getattr(self, name) == 0:
                raise PipelineError(f"{name}: must be positive, got 0")
        if not (isinstance(self.kl_weight, int | float) and 0 <= self.kl_weight <= 1):
            raise PipelineError(f"kl_weight: must be in [0, 1], got {self.kl_weight!r}")
        if not isinstance(self.layers, int) or self.layers < 2 or self.layers % 2:
            raise PipelineError(f"layers: must be an even integer >= 2, got {self.layers!r}")
        if not isinstance(self.bins, int) or self.bins < 2:
            raise PipelineError(f"bins: must be an integer >= 2, got {self.bins!r}")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise PipelineError(f"hidden: needs positive integer widths, got {self.hidden!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise PipelineError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data."""
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> PipelineConfig:
        """Builds a config from a mapping; raises :class:`PipelineError` on unknown keys."""
        if not isinstance(data, dict):
            raise PipelineError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PipelineError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def fingerprint(self, smiles: str) -> str:
        """Hash of the molecule and the settings that change its outputs (not retries, threads)."""
        data = self.to_dict()
        del data["retries"], data["threads"]
        text = json.dumps({"smiles": smiles, **data}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
