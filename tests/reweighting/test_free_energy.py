"""Free-energy differences and profiles, macrostates on circles, temperature reweighting."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from confflow.energies import kT
from confflow.reweighting import (
    expectation,
    free_energy_curve,
    free_energy_difference,
    in_range,
    reweight_temperature,
    torsion,
)
from confflow.testing import ROUND_TRIP_TOL


def test_exact_two_state_value():
    # weights 1, 1 in A and 6 in B: dF = -log(6 / 2)
    lw = torch.log(torch.tensor([1.0, 1.0, 6.0], dtype=torch.float64))
    a = torch.tensor([True, True, False])
    r = free_energy_difference(
        lw, a, ~a, n_bootstrap=50, generator=torch.Generator().manual_seed(0)
    )
    assert r.value == pytest.approx(-math.log(3.0))
    assert (r.n_a, r.n_b) == (2, 1)


def test_bootstrap_interval_covers_truth_and_matches_binomial_error():
    # unweighted samples with P(B) = 0.2: dF = log(0.8 / 0.2); sd ~ 1 / sqrt(N p (1 - p))
    n, p = 20_000, 0.2
    gen = torch.Generator().manual_seed(1)
    in_b = torch.rand(n, generator=gen) < p
    r = free_energy_difference(torch.zeros(n), ~in_b, in_b, n_bootstrap=400, generator=gen)
    truth = math.log((1 - p) / p)
    assert r.low < truth < r.high
    assert r.std == pytest.approx(1 / math.sqrt(n * p * (1 - p)), rel=0.2)


def test_block_bootstrap_widens_interval_for_correlated_samples():
    # each state repeated in runs of 50 frames: i.i.d. bootstrap underestimates the error
    gen = torch.Generator().manual_seed(2)
    runs = torch.rand(400, generator=gen) < 0.3
    in_b = runs.repeat_interleave(50)
    lw = torch.zeros(in_b.numel())
    iid = free_energy_difference(lw, ~in_b, in_b, n_bootstrap=200, generator=gen)
    blocked = free_energy_difference(lw, ~in_b, in_b, n_bootstrap=200, block=50, generator=gen)
    assert blocked.std > 4 * iid.std


def test_in_range_wraps_on_the_circle():
    phi = torch.tensor([3.0, -3.0, 0.0, 3.1, -3.1])
    torch.testing.assert_close(
        in_range(phi, 2.9, -2.9, period=2 * math.pi),
        torch.tensor([True, True, False, True, True]),
    )
    torch.testing.assert_close(in_range(phi, 0.0, math.pi), phi >= 0)


def test_temperature_reweighting_of_harmonic_oscillator():
    # E = k x^2 / 2 sampled exactly at T0; reweighted <x^2> must be kT1 / k
    k, t0, t1 = 100.0, 300.0, 350.0
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(400_000, generator=gen, dtype=torch.float64) * math.sqrt(kT(t0) / k)
    lw = reweight_temperature(torch.zeros_like(x), 0.5 * k * x**2, t0, t1)
    assert expectation(x**2, lw).item() == pytest.approx(kT(t1) / k, rel=0.01)


def test_torsion_matches_mdtraj():
    mdtraj = pytest.importorskip("mdtraj")
    x = torch.randn(20, 6, 3)
    ref = mdtraj.compute_dihedrals(mdtraj.Trajectory(x.numpy(), None), [[1, 2, 3, 5]])[:, 0]
    # mdtraj computes in float32
    tol = ROUND_TRIP_TOL[torch.float32]
    torch.testing.assert_close(torsion(x, (1, 2, 3, 5)), torch.from_numpy(ref), atol=tol, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_b": torch.zeros(4, dtype=torch.bool)}, "macrostate B is empty"),
        ({"in_a": torch.ones(3, dtype=torch.bool)}, r"in_a must be a boolean \[N = 4\]"),
        ({"n_bootstrap": 5}, "n_bootstrap must be >= 10"),
        ({"confidence": 1.5}, "confidence must be in"),
        ({"block": 9}, r"block must be in \[1, 4\]"),
    ],
)
def test_free_energy_bad_input(kwargs, message):
    args = {
        "log_w": torch.zeros(4),
        "in_a": torch.tensor([True, True, False, False]),
        "in_b": torch.tensor([False, False, True, True]),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        free_energy_difference(**args)


def test_other_bad_input():
    with pytest.raises(ValueError, match="need low < high"):
        in_range(torch.zeros(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="4 distinct indices"):
        torsion(torch.zeros(1, 4, 3), (0, 1, 1, 2))
    with pytest.raises(ValueError, match="energy must be"):
        reweight_temperature(torch.zeros(3), torch.zeros(2), 300.0, 310.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        reweight_temperature(torch.zeros(2), torch.zeros(2), 300.0, -1.0)


def _double_well(x):
    """Reduced energy (kT) of an asymmetric double well: barrier ~2.5 kT, wells 1 kT apart."""
    return 2.0 * (x**2 - 1.0) ** 2 + 0.5 * x


def test_free_energy_curve_matches_a_known_density():
    """Importance-weighted samples of a double well give -ln P(bin) within their bootstrap error."""
    gen = torch.Generator().manual_seed(1)
    n, sigma = 20_000, 1.2
    x = sigma * torch.randn(n, generator=gen, dtype=torch.float64)  # proposal N(0, sigma^2)
    log_q = -0.5 * (x / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
    log_w = -_double_well(x) - log_q + 7.3  # unnormalised on purpose
    edges = torch.linspace(-1.8, 1.8, 37, dtype=torch.float64)
    curve = free_energy_curve(x, log_w, edges, n_bootstrap=200, generator=gen)

    mass = np.array(
        [quad(lambda s: math.exp(-_double_well(s)), a, b)[0] for a, b in itertools.pairwise(edges)]
    )
    exact = -np.log(mass / mass.sum())  # -ln P(bin | inside the edges), kT
    assert torch.allclose(curve.centres, 0.5 * (edges[1:] + edges[:-1]))
    assert int(curve.counts.sum()) == int(((x >= -1.8) & (x <= 1.8)).sum())
    well = curve.counts >= 100  # the tails hold too few samples for a bootstrap error
    assert int(well.sum()) >= 25
    z = (curve.value.numpy() - exact)[well] / curve.std.numpy()[well]
    assert np.abs(z).max() < 4.0, f"worst bin off by {np.abs(z).max():.1f} standard errors"
    chi2 = float(np.mean(z**2))
    assert 0.3 < chi2 < 2.0, f"bootstrap errors miscalibrated: mean z^2 = {chi2:.2f}"
    inside = torch.isfinite(curve.value)
    assert bool((curve.low[well] <= curve.high[well]).all())
    # exp(-F) is normalised over the bins, and the curve lives in log space: a huge shift of
    # the log-weights, whose exponentials overflow, changes nothing
    assert float(torch.logsumexp(-curve.value[inside], 0)) == pytest.approx(0.0, abs=1e-12)
    shifted = free_energy_curve(x, log_w + 1000.0, edges, n_bootstrap=0)
    assert torch.allclose(shifted.value[inside], curve.value[inside], rtol=0, atol=1e-9)
    assert bool(torch.isnan(shifted.std).all())


def test_free_energy_curve_bins_and_bad_input():
    values = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    log_w = torch.log(torch.tensor([5.0, 1.0, 1.0, 2.0, 7.0], dtype=torch.float64))
    curve = free_energy_curve(values, log_w, torch.tensor([0.0, 0.5, 1.0]), n_bootstrap=0)
    # -1 and 2 lie outside; 0.5 opens the second bin, which is closed at 1.0
    assert curve.counts.tolist() == [1, 2]
    assert curve.value.tolist() == pytest.approx([math.log(4.0), math.log(4.0 / 3.0)])
    empty = free_energy_curve(values, log_w, torch.tensor([0.0, 0.2, 0.4, 1.0]), n_bootstrap=0)
    assert math.isinf(float(empty.value[1])) and empty.counts.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="strictly increasing"):
        free_energy_curve(values, log_w, torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="no sample with weight"):
        free_energy_curve(values, log_w, torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="values must be"):
        free_energy_curve(values[:3], log_w, torch.tensor([0.0, 1.0]))
