"""MBAR and the umbrella-sampling estimator on a 1-D torsion with an exact answer."""

import math

import numpy as np
import pymbar
import pytest

from confflow.errors import InputError
from confflow.md.config import MDInputError
from confflow.md.langevin import GAS_CONSTANT
from confflow.md.mbar import mbar_free_energies, mbar_log_weights
from confflow.md.umbrella import UmbrellaConfig, umbrella_free_energy

TEMPERATURE = 300.0
KT = GAS_CONSTANT * TEMPERATURE
GRID = np.linspace(-math.pi, math.pi, 20001)[:-1]


def potential(theta: np.ndarray) -> np.ndarray:
    """A torsional double well in kT: wells at +-pi/2 differing by 1.6 kT, barriers of ~6 kT."""
    return 3.0 * np.cos(2.0 * theta) + 0.8 * np.sin(theta)


def exact_delta_f() -> float:
    """``F_B - F_A`` in kT with B = theta > 0 and A = theta < 0, by quadrature."""
    p = np.exp(-potential(GRID))
    return -math.log(p[GRID > 0].sum() / p[GRID < 0].sum())


def sample_windows(umbrella: UmbrellaConfig, n: int, rng: np.random.Generator) -> list:
    """Independent exact draws from every biased window density (inverse CDF on a grid)."""
    bias = umbrella.bias_kt(GRID, TEMPERATURE)
    series = []
    for b in bias:
        p = np.exp(-potential(GRID) - b)
        series.append(rng.choice(GRID, size=n, p=p / p.sum()))
    return series


UMBRELLA = UmbrellaConfig((0, 1, 2, 3), n_windows=24, force_constant=30.0 * KT)


def test_umbrella_free_energy_recovers_the_exact_answer_and_profile():
    # 12 wide windows (sd 20 degrees, 30 apart): fewer links between the basins than UMBRELLA,
    # so a smaller error for the same number of samples (about 0.05 kT for 1000 per window)
    umbrella = UmbrellaConfig((0, 1, 2, 3), n_windows=12, force_constant=8.0 * KT)
    rng = np.random.default_rng(1)
    series = sample_windows(umbrella, 1000, rng)
    est = umbrella_free_energy(umbrella, TEMPERATURE, series, lambda t: t > 0, n_bootstrap=50)
    assert est.n_frames == 12000 and est.n_windows == 12 and est.n_bootstrap == 50
    assert 0 < est.stderr < 0.1
    assert abs(est.delta_f - exact_delta_f()) < 4 * est.stderr
    assert est.fraction == pytest.approx(1 / (1 + math.exp(est.delta_f)))
    # the free-energy profile follows the potential (up to a constant) where it is sampled
    centres = 0.5 * (est.profile_edges[1:] + est.profile_edges[:-1])
    exact = potential(centres) - potential(centres).min()
    low = exact < 5.0
    assert np.abs(est.profile[low] - exact[low]).max() < 0.5


def test_bootstrap_error_matches_the_spread_of_independent_repeats():
    rng = np.random.default_rng(2)
    values, errors = [], []
    for _ in range(20):
        series = sample_windows(UMBRELLA, 200, rng)
        est = umbrella_free_energy(UMBRELLA, TEMPERATURE, series, lambda t: t > 0, n_bootstrap=40)
        values.append(est.delta_f)
        errors.append(est.stderr)
    spread, typical = float(np.std(values, ddof=1)), float(np.mean(errors))
    # 20 repeats pin a standard deviation to about +-16%; allow a factor 1.6 either way
    assert typical / 1.6 < spread < typical * 1.6, (spread, typical)
    assert abs(np.mean(values) - exact_delta_f()) < 4 * spread / math.sqrt(20)


def test_segments_are_cut_into_blocks_each_on_its_own():
    rng = np.random.default_rng(5)
    runs = [sample_windows(UMBRELLA, 100, rng) for _ in range(2)]
    pooled = [np.concatenate(pair) for pair in zip(*runs, strict=True)]
    two = umbrella_free_energy(
        UMBRELLA, TEMPERATURE, pooled, lambda t: t > 0, n_blocks=5, n_segments=2, n_bootstrap=20
    )
    # 2 runs x 5 blocks of 20 frames are the 10 blocks of 20 frames of the whole series
    one = umbrella_free_energy(
        UMBRELLA, TEMPERATURE, pooled, lambda t: t > 0, n_blocks=10, n_bootstrap=20
    )
    assert two.delta_f == one.delta_f and two.stderr == one.stderr
    with pytest.raises(MDInputError, match="series: every window must split into 3 equal segments"):
        umbrella_free_energy(UMBRELLA, TEMPERATURE, pooled, lambda t: t > 0, n_segments=3)
    with pytest.raises(MDInputError, match=r"every segment needs >= n_blocks \(101\) frames"):
        umbrella_free_energy(
            UMBRELLA, TEMPERATURE, pooled, lambda t: t > 0, n_blocks=101, n_segments=2
        )


def test_mbar_without_bias_gives_equal_free_energies_and_weights():
    bias = np.zeros((3, 30))
    f = mbar_free_energies(bias, np.array([10, 10, 10]))
    np.testing.assert_allclose(f, 0.0, atol=1e-8)
    np.testing.assert_allclose(mbar_log_weights(bias, [10, 10, 10], f), -math.log(30))


def test_mbar_recovers_known_window_free_energies():
    # windows that shift a harmonic oscillator: every f_k is 0 (same normalisation)
    rng = np.random.default_rng(3)
    centres = np.array([-1.0, 0.0, 1.0])
    x = np.concatenate([rng.normal(c / 2, math.sqrt(0.5), 4000) for c in centres])
    bias = 0.5 * (x[None] - centres[:, None]) ** 2  # u(x) = x^2 / 2 plus bias
    f = mbar_free_energies(bias, np.full(3, 4000))
    expected = 0.25 * centres**2 - 0.25 * centres[0] ** 2  # -ln of each window's integral
    np.testing.assert_allclose(f, expected, atol=0.05)


@pytest.mark.parametrize(
    ("n_windows", "force_kt", "counts", "seed"),
    [
        (6, 8.0, [300] * 6, 0),  # wide windows, strong overlap
        (12, 30.0, [500] * 12, 1),
        (24, 30.0, [200] * 24, 2),  # narrow windows: neighbours overlap only in their tails
        (8, 10.0, [50, 400, 120, 300, 80, 500, 200, 150], 3),  # unequal counts
        # the aldp phi setting scaled to 20 windows: the trust region alone stopped 4e-8 short
        (20, 24.7, [1000] * 20, 0),
    ],
)
def test_mbar_matches_pymbar(n_windows, force_kt, counts, seed):
    # the field's reference implementation, run to its default convergence: window free
    # energies and unbiased weights (through pymbar's expectation in the unbiased state)
    umbrella = UmbrellaConfig((0, 1, 2, 3), n_windows=n_windows, force_constant=force_kt * KT)
    rng = np.random.default_rng(seed)
    grid_bias = umbrella.bias_kt(GRID, TEMPERATURE)
    theta = np.concatenate(
        [
            rng.choice(GRID, size=n, p=(p := np.exp(-potential(GRID) - b)) / p.sum())
            for b, n in zip(grid_bias, counts, strict=True)
        ]
    )
    bias, n_k = umbrella.bias_kt(theta, TEMPERATURE), np.array(counts)
    f = mbar_free_energies(bias, n_k)
    reference = pymbar.MBAR(bias, n_k)
    np.testing.assert_allclose(f, reference.f_k, rtol=0.0, atol=1e-8)
    in_b = (theta > 0).astype(np.float64)
    with np.errstate(divide="ignore"):  # pymbar takes the log of the indicator's zeros
        p_b = np.ravel(reference.compute_expectations(in_b, np.zeros(len(theta)))["mu"])[0]
    log_w = mbar_log_weights(bias, n_k, f)
    assert np.exp(log_w[theta > 0]).sum() == pytest.approx(p_b, rel=0.0, abs=1e-10)
    # a warm start from a nearby solution (as in the bootstrap) ends at the same point
    np.testing.assert_allclose(
        mbar_free_energies(bias, n_k, initial=f + rng.normal(0.0, 0.1, n_windows)),
        reference.f_k,
        rtol=0.0,
        atol=1e-8,
    )


def test_bad_input_is_rejected():
    with pytest.raises(InputError, match=r"bias: expected \[K, N\]"):
        mbar_free_energies(np.zeros(5), np.array([5]))
    with pytest.raises(InputError, match="counts: need positive counts summing to the 6"):
        mbar_free_energies(np.zeros((2, 6)), np.array([3, 2]))
    with pytest.raises(InputError, match="bias: contains NaN"):
        mbar_free_energies(np.full((2, 4), np.nan), np.array([2, 2]))
    rng = np.random.default_rng(4)
    series = sample_windows(UMBRELLA, 50, rng)
    with pytest.raises(MDInputError, match="in_b: every sample falls on one side"):
        umbrella_free_energy(UMBRELLA, TEMPERATURE, series, lambda t: t > 10)
    with pytest.raises(MDInputError, match="series: expected 24 windows, got 23"):
        umbrella_free_energy(UMBRELLA, TEMPERATURE, series[1:], lambda t: t > 0)
