"""Generate datasets into a cache directory and load them as train/validation/test tensors.

Cache directory, first match wins: the ``cache_dir`` argument; the ``CONFFLOW_CACHE_DIR``
environment variable; ``$XDG_CACHE_HOME/confflow``; ``~/.cache/confflow``. Each dataset is a
run directory of :mod:`confflow.md` named after the dataset (``smiles:`` names are made
file-safe), so an interrupted generation resumes where it stopped.

Split: the trajectory is cut into contiguous time blocks, never shuffled frames: the first
``train`` fraction of the frames is the training set, the next ``validation`` fraction the
validation set and the rest the test set. Neighbouring MD frames are correlated; a random
split would put near-copies of test frames into training and flatter test scores.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import mdtraj
import torch

from confflow.datasets.registry import DatasetRecipe, get_recipe
from confflow.md import MDInputError, MDResult, read_frames, resolve_system, run_md
from confflow.md.umbrella import UmbrellaResult, run_umbrella

__all__ = [
    "CACHE_ENV",
    "DatasetSplits",
    "cache_dir",
    "dataset_path",
    "generate",
    "load",
    "time_block_split",
]

#: Environment variable that overrides the default cache directory.
CACHE_ENV = "CONFFLOW_CACHE_DIR"


def cache_dir(path: str | Path | None = None) -> Path:
    """The dataset cache directory (not created here); see the module docstring for the order."""
    if path is not None:
        return Path(path)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "confflow"


def _safe_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._-]+", name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:40]}-{digest}"


def not_generated(name: str, path: Path) -> MDInputError:
    """The error for dataset ``name`` whose run directory ``path`` holds no finished data."""
    return MDInputError(
        f"dataset: {name!r} is not in the cache {path.parent}; "
        f"generate it first (confflow datasets generate {name})"
    )


def dataset_path(name: str, cache: str | Path | None = None) -> Path:
    """The run directory of dataset ``name`` inside the cache."""
    return cache_dir(cache) / _safe_name(name)


def generate(
    name: str | DatasetRecipe,
    cache: str | Path | None = None,
    *,
    progress: bool = False,
    workers: int | None = None,
) -> MDResult | UmbrellaResult:
    """Produces (or finishes, or just finds) a dataset in the cache.

    Args:
        name: registry name, ``smiles:<SMILES>``, or a :class:`DatasetRecipe`.
        cache: cache directory (see :func:`cache_dir`).
        progress: show a progress bar on stderr.
        workers: processes for the independent chains of an umbrella recipe (default: one
            per chain, at most one per CPU core).

    Returns:
        The :class:`~confflow.md.MDResult` (``wall_s == 0`` if it was already complete), or
        an :class:`~confflow.md.umbrella.UmbrellaResult` for an umbrella-sampling recipe.

    Raises:
        MDInputError: unknown name, unwritable cache, or a cached run with other settings.
    """
    recipe = name if isinstance(name, DatasetRecipe) else get_recipe(name)
    out = dataset_path(recipe.name, cache)
    md_system = resolve_system(recipe.system, seed=recipe.config.seed)
    if recipe.umbrella:
        if workers is None:
            workers = min(recipe.umbrella.n_chains, os.cpu_count() or 1)
        return run_umbrella(
            md_system,
            recipe.config,
            recipe.umbrella,
            out,
            resume=True,
            progress=progress,
            workers=workers,
        )
    resume = (out / "metadata.json").exists()
    return run_md(
        md_system,
        recipe.config,
        out,
        replicas=recipe.replicas,
        resume=resume,
        progress=progress,
    )


def time_block_split(
    n_frames: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[slice, slice, slice]:
    """Contiguous train/validation/test slices of ``n_frames`` frames in time order.

    Args:
        n_frames: frames in the trajectory.
        fractions: train, validation and test fractions (positive, summing to 1).

    Raises:
        ValueError: fractions that are not positive or do not sum to 1, or too few frames for
            every part to get at least one frame.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions: need three positive fractions summing to 1, got {fractions}")
    a = round(n_frames * fractions[0])
    b = a + round(n_frames * fractions[1])
    if a < 1 or b <= a or b >= n_frames:
        raise ValueError(f"n_frames: {n_frames} frames are too few to split as {fractions}")
    return slice(0, a), slice(a, b), slice(b, n_frames)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset split by time blocks.

    Attributes:
        train: ``[B_train, N, 3]`` float32 positions in nm (earliest frames).
        validation: ``[B_val, N, 3]`` float32 positions in nm.
        test: ``[B_test, N, 3]`` float32 positions in nm (latest frames).
        energies: ``(train, validation, test)`` ``[B]`` float64 potential energies in kJ/mol.
        topology: the mdtraj topology of the frames.
        path: the run directory the data came from.
    """

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    energies: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    topology: mdtraj.Topology
    path: Path


def load(
    name: str,
    cache: str | Path | None = None,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    generate_missing: bool = False,
) -> DatasetSplits:
    """Loads a dataset from the cache, split into contiguous time blocks.

    Args:
        name: registry name or ``smiles:<SMILES>``.
        cache: cache directory (see :func:`cache_dir`).
        fractions: train, validation, test fractions.
        generate_missing: run the recipe if the dataset is missing or incomplete.

    Raises:
        MDInputError: unknown name, or the dataset is not generated (and
            ``generate_missing`` is False).
    """
    recipe = get_recipe(name)
    if recipe.umbrella:
        raise MDInputError(
            f"dataset: {name!r} is umbrella sampling (biased windows), a free-energy reference "
            "rather than training data; use confflow.datasets.reference_phi_free_energy"
        )
    path = dataset_path(recipe.name, cache)
    trajectory = path / "trajectory.h5"
    if not trajectory.exists():
        if not generate_missing:
            raise not_generated(recipe.name, path)
        generate(recipe, cache)
    frames = read_frames(trajectory)
    parts = time_block_split(len(frames), fractions)
    x = torch.from_numpy(frames.positions)
    energies = torch.from_numpy(frames.potential_energy)
    topology = mdtraj.load_topology(str(trajectory))
    return DatasetSplits(
        train=x[parts[0]],
        validation=x[parts[1]],
        test=x[parts[2]],
        energies=(energies[parts[0]], energies[parts[1]], energies[parts[2]]),
        topology=topology,
        path=path,
    )
