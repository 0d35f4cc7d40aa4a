import math

import numpy as np
import pytest
import torch

from confflow.energies.analytic import DoubleWell, GaussianMixtureEnergy
from confflow.energies.base import kT


@pytest.mark.parametrize(("a", "b", "c"), [(1.0, 6.0, 1.0), (0.5, 2.0, 0.0), (2.0, 0.0, -1.0)])
def test_double_well_log_partition_matches_dense_quadrature(a, b, c):
    well = DoubleWell(dim=3, a=a, b=b, c=c)
    s = np.linspace(-12.0, 12.0, 400_001)
    u = a * s**4 - b * s**2 + c * s
    shift = u.min()
    z = np.trapezoid(np.exp(-(u - shift)), s)
    expected = math.log(z) - shift + math.log(2 * math.pi)
    assert well.log_partition() == pytest.approx(expected, abs=1e-9)


def test_double_well_energy_units_and_log_prob():
    well = DoubleWell(dim=2, a=1.0, b=6.0, c=1.0, temperature=350.0)
    x = torch.tensor([[1.0, 2.0], [-1.5, 0.0]], dtype=torch.float64)
    u = torch.tensor([1 - 6 + 1 + 2.0, 1.5**4 - 6 * 1.5**2 - 1.5])
    assert torch.allclose(well.energy(x), kT(350.0) * u.double())
    assert torch.allclose(well.reduced(x, 350.0), u.double())
    assert torch.allclose(well.log_prob(x), -u.double() - well.log_partition())


def test_gaussian_mixture_is_normalised_and_samples_follow_it():
    means = torch.tensor([[0.0, 0.0], [4.0, 1.0], [-3.0, 2.0]])
    mix = GaussianMixtureEnergy(means, torch.tensor([0.5, 1.0, 0.7]), torch.tensor([1.0, 2.0, 1.0]))
    assert mix.log_partition() == 0.0
    # Riemann sum of exp(log_prob) over a grid covering all components: integral is 1.
    g = torch.linspace(-9.0, 11.0, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    integral = mix.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert integral.item() == pytest.approx(1.0, abs=1e-6)
    x = mix.sample(40_000, torch.Generator().manual_seed(0))
    expected_mean = (torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)[:, None] * means).sum(0)
    assert torch.allclose(x.mean(0), expected_mean.double(), atol=0.05)


def test_gaussian_mixture_energy_is_kt_times_negative_log_density():
    mix = GaussianMixtureEnergy(torch.zeros(1, 3), torch.tensor([2.0]), temperature=300.0)
    x = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    log_p = -0.5 * (2.0 / 4.0) - 3 * math.log(2.0) - 1.5 * math.log(2 * math.pi)
    assert mix.energy(x).item() == pytest.approx(-kT(300.0) * log_p)
    assert mix.event_shape == (3,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="a: the quartic coefficient must be positive"):
        DoubleWell(a=0.0)
    with pytest.raises(ValueError, match="dim: must be >= 1"):
        DoubleWell(dim=0)
    with pytest.raises(ValueError, match=r"stds: expected positive values"):
        GaussianMixtureEnergy(torch.zeros(2, 2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"weights: expected 2 positive values"):
        GaussianMixtureEnergy(torch.zeros(2, 2), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"expected positions of shape \[B, 2\]"):
        DoubleWell(dim=2).energy(torch.zeros(4, 3))


def test_double_well_samples_follow_the_density():
    well = DoubleWell(dim=3, a=1.0, b=6.0, c=1.0)
    x = well.sample(200_000, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 3) and x.dtype == torch.float64
    s = np.linspace(-6.0, 6.0, 600_001)
    p = np.exp(-(s**4 - 6.0 * s**2 + s))
    right = float(p[s > 0].sum() / p.sum())
    se = math.sqrt(right * (1 - right) / x.shape[0])
    assert abs(float((x[:, 0] > 0).double().mean()) - right) < 4 * se
    # x0's second moment against quadrature; the other coordinates standard normal
    m2 = float((p * s**2).sum() / p.sum())
    assert abs(float(x[:, 0].square().mean()) - m2) < 0.02 * m2
    torch.testing.assert_close(
        x[:, 1:].var(0), torch.ones(2, dtype=torch.float64), atol=0.02, rtol=0
    )
