import math

import pytest
import torch

from confflow.energies.analytic import DoubleWell
from confflow.energies.cap import CappedEnergy, linlog_cap


def test_identity_below_threshold_and_logarithmic_above():
    e = torch.tensor([-1e3, 0.0, 99.0, 100.0, 150.0, 1e12], dtype=torch.float64)
    capped = linlog_cap(e, threshold=100.0, scale=10.0)
    assert torch.equal(capped[:4], e[:4])
    assert capped[4] == pytest.approx(100.0 + 10.0 * math.log(1 + 50.0 / 10.0), rel=1e-14)
    assert capped[5] == pytest.approx(100.0 + 10.0 * math.log(1 + (1e12 - 100.0) / 10.0))
    assert bool((capped[1:] > capped[:-1]).all())  # monotonic


def test_value_and_slope_are_continuous_at_threshold():
    t, s = 50.0, 2.0
    e = torch.tensor([t - 1e-7, t + 1e-7], dtype=torch.float64, requires_grad=True)
    capped = linlog_cap(e, t, s)
    (grad,) = torch.autograd.grad(capped.sum(), e)
    assert (capped[1] - capped[0]).item() == pytest.approx(2e-7, rel=1e-6)
    assert grad.tolist() == pytest.approx([1.0, 1.0], abs=1e-7)


def test_gradient_above_threshold_and_infinite_energy():
    e = torch.tensor([110.0, float("inf")], dtype=torch.float64, requires_grad=True)
    capped = linlog_cap(e, 100.0, 5.0)
    (grad,) = torch.autograd.grad(capped.sum(), e)
    assert grad[0].item() == pytest.approx(1 / (1 + 10.0 / 5.0))
    assert capped[1].item() == math.inf and grad[1].item() == 0.0


def test_gradcheck():
    e = torch.tensor([-5.0, 3.0, 20.0, 400.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: linlog_cap(v, 10.0, 3.0), (e,))


def test_capped_energy_wraps_an_energy():
    well = DoubleWell(dim=2)
    x = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    raw = well.energy(x)
    capped = CappedEnergy(well, threshold=raw[0].item() + 1.0, scale=1.0)
    out = capped.energy(x)
    assert out[0] == raw[0] and out[1] < raw[1]
    assert capped.event_shape == (2,)
    with pytest.raises(ValueError, match=r"expected positions of shape \[B, 2\]"):
        capped.energy(torch.zeros(3, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale: must be positive"):
        linlog_cap(torch.zeros(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="threshold: must be finite"):
        CappedEnergy(DoubleWell(), threshold=math.inf)
