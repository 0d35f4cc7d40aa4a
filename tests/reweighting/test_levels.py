"""Reweighting to another level of theory: known answers for the weights and the ESS."""

from __future__ import annotations

import math

import pytest
import torch

from confflow.energies import kT
from confflow.reweighting import change_level, kish_ess

T = 300.0


def test_a_constant_shift_changes_nothing():
    gen = torch.Generator().manual_seed(0)
    log_w = torch.randn(500, generator=gen, dtype=torch.float64)
    energy = torch.randn(500, generator=gen, dtype=torch.float64)
    change = change_level(log_w, energy, energy - 1234.5, T)
    assert change.ess_change == pytest.approx(1.0, abs=1e-12)
    assert change.ess == pytest.approx(kish_ess(log_w), rel=1e-12)
    torch.testing.assert_close(change.log_w - change.log_w[0], log_w - log_w[0])


def test_gaussian_shift_gives_the_analytic_overlap():
    # exact samples of N(0, 1) in units of kT (log w = const); the new level is N(mu, 1):
    # r = exp(mu x - mu^2 / 2), E[r]^2 / E[r^2] = exp(-mu^2)
    beta_inv = kT(T)
    mu = 0.6
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    energy = 0.5 * x**2 * beta_inv
    energy_level = 0.5 * (x - mu) ** 2 * beta_inv
    change = change_level(torch.zeros_like(x), energy, energy_level, T)
    assert change.ess_change == pytest.approx(math.exp(-(mu**2)), rel=0.02)
    assert change.ess == pytest.approx(change.ess_change, rel=1e-9)  # flow = force field here
    # the reweighted mean is the new level's
    w = torch.softmax(change.log_w, 0)
    assert float((w * x).sum()) == pytest.approx(mu, abs=0.01)


def test_failed_samples_are_excluded_and_counted():
    log_w = torch.zeros(6, dtype=torch.float64)
    energy = torch.zeros(6, dtype=torch.float64)
    energy_level = torch.tensor([0.0, 1.0, float("nan"), 2.0, float("nan"), 0.5])
    change = change_level(log_w, energy, energy_level, T)
    assert change.n_failed == 2
    assert change.ok.tolist() == [True, True, False, True, False, True]
    assert torch.isneginf(change.log_w[~change.ok]).all()
    assert kish_ess(change.log_w[change.ok]) == pytest.approx(change.ess)
    assert change.ess_change == pytest.approx(change.ess / kish_ess(log_w[change.ok]))
    with pytest.raises(ValueError, match="no sample"):
        change_level(log_w, energy, torch.full((6,), float("nan")), T)
    with pytest.raises(ValueError, match="three"):
        change_level(log_w, energy[:3], energy_level, T)
