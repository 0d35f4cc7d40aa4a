import math

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from confflow.md import (
    block_standard_error,
    integrated_autocorrelation_time,
    macrostate_free_energy,
)
from confflow.reweighting import free_energy_difference


def _ar1(rho: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n) * math.sqrt(1 - rho**2)
    noise[0] = rng.normal()
    zi = np.zeros(1)
    return lfilter([1.0], [1.0, -rho], noise, zi=zi)[0]


def test_autocorrelation_time_of_ar1_matches_theory():
    rho = 0.8
    tau_true = (1 + rho) / (1 - rho)  # 9
    taus = [integrated_autocorrelation_time(_ar1(rho, 20000, s)) for s in range(3)]
    assert np.mean(taus) == pytest.approx(tau_true, rel=0.15)


def test_autocorrelation_time_of_white_noise_is_one():
    x = np.random.default_rng(0).normal(size=5000)
    assert integrated_autocorrelation_time(x) == pytest.approx(1.0, abs=0.15)
    assert integrated_autocorrelation_time(np.ones(10)) == 1.0


def test_block_error_of_correlated_series_matches_spread_of_means():
    rho, n = 0.9, 20000
    means, errors = [], []
    for s in range(40):
        x = _ar1(rho, n, 100 + s)
        means.append(x.mean())
        errors.append(block_standard_error(x, 20))
    true_se = math.sqrt((1 + rho) / (1 - rho) / n)  # 0.0308
    assert np.mean(errors) == pytest.approx(true_se, rel=0.25)
    assert np.std(means, ddof=1) == pytest.approx(true_se, rel=0.35)
    naive = 1 / math.sqrt(n)
    assert np.mean(errors) > 3 * naive


def test_macrostate_free_energy_of_bernoulli_samples():
    # B holds 10% of the frames: F_B - F_A = -ln(0.1 / 0.9) = ln 9 > 0
    p = 0.1
    in_b = np.random.default_rng(1).random(40000) < p
    est = macrostate_free_energy(in_b, n_blocks=20)
    assert est.fraction == pytest.approx(in_b.mean())
    assert est.delta_f == pytest.approx(-math.log(in_b.mean() / (1 - in_b.mean())))
    se_theory = math.sqrt(p * (1 - p) / len(in_b)) / (p * (1 - p))
    assert est.stderr_autocorr == pytest.approx(se_theory, rel=0.2)
    assert est.stderr >= max(est.stderr_block, est.stderr_autocorr) - 1e-15
    assert abs(est.delta_f - math.log(9)) < 4 * est.stderr


def test_macrostate_free_energy_of_an_unvisited_state_is_infinite():
    # B never visited: F_B = inf; A never visited: F_A = inf
    est = macrostate_free_energy(np.zeros(100, dtype=bool))
    assert est.delta_f == math.inf and est.stderr == math.inf
    assert macrostate_free_energy(np.ones(100, dtype=bool)).delta_f == -math.inf


def test_macrostate_free_energy_has_the_sign_of_the_reweighting_estimator():
    # one convention: F_B - F_A from the MD estimator and from free_energy_difference
    in_b = np.random.default_rng(2).random(5000) < 0.3
    est = macrostate_free_energy(in_b)
    mask = torch.from_numpy(in_b)
    ref = free_energy_difference(
        torch.zeros(len(in_b)), ~mask, mask, generator=torch.Generator().manual_seed(0)
    )
    assert est.delta_f > 0
    assert est.delta_f == pytest.approx(ref.value, rel=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: macrostate_free_energy(np.zeros(100)), "in_b: expected a boolean series"),
        (lambda: macrostate_free_energy(np.zeros(5, dtype=bool)), "in_b: expected a 1-D series"),
        (lambda: block_standard_error(np.zeros(100), 1), "n_blocks: need at least 2"),
        (lambda: block_standard_error(np.array([1.0, np.nan, 2.0]), 2), "x: contains NaN"),
        (lambda: integrated_autocorrelation_time(np.zeros((3, 3))), "x: expected a 1-D series"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
