"""Observables of the alanine dipeptide datasets: backbone torsions and the phi > 0 free energy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mdtraj
import numpy as np

from confflow.datasets.registry import DatasetRecipe, get_recipe
from confflow.datasets.store import dataset_path, not_generated
from confflow.md.free_energy import (
    FreeEnergyEstimate,
    MacrostateFreeEnergy,
    macrostate_free_energy,
)
from confflow.md.umbrella import read_umbrella, umbrella_free_energy

__all__ = ["backbone_torsions", "phi_free_energy", "reference_phi_free_energy"]


def backbone_torsions(trajectory: str | Path | mdtraj.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Backbone torsions ``(phi [T], psi [T])`` in rad of a one-residue peptide trajectory.

    Raises:
        ValueError: the topology has no (or more than one) phi/psi torsion.
    """
    traj = trajectory if isinstance(trajectory, mdtraj.Trajectory) else mdtraj.load(str(trajectory))
    phi = mdtraj.compute_phi(traj)[1]
    psi = mdtraj.compute_psi(traj)[1]
    if phi.shape[1:] != (1,) or psi.shape[1:] != (1,):
        raise ValueError(
            f"trajectory: expected one phi and one psi torsion, got {phi.shape[1]} and "
            f"{psi.shape[1]}"
        )
    return phi[:, 0].astype(np.float64), psi[:, 0].astype(np.float64)


def phi_free_energy(
    trajectory: str | Path | mdtraj.Trajectory, n_blocks: int = 10
) -> FreeEnergyEstimate:
    """``F(phi > 0) - F(phi < 0)`` in kT, with its standard error.

    The phi > 0 basin is macrostate B and the rest A, so ``fraction`` is ``P(phi > 0)``.

    Args:
        trajectory: an alanine dipeptide trajectory (path or mdtraj object), frames in time
            order at one temperature.
        n_blocks: blocks for the block-averaging error.
    """
    phi, _ = backbone_torsions(trajectory)
    return macrostate_free_energy(phi > 0, n_blocks=n_blocks)


def reference_phi_free_energy(
    name: str | DatasetRecipe,
    cache: str | Path | None = None,
    *,
    chains: Sequence[int] | None = None,
) -> MacrostateFreeEnergy:
    """``F(phi > 0) - F(phi < 0)`` in kT, with its error, from a cached dataset.

    The phi > 0 basin is macrostate B and the rest A, so ``fraction`` is ``P(phi > 0)``.

    Umbrella-sampling datasets (``aldp-reference``) are combined with MBAR
    (:func:`~confflow.md.umbrella_analysis.umbrella_free_energy`, block bootstrap with 10 blocks per
    window within each chain); MD and replica exchange datasets are counted frame by frame
    (:func:`phi_free_energy`).

    Args:
        name: an alanine dipeptide dataset name or recipe.
        cache: cache directory (see :func:`~confflow.datasets.cache_dir`).
        chains: umbrella chains to use (default: all); for a check of the error bar, every
            chain alone gives an independent estimate.

    Raises:
        MDInputError: unknown or ungenerated dataset.
    """
    recipe = name if isinstance(name, DatasetRecipe) else get_recipe(name)
    path = dataset_path(recipe.name, cache)
    if recipe.umbrella:
        if not (path / "umbrella.json").exists():
            raise not_generated(recipe.name, path)
        umbrella, temperature, series = read_umbrella(path, chains)
        n_chains = umbrella.n_chains if chains is None else len(chains)
        return umbrella_free_energy(
            umbrella, temperature, series, lambda phi: phi > 0, n_segments=n_chains
        )
    trajectory = path / "trajectory.h5"
    if not trajectory.exists():
        raise not_generated(recipe.name, path)
    return phi_free_energy(trajectory)
