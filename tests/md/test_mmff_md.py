"""MMFF94 MD through OpenMM samples the Boltzmann distribution of confflow's torch MMFF energy.

Two checks on ethanol (its C-C-O-H torsion turns over every few ps at 300 K):

* the energies stored with the MD frames equal the torch ``MMFFEnergy`` of the same frames, so
  reweighting the OpenMM ensemble to the torch energy at 300 K has weights equal to 1;
* the torsion histogram of MD at 300 K equals the histogram of MD at 500 K reweighted to 300 K
  with the torch energy, ``w = exp(-(1/kT_300 - 1/kT_500) U_torch)``, within 4 combined block
  standard errors per bin: a thermostat or force error shows up as a temperature-inconsistent
  torsion distribution.
"""

import math

import mdtraj
import numpy as np
import pytest
import torch

from confflow.chem import Molecule
from confflow.energies.mmff import MMFFEnergy
from confflow.md import MDConfig, read_frames, run_md, smiles_system
from confflow.md.langevin import GAS_CONSTANT

_BINS = np.linspace(-np.pi, np.pi, 7)
_N_BLOCKS = 10


def _torsion_and_energy(tmp_path, system, temperature):
    config = MDConfig(
        temperature=temperature, ns=0.15, stride_ps=0.05, chunk_frames=3000, equilibration_ps=5
    )
    result = run_md(system, config, tmp_path / f"md{temperature:g}")
    traj = mdtraj.load(str(result.trajectory))
    # C0-C1-O2-H8: the hydroxyl hydrogen is the last atom of CCO with explicit hydrogens
    torsion = mdtraj.compute_dihedrals(traj, [[0, 1, 2, 8]])[:, 0].astype(np.float64)
    # shift by 30 degrees so that the 60-degree bins centre on the wells (-60, 60, 180) and the
    # barriers (0, +-120)
    torsion = np.mod(torsion + np.pi / 6 + np.pi, 2 * np.pi) - np.pi
    return torsion, read_frames(result.trajectory), traj.xyz.astype(np.float64)


def _block_histograms(torsion, weights):
    hists = []
    for t, w in zip(
        np.array_split(torsion, _N_BLOCKS), np.array_split(weights, _N_BLOCKS), strict=True
    ):
        h, _ = np.histogram(t, bins=_BINS, weights=w)
        hists.append(h / w.sum())
    return np.array(hists)


@pytest.fixture(scope="module")
def ethanol_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ethanol")
    system = smiles_system("CCO")
    energy = MMFFEnergy(Molecule.from_smiles("CCO").rdkit_mol)
    runs = {}
    for temperature in (300.0, 500.0):
        torsion, frames, xyz = _torsion_and_energy(tmp_path, system, temperature)
        u_torch = energy.energy(torch.from_numpy(xyz)).double().numpy()
        runs[temperature] = (torsion, frames, u_torch)
    return runs


def test_stored_openmm_energies_equal_the_torch_mmff_energy(ethanol_runs):
    for torsion, frames, u_torch in ethanol_runs.values():
        np.testing.assert_allclose(u_torch, frames.potential_energy, atol=1e-3, rtol=0)
        log_w = -(u_torch - frames.potential_energy) / (GAS_CONSTANT * 300.0)
        w = np.exp(log_w - log_w.max())
        assert (w.sum() ** 2 / (w**2).sum()) / len(w) > 0.9999
        assert len(torsion) == 3000


def test_torsion_distribution_at_300k_matches_500k_reweighted_with_torch_energy(ethanol_runs):
    t300, _, _ = ethanol_runs[300.0]
    t500, _, u500 = ethanol_runs[500.0]
    direct = _block_histograms(t300, np.ones_like(t300))
    log_w = -(1 / (GAS_CONSTANT * 300.0) - 1 / (GAS_CONSTANT * 500.0)) * u500
    w = np.exp(log_w - log_w.max())
    reweighted = _block_histograms(t500, w)
    ess = w.sum() ** 2 / (w**2).sum()
    assert ess > 50, f"too few effective samples ({ess:.0f}) for a meaningful comparison"
    p_direct, p_reweighted = direct.mean(axis=0), reweighted.mean(axis=0)
    se = np.sqrt(direct.var(axis=0, ddof=1) + reweighted.var(axis=0, ddof=1)) / math.sqrt(_N_BLOCKS)
    assert np.all(np.abs(p_direct - p_reweighted) < 4 * se + 1e-3), (p_direct, p_reweighted, se)
    # the histogram has structure (three wells), so the comparison is not between two flat lines
    assert p_direct.max() > 3 * p_direct.min()
