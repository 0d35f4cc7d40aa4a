"""Validated settings of the per-molecule stages of a pipeline run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confflow.errors import InputError
from confflow.generate import GenerateConfig
from confflow.models.config import from_mapping

__all__ = ["PipelineConfig", "PipelineError"]


class PipelineError(InputError):
    """Bad pipeline input: input file, settings, cluster choice or cluster configuration."""


@dataclass(frozen=True)
class PipelineConfig:
    """What each stage does for one molecule (the same for every molecule of a run).

    The molecular settings are those of ``confflow generate`` (:class:`GenerateConfig`),
    whose stage functions the pipeline runs as Dask tasks.

    Attributes:
        n_seeds: ETKDG seed conformers, MMFF94-minimised (featurize stage); ``None``: as
            ``confflow generate`` (16, or 64 for a molecule with conformational states).
        md_ns: ns of MMFF replica-exchange MD per replica as training data (0: seeds only).
        replicas: temperatures of the replica-exchange ladder (1: plain Langevin MD).
        t_max: K, highest temperature of the ladder.
        temperature: K, of the target ``exp(-E / kT)``.
        energy: ``"mmff94"`` or ``"mmff94s"``.
        budget: seconds of training per molecule.
        n_samples: flow samples drawn per molecule (before the stereo filter).
        seed: seed of every random stage.
        device: training and sampling device: ``"auto"``, ``"cpu"`` or ``"cuda[:i]"``.
        largest_fragment: keep the largest fragment of a salt or mixture.
        model: as ``confflow generate --model``: ``"auto"``, ``"torsional"``, ``"cartesian"``
            or a family of :data:`~confflow.generate.config.FAMILY_MODELS`.
        relax_steps: relaxation steps of the torsional generators' local structure (see
            ``confflow generate --relax-steps``; 0: the seed's frozen structure).
        unique: heavy-atom RMSD in nm that merges samples into one conformer, as
            ``confflow generate --unique`` (``None``: write every sample).
        bootstrap: bootstrap replicates of the cluster free energies (with ``unique``).
        level: a GFN-xTB level to reweight each ensemble to, as ``confflow generate --level``
            (``"gfn2"``, ``"gfn2:water"``; ``None``: the force field's weights); the pipeline
            reweights but does not refine at the level (``generate --level-refine``).
        threads: torch threads per task (match the cores of one Dask worker thread).
        retries: Dask retries of a task that raised unexpectedly (a task whose worker died is
            rescheduled by Dask in any case).
    """

    n_seeds: int | None = None
    md_ns: float = GenerateConfig.md_ns
    replicas: int = GenerateConfig.replicas
    t_max: float = GenerateConfig.t_max
    temperature: float = GenerateConfig.temperature
    energy: str = GenerateConfig.energy
    budget: float = GenerateConfig.budget
    n_samples: int = GenerateConfig.n
    seed: int = GenerateConfig.seed
    device: str = GenerateConfig.device
    largest_fragment: bool = GenerateConfig.largest_fragment
    model: str = GenerateConfig.model
    relax_steps: int = GenerateConfig.relax_steps
    unique: float | None = GenerateConfig.unique
    bootstrap: int = GenerateConfig.bootstrap
    level: str | None = GenerateConfig.level
    threads: int = 1
    retries: int = 2

    def __post_init__(self) -> None:
        for name in ("n_seeds", "threads"):
            value = getattr(self, name)
            if name == "n_seeds" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PipelineError(f"{name}: must be a positive integer, got {value!r}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise PipelineError(f"retries: must be a non-negative integer, got {self.retries!r}")
        try:
            self.generate_config("C", Path("check.sdf"))
        except ValueError as err:
            flag, _, reason = str(err).partition(":")
            name = {"-n": "n_samples"}.get(flag, flag.lstrip("-").replace("-", "_"))
            raise PipelineError(f"{name}:{reason}") from err

    def generate_config(self, smiles: str, out: Path) -> GenerateConfig:
        """The :class:`GenerateConfig` of one molecule (``out``: its ``.sdf`` path)."""
        return GenerateConfig(
            smiles=smiles,
            out=out,
            temperature=self.temperature,
            n=self.n_samples,
            seed=self.seed,
            device=self.device,
            budget=self.budget,
            md_ns=self.md_ns,
            replicas=self.replicas,
            t_max=self.t_max,
            energy=self.energy,
            largest_fragment=self.largest_fragment,
            model=self.model,
            relax_steps=self.relax_steps,
            unique=self.unique,
            bootstrap=self.bootstrap,
            level=self.level,
            level_refine=0.0,
            progress=False,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> PipelineConfig:
        """Builds a config from a mapping; raises :class:`PipelineError` on unknown keys."""
        return from_mapping(cls, data, where, PipelineError)

    def fingerprint(self, smiles: str) -> str:
        """Hash of the molecule and the settings that change its outputs (not retries, threads)."""
        data = self.to_dict()
        del data["retries"], data["threads"]
        if data["level"] is None:  # runs from before the level setting keep their hash
            del data["level"]
        text = json.dumps({"smiles": smiles, **data}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
