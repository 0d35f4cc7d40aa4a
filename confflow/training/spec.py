"""What ``confflow train`` runs: a config file (YAML/JSON) or a named MD dataset.

A config file holds three sections; only ``model.target`` is required::

    model:                       # BGConfig: target, temperature, flow, normalization
      target: {kind: double-well, params: {dim: 2, b: 6.0, c: 1.0}}
      temperature: 300.0
      flow: {layers: 4, hidden: [32, 32]}
    train: {steps: 500, kl_weight: 1.0}   # TrainConfig
    data: {dataset: aldp}                 # optional: MD training data by name

A bare dataset name (e.g. ``aldp``) trains by maximum likelihood on that dataset's training
split with default settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from confflow.models import BGConfig, ConfigError, TargetConfig
from confflow.training.config import TrainConfig

__all__ = ["RunSpec", "load_dataset", "read_spec", "target_for_system"]

_SECTIONS = {"model", "train", "data"}


@dataclass(frozen=True)
class RunSpec:
    """A training run: model and training configuration, and the dataset, if any.

    Attributes:
        model: the Boltzmann generator's configuration.
        train: the training configuration.
        dataset: name of the MD dataset supplying training/validation data, or ``None``.
    """

    model: BGConfig
    train: TrainConfig
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the same layout as a config file."""
        data = {"model": self.model.to_dict(), "train": self.train.to_dict()}
        if self.dataset is not None:
            data["data"] = {"dataset": self.dataset}
        return data


def target_for_system(system: str) -> TargetConfig:
    """Target of an MD dataset's system (``aldp``, ``aldp-ff96``, ... or ``smiles:<SMILES>``)."""
    if system.startswith("smiles:"):
        return TargetConfig("smiles", {"smiles": system.removeprefix("smiles:")})
    return TargetConfig(system)


def _parse_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as err:
        raise ConfigError(f"config {path}: cannot parse ({str(err).splitlines()[0]})") from err
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"config {path}: cannot parse ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ConfigError(f"config {path}: unknown sections {unknown}; use {sorted(_SECTIONS)}")
    return data


def read_spec(spec: str) -> RunSpec:
    """A :class:`RunSpec` from a config file path (``.json``, ``.yaml``, ``.yml``) or a name.

    Raises:
        ConfigError: a config file with bad content.
        ValueError: an unknown dataset name (message lists the known ones).
    """
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config {spec}: no such file")
        data = _parse_file(path)
        if "model" not in data:
            raise ConfigError(f"config {spec}: missing the 'model' section")
        try:
            model = BGConfig.from_dict(data["model"])
        except TypeError as err:
            raise ConfigError(f"config {spec}: model: {err}") from err
        train = TrainConfig.from_dict(data.get("train", {}))
        source = data.get("data") or {}
        if not isinstance(source, dict) or set(source) - {"dataset"}:
            raise ConfigError(f"config {spec}: data: expected {{dataset: NAME}}")
        dataset = source.get("dataset")
        if dataset is not None:
            _recipe(dataset)
        return RunSpec(model, train, dataset)
    recipe = _recipe(spec)
    model = BGConfig(target_for_system(recipe.system), temperature=recipe.config.temperature)
    return RunSpec(model, TrainConfig(), recipe.name)


def _recipe(name: str):
    try:
        from confflow.datasets import get_recipe
    except ImportError as err:
        raise ValueError(f"dataset: unknown dataset {name!r} (no dataset registry)") from err
    return get_recipe(name)


def load_dataset(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training, validation and test positions ``[M, N, 3]`` (nm, float32) of a dataset.

    Raises:
        ValueError: unknown dataset, or one that has not been generated yet.
    """
    from confflow.datasets import load

    splits = load(name)
    return splits.train.float(), splits.validation.float(), splits.test.float()
