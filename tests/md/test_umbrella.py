"""Umbrella sampling with real OpenMM MD of alanine dipeptide."""

import json
import math

import numpy as np
import pytest

from confflow.datasets import DatasetRecipe, generate, load, reference_phi_free_energy
from confflow.energies import ALDP_PHI
from confflow.energies.bridge import OpenMMBridge
from confflow.md import MDConfig, MDInputError, named_system, read_frames
from confflow.md.langevin import GAS_CONSTANT
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
