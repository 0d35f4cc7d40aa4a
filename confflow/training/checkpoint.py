"""Checkpoints: atomic writes, safe loads (``weights_only=True``), identity checks.

A checkpoint is a plain dictionary of tensors and plain data::

    format ("confflow-checkpoint/<N>"), version (confflow), fingerprint (target system),
    model_config (any family of the registry), train_config, model (state dict), optimizer,
    scheduler, rng, step, and trainer counters

The format number ``N`` is :data:`FORMAT_VERSION`; :func:`read_checkpoint` migrates older
formats it knows (1: no model family, the ``generate`` models described by a ``layout``) and
refuses newer ones and foreign files with one line saying what the file is.

written with :func:`confflow.atomic.atomic_path` (a temporary file in the same folder, flushed
to disk, then renamed over the target), so a crash (even ``kill -9``) leaves either the old or
the new checkpoint, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from confflow import __version__
from confflow.atomic import atomic_path
from confflow.errors import InputError
from confflow.models import BGConfig, BoltzmannGenerator, build_boltzmann_generator

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointMismatchError",
    "check_compatible",
    "flow_fingerprint",
    "load_generator",
    "read_checkpoint",
    "restore_rng_states",
    "rng_states",
    "write_checkpoint",
]

#: Version of the checkpoint format this confflow writes; it reads this one and older ones.
FORMAT_VERSION = 2
_TAG = "confflow-checkpoint/"
#: Format tag stored in every checkpoint.
FORMAT = f"{_TAG}{FORMAT_VERSION}"
#: MMFF variant of ``confflow generate``'s ``--energy`` (format 1 stored the option's value).
_VARIANTS = {"mmff94": "MMFF94", "mmff94s": "MMFF94s"}
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


def _format_version(data: Any, path: Path) -> int:
    """The format number of loaded ``data``, or a one-line error saying what the file is."""
    tag = data.get("format") if isinstance(data, dict) else None
    number = tag.removeprefix(_TAG) if isinstance(tag, str) and tag.startswith(_TAG) else ""
    if not number.isdigit() or int(number) < 1:
        what = "a dictionary without a confflow format tag" if isinstance(data, dict) else None
        what = what or f"a torch file holding a {type(data).__name__}"
        raise CheckpointError(
            f"checkpoint {path}: not a confflow checkpoint ({what}); give a checkpoint.pt "
            "written by confflow train or confflow generate"
        )
    version = int(number)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: written by confflow {data.get('version', '?')} in checkpoint "
            f"format {version}; this confflow ({__version__}) reads formats 1 to "
            f"{FORMAT_VERSION}; use confflow {data.get('version', '?')} or newer"
        )
    return version


def _migrate_1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Format 1 -> 2: the model family made explicit; ``generate`` layouts become options."""
    config = data.get("model_config")
    if not (isinstance(config, dict) and isinstance(config.get("target"), dict)):
        return {**data, "format": FORMAT}  # not a Boltzmann generator's (e.g. flow matching)
    flow = {"family": "coupling", "options": {}, **dict(config.get("flow") or {})}
    config = dict(config)
    layout = data.get("layout")
    if isinstance(layout, dict):
        if layout.get("relaxed", False):
            raise CheckpointError(
                f"checkpoint {path}: trained with the former --relax minimisation of confflow "
                "generate (format 1), which this confflow cannot rebuild; train it again"
            )
        if layout.get("model") == "torsional":
            options = {"reference": layout["reference"]}
            options["relax_steps"] = layout.get("relax_steps", 0)  # older: frozen structure
            flow.update(family="torsional", options=options)
        target = dict(config.get("target") or {})
        params = {**dict(target.get("params") or {})}
        params["variant"] = _VARIANTS.get(data.get("energy"), "MMFF94")
        config["target"] = {**target, "params": params}
    config["flow"] = flow
    return {**data, "format": FORMAT, "model_config": config}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True``, checks it and migrates older formats.

    Returns:
        The checkpoint in the current format (:data:`FORMAT`).

    Raises:
        CheckpointError: missing file; corrupt, truncated or foreign data (one line saying
            what the file is); a newer format; missing fields.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # torch wraps every unpickling error in one text
        if "Unsupported global" in str(err):
            raise CheckpointError(
                f"checkpoint {path}: not a confflow checkpoint (it holds Python objects that no "
                "confflow checkpoint holds); give a checkpoint.pt written by confflow train"
            ) from err
        raise _unreadable(path, str(err).rpartition("WeightsUnpickler error:")[2]) from err
    except Exception as err:  # torch raises several types for damaged files
        raise _unreadable(path, str(err) or type(err).__name__) from err
    if _format_version(data, path) == 1:
        data = _migrate_1(data, path)
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path}: corrupt, missing fields {missing}")
    return data


def _unreadable(path: Path, reason: str) -> CheckpointError:
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    first = lines[0][:120] if lines else "unreadable"
    return CheckpointError(
        f"checkpoint {path}: corrupt or not a confflow checkpoint ({first}); a truncated "
        "file cannot be repaired: train again or give another checkpoint"
    )


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


def flow_fingerprint(flow: torch.nn.Module) -> str:
    """Fingerprint of a bare flow (no target): its transform's class and parameter shapes."""
    shapes = {k: list(v.shape) for k, v in flow.state_dict().items()}
    text = json.dumps({"flow": type(flow.transform).__name__, "shapes": shapes})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rng_states(batch_gen: torch.Generator, sample_gen: torch.Generator) -> dict[str, Any]:
    """The random states a resumed run restores: torch's (and CUDA's) and the two generators."""
    rng = {
        "torch": torch.get_rng_state(),
        "batch": batch_gen.get_state(),
        "sample": sample_gen.get_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng_states(
    rng: dict[str, Any], batch_gen: torch.Generator, sample_gen: torch.Generator
) -> None:
    """Restores the states of :func:`rng_states` (CUDA's where a GPU is present)."""
    torch.set_rng_state(rng["torch"])
    batch_gen.set_state(rng["batch"])
    sample_gen.set_state(rng["sample"].to(sample_gen.device))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


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
