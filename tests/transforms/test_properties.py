"""Structural properties: autoregressive Jacobians, ActNorm start, identity start, context use."""

import pytest
import torch

from confflow.domains import Domain
from confflow.nn import MADE
from confflow.transforms import IAF, MAF, ActNorm, SplineCoupling

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_made_outputs_depend_only_on_earlier_inputs():
    made = MADE(
        degrees=[1, 2, 3, 4], features=4, params_per_dim=3, hidden=(32, 32), zero_init=False
    )
    x = torch.randn(4, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: made(v[None])[0].sum(-1), x)
    assert torch.all(jac.triu() == 0)  # output i never sees input j >= i
    lower = torch.ones(4, 4, dtype=torch.bool).tril(-1)
    assert torch.all(jac[lower].abs() > 0)  # and does see every earlier input


def test_made_with_duplicated_circle_units_is_autoregressive():
    # Coordinate 2 is a circle entering as two units (cos, sin) of the same degree.
    made = MADE(degrees=[1, 2, 3, 2], features=3, params_per_dim=2, hidden=(32,), zero_init=False)
    x = torch.randn(4, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: made(v[None])[0].sum(-1), x)
    assert torch.all(jac[:, [1, 3]][:2] == 0)  # outputs 0, 1 ignore coordinate 2's units
    assert torch.all(jac[2, [1, 3]].abs() > 0)


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_autoregressive_jacobian_is_triangular(cls):
    t = cls(Domain.real(2) + Domain.circle(2), hidden=(16,), zero_init=False).double()
    x = torch.tensor([[0.3, -1.2, 0.5, -2.0]], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: t(v)[0], x)[0, :, 0, :]
    assert torch.all(jac.triu(1).abs() < 1e-12)


def test_actnorm_standardises_the_first_data_batch():
    t = ActNorm(3)
    y = torch.randn(4096, 3) * torch.tensor([0.1, 2.0, 5.0]) + torch.tensor([1.0, -3.0, 0.0])
    z, _ = t.inverse(y)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=1e-4, rtol=0)
    assert bool(t.initialized)
    state = ActNorm(3)
    state.load_state_dict(t.state_dict())
    assert bool(state.initialized)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_init_layers_start_as_identity(device):
    d = Domain.real(2) + Domain.interval(1, 0.0, 1.0) + Domain.circle(2)
    x = torch.tensor([[0.5, -7.0, 0.25, 3.0, -1.0]], device=device)
    for t in (SplineCoupling(d, [True, False, True, False, True]), MAF(d), IAF(d)):
        y, ladj = t.to(device)(x)
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
        torch.testing.assert_close(ladj, torch.zeros(1, device=device), atol=1e-6, rtol=0)


def test_context_changes_the_map():
    t = SplineCoupling(2, [True, False], context_features=1, hidden=(16,), zero_init=False)
    x = torch.randn(5, 2)
    y1, _ = t(x, torch.zeros(5, 1))
    y2, _ = t(x, torch.ones(5, 1))
    assert (y1 - y2).abs().max() > 1e-3
