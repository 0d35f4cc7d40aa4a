"""Umbrella sampling with real OpenMM MD: alanine dipeptide, and a torsion with an exact answer."""

import itertools
import json
import math

import mdtraj
import numpy as np
import openmm
import pytest

from confflow.datasets import DatasetRecipe, generate, load, reference_phi_free_energy
from confflow.energies import ALDP_PHI
from confflow.energies.bridge import OpenMMBridge
from confflow.md import MDConfig, MDInputError, named_system, read_frames
from confflow.md.langevin import GAS_CONSTANT
from confflow.md.systems import MDSystem
from confflow.md.umbrella import (
    UmbrellaConfig,
    _chain,
    biased_system,
    read_umbrella,
    run_umbrella,
    umbrella_free_energy,
)

CONFIG = MDConfig(ns=0.004, stride_ps=0.1, equilibration_ps=0.5, chunk_frames=20, seed=5)
UMBRELLA = UmbrellaConfig(ALDP_PHI, n_windows=4, force_constant=200.0)


@pytest.fixture(scope="module")
def aldp():
    return named_system("aldp")


@pytest.fixture(scope="module")
def run(aldp, tmp_path_factory):
    out = tmp_path_factory.mktemp("umbrella") / "run"
    return run_umbrella(aldp, CONFIG, UMBRELLA, out)


def test_windows_hold_phi_and_store_the_biased_energy(aldp, run):
    assert len(run.windows) == 4 and run.n_frames == 4 * 40
    umbrella, temperature, series = read_umbrella(run.directory)
    assert umbrella == UMBRELLA and temperature == 300.0
    for centre, phi, window in zip(UMBRELLA.centers(), series, run.windows, strict=True):
        frames = read_frames(window.trajectory)
        # the restraint (sd ~6 degrees at 300 K) keeps phi near the window centre
        offset = np.angle(np.exp(1j * (phi - centre)).mean())
        assert abs(math.degrees(offset)) < 25.0
        # stored energy = unbiased System energy + the restraint evaluated here in numpy
        bias = UMBRELLA.bias_kt(phi, 300.0)[list(UMBRELLA.centers()).index(centre)]
        with OpenMMBridge(aldp.system, platform="Reference") as bridge:
            unbiased = bridge.energies_and_forces(frames.positions)[0]
        expected = unbiased + bias * GAS_CONSTANT * 300.0
        np.testing.assert_allclose(frames.potential_energy, expected, atol=1e-3)


def test_resume_keeps_finished_windows_and_refuses_misuse(aldp, run):
    again = run_umbrella(aldp, CONFIG, UMBRELLA, run.directory, resume=True)
    assert again.wall_s == 0.0 and again.n_frames == run.n_frames
    with pytest.raises(MDInputError, match="already holds an umbrella run; pass resume"):
        run_umbrella(aldp, CONFIG, UMBRELLA, run.directory)
    other = UmbrellaConfig(ALDP_PHI, n_windows=4, force_constant=100.0)
    with pytest.raises(MDInputError, match=r"resume: the umbrella run in .* has other settings"):
        run_umbrella(aldp, CONFIG, other, run.directory, resume=True)


def test_independent_chains_run_side_by_side_in_worker_processes(aldp, tmp_path):
    two = UmbrellaConfig(ALDP_PHI, n_windows=4, force_constant=200.0, n_chains=2)
    result = run_umbrella(aldp, CONFIG, two, tmp_path / "run", workers=2)
    assert len(result.windows) == 8 and result.n_frames == 8 * 40
    seeds = {json.loads(w.metadata.read_text())["config"]["seed"] for w in result.windows}
    assert seeds == set(range(CONFIG.seed, CONFIG.seed + 8))
    umbrella, _, pooled = read_umbrella(result.directory)
    assert umbrella == two and [len(s) for s in pooled] == [80] * 4
    _, _, first = read_umbrella(result.directory, chains=[0])
    _, _, second = read_umbrella(result.directory, chains=[1])
    for both, a, b in zip(pooled, first, second, strict=True):
        np.testing.assert_array_equal(both, np.concatenate([a, b]))
        assert not np.array_equal(a, b)  # other seeds, other trajectories
    with pytest.raises(MDInputError, match=r"chains: \[2\] not among the 2"):
        read_umbrella(result.directory, chains=[2])
    again = run_umbrella(aldp, CONFIG, two, result.directory, resume=True, workers=2)
    assert again.wall_s == 0.0 and again.n_frames == result.n_frames


def test_chains_go_around_the_circle_in_opposite_directions():
    centers = UmbrellaConfig(ALDP_PHI, n_windows=6).centers()
    assert _chain(centers, 0.1, backwards=False) == [3, 4, 5, 0, 1, 2]
    assert _chain(centers, 0.1, backwards=True) == [3, 2, 1, 0, 5, 4]


def test_free_energy_from_a_short_run_is_finite(run):
    umbrella, temperature, series = read_umbrella(run.directory)
    est = umbrella_free_energy(
        umbrella, temperature, series, lambda phi: phi > 0, n_blocks=4, n_bootstrap=20
    )
    assert math.isfinite(est.delta_f) and est.stderr > 0 and 0 < est.fraction < 1


def _torsion_potential(theta: np.ndarray) -> np.ndarray:
    """Reduced torsion energy (kT): wells at +-pi/2, 1.6 kT apart, barriers of ~6 kT."""
    return 3.0 * np.cos(2.0 * theta) + 0.8 * np.sin(theta)


def _torsion_chain(temperature: float) -> MDSystem:
    """Four atoms joined by harmonic bonds and angles, with :func:`_torsion_potential`.

    Nothing else acts on the atoms, and the Cartesian volume element of a 4-atom chain is
    ``r1^2 r2^2 r3^2 sin(a1) sin(a2) dr da dphi`` (times rigid-body motion), free of the
    torsion ``phi``: its Boltzmann marginal is exactly ``exp(-V(phi) / kT)``.
    """
    kt = GAS_CONSTANT * temperature
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    for i in range(3):
        bonds.addBond(i, i + 1, 0.15, 1e5)
    for i in range(2):
        angles.addAngle(i, i + 1, i + 2, math.radians(110.0), 400.0)
    torsion = openmm.PeriodicTorsionForce()  # k (1 + cos(n phi - phase)), kJ/mol
    torsion.addTorsion(0, 1, 2, 3, 2, 0.0, 3.0 * kt)  # 3 cos(2 phi) + const
    torsion.addTorsion(0, 1, 2, 3, 1, math.pi / 2, 0.8 * kt)  # 0.8 sin(phi) + const
    for force in (bonds, angles, torsion):
        system.addForce(force)
    topology = mdtraj.Topology()
    residue = topology.add_residue("TOR", topology.add_chain())
    atoms = [topology.add_atom(f"C{i}", mdtraj.element.carbon, residue) for i in range(4)]
    for a, b in itertools.pairwise(atoms):
        topology.add_bond(a, b)
    positions = np.array([[0.1, 0.14, 0.0], [0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.25, 0.14, 0.02]])
    return MDSystem.from_openmm(system, positions, topology, name="torsion-chain")


def test_umbrella_md_of_a_torsion_recovers_the_exact_free_energy(tmp_path):
    """Real umbrella MD, stored, read back and analysed, against quadrature of exp(-V)."""
    temperature = 300.0
    kt = GAS_CONSTANT * temperature
    umbrella = UmbrellaConfig((0, 1, 2, 3), n_windows=12, force_constant=8.0 * kt)
    config = MDConfig(
        ns=0.2,
        stride_ps=0.25,
        timestep_fs=2.0,
        friction_per_ps=10.0,
        equilibration_ps=2.0,
        chunk_frames=200,
        platform="Reference",
        seed=4,
    )
    run = run_umbrella(_torsion_chain(temperature), config, umbrella, tmp_path / "run")
    assert run.n_frames == 12 * 800
    read, read_temperature, series = read_umbrella(run.directory)
    est = umbrella_free_energy(read, read_temperature, series, lambda t: t > 0, n_bootstrap=50)

    grid = np.linspace(-math.pi, math.pi, 20001)[:-1]
    p = np.exp(-_torsion_potential(grid))
    exact = -math.log(p[grid > 0].sum() / p[grid < 0].sum())  # F_B - F_A, B: phi > 0
    assert 0 < est.stderr < 0.2
    assert abs(est.delta_f - exact) < 4 * est.stderr, (est.delta_f, est.stderr, exact)
    # the profile follows V(phi) up to a constant where V is within 5 kT of its minimum
    centres = 0.5 * (est.profile_edges[1:] + est.profile_edges[:-1])
    expected = _torsion_potential(centres) - _torsion_potential(centres).min()
    low = expected < 5.0
    assert np.abs(est.profile[low] - expected[low]).max() < 0.5


def test_an_umbrella_dataset_is_a_reference_not_training_data(tmp_path):
    recipe = DatasetRecipe("aldp-umbrella-test", "aldp", CONFIG, None, 22, 2500.0, "test", UMBRELLA)
    assert recipe.n_frames == 160 and "umbrella sampling, 4 windows" in recipe.describe()
    result = generate(recipe, tmp_path)
    assert result.n_frames == 160
    est = reference_phi_free_energy(recipe, tmp_path)
    assert math.isfinite(est.delta_f) and est.n_frames == 160
    with pytest.raises(MDInputError, match="dataset: 'aldp-reference' is umbrella sampling"):
        load("aldp-reference", tmp_path)


def test_bad_settings_are_rejected(aldp, tmp_path):
    with pytest.raises(MDInputError, match="n_windows: need at least 2 windows, got 1"):
        UmbrellaConfig(ALDP_PHI, n_windows=1)
    with pytest.raises(MDInputError, match="force_constant: must be positive, got 0"):
        UmbrellaConfig(ALDP_PHI, force_constant=0.0)
    with pytest.raises(MDInputError, match="atoms: need four distinct atom indices"):
        UmbrellaConfig((4, 4, 8, 14))
    with pytest.raises(MDInputError, match="n_chains: need at least 1 chain, got 0"):
        UmbrellaConfig(ALDP_PHI, n_chains=0)
    with pytest.raises(MDInputError, match="workers: need at least 1, got 0"):
        run_umbrella(aldp, CONFIG, UMBRELLA, tmp_path / "run", workers=0)
    with pytest.raises(MDInputError, match=r"atoms: torsion \(4, 6, 8, 99\) is outside"):
        biased_system(aldp, (4, 6, 8, 99), 0.0, 100.0)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(MDInputError, match="out: cannot write"):
        run_umbrella(aldp, CONFIG, UMBRELLA, blocked / "run")
