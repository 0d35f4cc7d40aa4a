"""Observables of the alanine dipeptide datasets: backbone torsions and the phi > 0 free energy."""

from __future__ import annotations

from pathlib import Path

import mdtraj
import numpy as np

from confflow.md.free_energy import FreeEnergyEstimate, macrostate_free_energy

__all__ = ["backbone_torsions", "phi_free_energy"]


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
    """Free energy of the phi > 0 basin relative to phi < 0, in kT, with its standard error.

    Args:
        trajectory: an alanine dipeptide trajectory (path or mdtraj object), frames in time
            order at one temperature.
        n_blocks: blocks for the block-averaging error.
    """
    phi, _ = backbone_torsions(trajectory)
    return macrostate_free_energy(phi > 0, n_blocks=n_blocks)
