"""Base densities and Flow: normalisation, domains, sample/log_prob agreement."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from confflow.distributions import (
    DomainProduct,
    Flow,
    GaussianMixture,
    StandardNormal,
    TorusMixture,
    Uniform,
    UniformCircle,
)
from confflow.domains import Domain
from confflow.transforms import Compose, SplineCoupling, coupling_masks


def test_standard_normal_matches_torch():
    x = torch.randn(10, 3, dtype=torch.float64)
    ref = MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(StandardNormal(3).double().log_prob(x), ref.log_prob(x))


def test_uniform_and_circle_densities():
    assert torch.allclose(
        Uniform(2, -1.0, 3.0).log_prob(torch.zeros(1, 2)), torch.tensor(-2 * math.log(4.0))
    )
    assert torch.allclose(
        UniformCircle(3).log_prob(torch.zeros(1, 3)), torch.tensor(-3 * math.log(2 * math.pi))
    )
    assert UniformCircle(1).log_prob(torch.tensor([[4.0]])).item() == -math.inf


def test_domain_product_samples_stay_in_their_domains():
    d = Domain.real(2) + Domain.interval(1, 0.5, 0.7) + Domain.circle(2)
    base = DomainProduct(d).double()
    x = base.sample(5000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64
    assert not d.outside(x).any()
    assert abs(x[:, 0].std().item() - 1) < 0.05
    assert x[:, 3:].min() >= -math.pi and x[:, 3:].max() < math.pi


def test_domain_product_integrates_to_one_on_a_bounded_box():
    d = Domain.interval(1, 0.0, 2.0) + Domain.circle(1)
    base = DomainProduct(d).double()
    u = torch.rand(200_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pts = torch.stack([2 * u[:, 0], (2 * u[:, 1] - 1) * math.pi], 1)
    integral = base.log_prob(pts).exp().mean() * 2 * 2 * math.pi
    assert abs(integral.item() - 1) < 1e-12


def test_torus_mixture_is_normalised():
    target = TorusMixture()
    g = torch.linspace(-math.pi, math.pi, 401, dtype=torch.float64)[:-1]
    grid = torch.cartesian_prod(g, g)
    integral = target.log_prob(grid).exp().sum() * (2 * math.pi / 400) ** 2
    assert abs(integral.item() - 1) < 1e-8


def test_gaussian_mixture_is_normalised():
    target = GaussianMixture.default_2d()
    g = torch.linspace(-9, 9, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    integral = target.log_prob(grid).exp().sum() * (18 / 600) ** 2
    assert abs(integral.item() - 1) < 1e-6


def test_flow_sample_log_prob_equals_log_prob_of_samples():
    d = Domain.real(2) + Domain.circle(2)
    layers = [SplineCoupling(d, m, hidden=(16,), zero_init=False) for m in coupling_masks(4, 3)]
    flow = Flow(DomainProduct(d), Compose(layers)).double()
    x, log_q = flow.sample(64)
    torch.testing.assert_close(flow.log_prob(x), log_q, atol=1e-10, rtol=0)


def test_flow_density_is_normalised_on_the_torus():
    d = Domain.circle(2)
    layers = [SplineCoupling(d, m, hidden=(16,), zero_init=False) for m in coupling_masks(2, 4)]
    flow = Flow(UniformCircle(2), Compose(layers)).double()
    g = torch.linspace(-math.pi, math.pi, 301, dtype=torch.float64)[:-1]
    with torch.no_grad():
        p = flow.log_prob(torch.cartesian_prod(g, g)).exp()
    assert abs((p.sum() * (2 * math.pi / 300) ** 2).item() - 1) < 1e-3


def test_flow_rejects_mismatched_base():
    with pytest.raises(ValueError, match="domain differs"):
        Flow(StandardNormal(2), SplineCoupling(Domain.circle(2), [True, False]))


def test_sample_count_must_be_positive():
    with pytest.raises(ValueError, match="n must be >= 1"):
        StandardNormal(2).sample(0)
