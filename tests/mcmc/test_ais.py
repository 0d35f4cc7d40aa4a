"""HMC keeps its target invariant; AIS gives unbiased normalising constants of a double well.

The double well ``u(x) = x0^4 - 6 x0^2 + x0 + x1^2 / 2`` (9 kT barrier, unequal wells) has
``log Z`` from 1-D adaptive quadrature (relative error below 1e-10).
"""

from __future__ import annotations

import math

import pytest
import torch

from confflow.domains import Domain, wrap_angle
from confflow.energies.analytic import DoubleWell
from confflow.mcmc import StepSizes, annealed_importance_sampling, hmc_step
from confflow.mcmc.hmc import evaluate

WELL = DoubleWell(dim=2, a=1.0, b=6.0, c=1.0)
SIGMA = 2.0  # base N(0, SIGMA^2 I) covers both wells


def _base_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x / SIGMA).square().sum(-1) - 2 * math.log(SIGMA) - math.log(2 * math.pi)


def _components(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([_base_log_prob(x), -WELL.reduced(x, WELL.temperature)], 1)


def _ais(n: int, stages: int, seed: int, steps: StepSizes):
    gen = torch.Generator().manual_seed(seed)
    x = SIGMA * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return annealed_importance_sampling(x, _components, stages, steps, 4, gen)


def test_ais_log_normaliser_is_unbiased_within_three_standard_errors():
    steps = StepSizes(16, initial=0.3)
    _ais(512, 16, 0, steps)  # adapt the step sizes on a warm-up run
    result = _ais(4000, 16, 1, steps)
    w = torch.exp(result.log_w - result.log_w.max())
    log_z = float(result.log_w.max() + w.mean().log())
    # delta method: sd(log mean w) = sd(w) / (sqrt(n) mean(w))
    se = float(w.std() / (math.sqrt(w.numel()) * w.mean()))
    truth = WELL.log_partition()
    assert abs(log_z - truth) < 3 * se, (log_z, truth, se)
    assert se < 0.03  # the annealing did its work: plain IS from this base is far noisier
    assert bool((result.acceptance > 0.3).all())
    assert result.evaluations == 4000 * (1 + 16 * 5)


def test_ais_end_points_are_weighted_samples_of_the_target():
    steps = StepSizes(16, initial=0.3)
    _ais(512, 16, 0, steps)
    result = _ais(4000, 16, 2, steps)
    w = torch.softmax(result.log_w, 0)
    right = float((w * (result.x[:, 0] > 0)).sum())
    # the exact share of the right well, from quadrature of exp(-u(x0))
    s = torch.linspace(-5, 5, 200_001, dtype=torch.float64)
    p = torch.exp(-(s**4 - 6 * s**2 + s))
    truth = float(p[s > 0].sum() / p.sum())
    ess = float(1 / (w.square().sum()))
    assert abs(right - truth) < 4 * math.sqrt(truth * (1 - truth) / ess), (right, truth)


def test_hmc_leaves_a_gaussian_invariant():
    gen = torch.Generator().manual_seed(3)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    prec = torch.linalg.inv(cov)

    def components(x):
        return (-0.5 * ((x @ prec) * x).sum(-1))[:, None]

    chol = torch.linalg.cholesky(cov)
    x = torch.randn(20_000, 2, generator=gen, dtype=torch.float64) @ chol.T
    one = torch.ones(1, dtype=torch.float64)
    state = evaluate(components, x, one)
    for _ in range(5):
        state, accepted = hmc_step(state, components, one, 0.5, 5, gen)
    assert 0.3 < float(accepted.double().mean()) < 1.0
    sample_cov = torch.cov(state.x.T)
    torch.testing.assert_close(sample_cov, cov, atol=0.04, rtol=0)  # sd of the entries ~0.01


def test_hmc_on_the_circle_wraps_and_keeps_a_von_mises_invariant():
    gen = torch.Generator().manual_seed(4)
    kappa, mu = 2.0, 3.0  # the mode sits near the cut at pi

    def components(x):
        return (kappa * torch.cos(x[:, 0] - mu))[:, None]

    vm = torch.distributions.VonMises(torch.tensor(mu), torch.tensor(kappa))
    x = wrap_angle(vm.sample((20_000,)).double())[:, None]
    one = torch.ones(1, dtype=torch.float64)
    state = evaluate(components, x, one)
    for _ in range(5):
        state, _ = hmc_step(state, components, one, 0.8, 4, gen, Domain.circle(1))
    assert bool((state.x >= -math.pi).all() and (state.x < math.pi).all())
    mean = torch.stack([state.x.cos().mean(), state.x.sin().mean()])
    k = torch.tensor(kappa, dtype=torch.float64)
    expected = torch.special.i1(k) / torch.special.i0(k)
    torch.testing.assert_close(
        mean,
        expected * torch.tensor([math.cos(mu), math.sin(mu)], dtype=torch.float64),
        atol=0.02,
        rtol=0,
    )


def test_chains_leaving_an_interval_are_rejected():
    gen = torch.Generator().manual_seed(5)

    def components(x):
        return torch.zeros(x.shape[0], 1, dtype=x.dtype) + 0 * x.sum(-1, keepdim=True)

    x = torch.full((1000, 1), 0.95, dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    state = evaluate(components, x, one)
    state, _ = hmc_step(state, components, one, 0.5, 3, gen, Domain.interval(1, -1.0, 1.0))
    assert bool((state.x.abs() < 1).all())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_stages"):
        annealed_importance_sampling(torch.zeros(2, 2), _components, 0, StepSizes(1))
    with pytest.raises(ValueError, match="StepSizes"):
        StepSizes(2, initial=-1.0)
