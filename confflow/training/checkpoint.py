"""Checkpoints: atomic writes, safe loads (``weights_only=True``), identity checks.

A checkpoint is a plain dictionary of tensors and plain data::

    format, version (confflow), fingerprint (target system), model_config, train_config,
    model (state dict), optimizer, scheduler, rng, step, and trainer counters

written with :func:`confflow.atomic.atomic_path` (a temporary file in the same folder, flushed
to disk, then renamed over the target), so a crash (even ``kill -9``) leaves either the old or
the new checkpoint, never a partial one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from confflow import __version__
from confflow.atomic import atomic_path
from confflow.errors import InputError
from confflow.models import BGConfig, BoltzmannGenerator, build_boltzmann_generator

__all__ = [
    "FORMAT",
    "CheckpointError",
    "CheckpointMismatchError",
    "check_compatible",
    "load_generator",
    "read_checkpoint",
    "write_checkpoint",
]

#: Format tag stored in every checkpoint.
FORMAT = "confflow-checkpoint/1"
_REQUIRED = ("format", "version", "fingerprint", "model_config", "model")


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable, corrupt or not a confflow checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """A valid checkpoint written for another system or model configuration."""


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` (plus format and version tags) atomically to ``path``.

    Args:
        path: destination file (its folder is created if missing).
        payload: plain data and tensors (loadable with ``weights_only=True``).

    Raises:
        OSError: as :func:`confflow.atomic.atomic_path`; the old checkpoint is kept.
    """
    data = {"format": FORMAT, "version": __version__, **payload}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` and checks its structure.

    Raises:
        CheckpointError: missing file, corrupt or truncated data, or missing fields.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path}: corrupt or not a confflow checkpoint ({first[:120]})"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a confflow checkpoint (format tag missing)")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path}: corrupt, missing fields {missing}")
    return data


def check_compatible(data: dict[str, Any], model: BoltzmannGenerator, path: str | Path) -> None:
    """Refuses a checkpoint of another system or another model configuration.

    Raises:
        CheckpointMismatchError: fingerprints or model configurations differ.
    """
    if data["fingerprint"] != model.fingerprint:
        saved = data["model_config"].get("target", {})
        raise CheckpointMismatchError(
            f"checkpoint {path}: written for another system ({saved.get('kind')} "
            f"{saved.get('params')}, fingerprint {data['fingerprint']}); this run targets "
            f"{model.target.description} (fingerprint {model.fingerprint})"
        )
    ours = model.config.to_dict()
    theirs = data["model_config"]
    diff = sorted(k for k in ours if ours.get(k) != theirs.get(k) and k != "normalization")
    if diff:
        raise CheckpointMismatchError(
            f"checkpoint {path}: model configuration differs from this run in {diff}"
        )


#: Training settings a resumed run may change: its length, device, output and save interval.
RESUMABLE_CHANGES = frozenset({"steps", "device", "progress", "checkpoint_every", "max_nonfinite"})


def check_same_training(data: dict[str, Any], config: dict[str, Any], path: str | Path) -> None:
    """Refuses to resume a run whose training settings changed (other than the length).

    A resumed run must continue the interrupted one: another learning rate, loss mix, batch
    size, schedule or seed would silently give a model that neither run describes.

    Args:
        data: the checkpoint.
        config: this run's training settings (``TrainConfig.to_dict()``).
        path: the checkpoint's path, for the message.

    Raises:
        CheckpointMismatchError: a setting outside :data:`RESUMABLE_CHANGES` differs.
    """
    theirs = data.get("train_config", {})
    # settings the checkpoint does not record (an older version) are not compared
    diff = sorted(
        k for k in config if k not in RESUMABLE_CHANGES and k in theirs and config[k] != theirs[k]
    )
    if diff:
        detail = ", ".join(f"{k}: {theirs.get(k)!r} -> {config[k]!r}" for k in diff)
        raise CheckpointMismatchError(
            f"checkpoint {path}: training settings differ from this run ({detail}); resume with "
            "the same settings or train into a new folder"
        )


def load_generator(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[BoltzmannGenerator, dict[str, Any]]:
    """Rebuilds the Boltzmann generator stored in a checkpoint.

    Returns:
        ``(model, data)``: the model in eval mode on ``device`` and the checkpoint contents.

    Raises:
        CheckpointError: unreadable checkpoint or a configuration that no longer builds.
    """
    data = read_checkpoint(path)
    try:
        config = BGConfig.from_dict(data["model_config"])
        model = build_boltzmann_generator(config)
        model.load_state_dict(data["model"])
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model ({err})") from err
    if model.fingerprint != data["fingerprint"]:
        raise CheckpointMismatchError(
            f"checkpoint {path}: the rebuilt system's fingerprint {model.fingerprint} differs "
            f"from the stored {data['fingerprint']}"
        )
    return model.to(device).eval(), data
