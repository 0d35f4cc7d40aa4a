"""Wrapped-normal mixtures on circles: normalised, sampled as they say, fitted by EM."""

import math

import pytest
import torch

from confflow.distributions import (
    CircularMixtureProduct,
    WrappedNormalMixture,
    fit_wrapped_normal_mixture,
)
from confflow.domains import Domain

# two circles: a main well with a 2% minor well that straddles the cut at +-pi, and a broad
# three-fold rotor with a wide component
TRUE = WrappedNormalMixture(
    torch.tensor([[-1.5, 3.0, 0.0], [-2.1, 0.0, 2.1]], dtype=torch.float64),
    torch.tensor([[0.6, 0.3, 0.5], [0.25, 0.25, 1.5]], dtype=torch.float64),
    torch.tensor([[0.9, 0.02, 0.06, 0.02], [0.3, 0.3, 0.3, 0.1]], dtype=torch.float64),
)


def test_density_integrates_to_one():
    grid = torch.linspace(-math.pi, math.pi, 40_001, dtype=torch.float64)[:-1]
    density = TRUE.log_prob(grid[:, None].expand(-1, 2)).exp()
    torch.testing.assert_close(
        density.mean(0) * 2 * math.pi, torch.ones(2, dtype=torch.float64), atol=1e-9, rtol=0
    )


def test_samples_follow_the_density():
    n, bins = 200_000, 64
    x = TRUE.sample(n, torch.Generator().manual_seed(0), torch.zeros((), dtype=torch.float64))
    assert x.shape == (n, 2) and bool(((x >= -math.pi) & (x < math.pi)).all())
    fine = torch.linspace(-math.pi, math.pi, bins * 200 + 1, dtype=torch.float64)[:-1]
    mass = TRUE.log_prob(fine[:, None].expand(-1, 2)).exp().reshape(bins, 200, 2).mean(1)
    mass = mass * 2 * math.pi / bins  # [bins, 2] probabilities
    for c in range(2):
        counts = torch.histc(x[:, c], bins, -math.pi, math.pi) / n
        se = (mass[:, c] * (1 - mass[:, c]) / n).sqrt()
        assert float(((counts - mass[:, c]).abs() / se).max()) < 5


def test_em_recovers_a_minor_well_across_the_cut():
    # like phi of alanine dipeptide: 2% in a well that straddles +-pi
    true = WrappedNormalMixture(
        torch.tensor([[-1.5, 3.0]], dtype=torch.float64),
        torch.tensor([[0.6, 0.3]], dtype=torch.float64),
        torch.tensor([[0.96, 0.02, 0.02]], dtype=torch.float64),
    )
    x = true.sample(100_000, torch.Generator().manual_seed(1), torch.zeros((), dtype=torch.float64))
    fit = fit_wrapped_normal_mixture(x, components=2)
    order = torch.argsort(fit.weight[0, :-1], descending=True)
    torch.testing.assert_close(fit.weight[0, :-1][order], true.weight[0, :-1], atol=3e-3, rtol=0)
    torch.testing.assert_close(fit.loc[0][order], true.loc[0], atol=0.02, rtol=0)
    torch.testing.assert_close(fit.scale[0][order], true.scale[0], atol=0.02, rtol=0)
    # the fit is as likely as the truth on the data (maximum likelihood)
    assert float(fit.log_prob(x).mean()) >= float(true.log_prob(x).mean()) - 1e-4


def test_fit_keeps_a_uniform_floor_and_round_trips():
    x = torch.full((500, 1), 0.3, dtype=torch.float64)
    fit = fit_wrapped_normal_mixture(x, components=2)
    assert float(fit.weight[0, -1]) >= 0.01 - 1e-12
    assert float(fit.scale.min()) >= 0.01 - 1e-12
    again = WrappedNormalMixture.from_dict(fit.to_dict())
    torch.testing.assert_close(again.log_prob(x), fit.log_prob(x))


def test_product_density_is_normal_times_mixture():
    domain = Domain.real(1) + Domain.circle(2) + Domain.real(1)
    base = CircularMixtureProduct(domain, TRUE).double()
    assert not base.state_dict()  # the mixture lives in the config, not the weights
    x = base.sample(1000, torch.Generator().manual_seed(2))
    assert x.shape == (1000, 4) and x.dtype == torch.float64
    normal = -0.5 * (x[:, 0] ** 2 + x[:, 3] ** 2) - math.log(2 * math.pi)
    torch.testing.assert_close(base.log_prob(x), normal + TRUE.log_prob(x[:, 1:3]).sum(1))
    outside = x[:1].clone()
    outside[0, 1] = 4.0
    assert base.log_prob(outside).item() == -math.inf


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: WrappedNormalMixture(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2)),
            r"weight \[C, K \+ 1\]",
        ),
        (
            lambda: WrappedNormalMixture(
                torch.zeros(1, 1), torch.full((1, 1), 3.0), torch.tensor([[0.5, 0.5]])
            ),
            "scale must lie in",
        ),
        (
            lambda: WrappedNormalMixture(
                torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([[0.999, 0.001]])
            ),
            "uniform component",
        ),
        (
            lambda: WrappedNormalMixture(
                torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([[0.6, 0.6]])
            ),
            "sum to 1",
        ),
        (lambda: fit_wrapped_normal_mixture(torch.zeros(10, 1), 0), "components >= 1"),
        (
            lambda: fit_wrapped_normal_mixture(torch.tensor([[math.nan]] * 4), 2),
            "finite angles",
        ),
        (
            lambda: CircularMixtureProduct(Domain.circle(3), TRUE),
            "2 mixtures for 3 circles",
        ),
    ],
)
def test_bad_input(make, message):
    with pytest.raises(ValueError, match=message):
        make()
