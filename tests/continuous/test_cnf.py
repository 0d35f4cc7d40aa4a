"""CNF transform: analytic likelihoods, divergence estimators, solvers, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from confflow.distributions import Flow, StandardNormal
from confflow.domains import Domain
from confflow.nn import EGNN
from confflow.testing import assert_bijective, assert_ladj_matches_autograd
from confflow.transforms import CNF, IntegrationError, ODEConfig, torus_cnf
from confflow.transforms.continuous import (
    exact_divergence,
    hutchinson_divergence,
    sample_probes,
)

F64 = torch.float64


class LinearField(nn.Module):
    """``f(t, x) = A x`` with a fixed matrix ``A``."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None) -> Tensor:
        return x @ self.a.T


class Explodes(nn.Module):
    """Returns NaN once the flow time passes 0.5."""

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None) -> Tensor:
        return x * torch.where(t > 0.5, torch.nan, 1.0)


def _linear_flow(solver: str = "dopri5", **kw) -> tuple[Flow, Tensor]:
    gen = torch.Generator().manual_seed(1)
    a = 0.5 * torch.randn(3, 3, generator=gen, dtype=F64)
    config = ODEConfig(solver=solver, **kw)
    return Flow(StandardNormal(3).to(F64), CNF(LinearField(a), (3,), config)), a


def test_linear_field_matches_analytic_change_of_variables():
    flow, a = _linear_flow(rtol=1e-10, atol=1e-10)
    x = torch.randn(16, 3, dtype=F64)
    with torch.no_grad():
        log_q = flow.log_prob(x)
    z = x @ torch.linalg.matrix_exp(-a).T  # x = expm(A) z
    ref = StandardNormal(3).to(F64).log_prob(z) - torch.trace(a)
    assert float((log_q - ref).abs().max()) <= 1e-6
    with torch.no_grad():
        y, ladj = flow.transform(z)
    assert float((y - x).abs().max()) <= 1e-8
    assert float((ladj - torch.trace(a)).abs().max()) <= 1e-6
    assert flow.transform.nfe > 0


def test_fixed_step_rk4_close_to_analytic():
    flow, a = _linear_flow("rk4", step_size=0.05)
    z = torch.randn(8, 3, dtype=F64)
    with torch.no_grad():
        y, ladj = flow.transform(z)
    assert float((y - z @ torch.linalg.matrix_exp(a).T).abs().max()) <= 1e-5
    assert float((ladj - torch.trace(a)).abs().max()) <= 1e-6  # trace term exact for rk4
    assert flow.transform.nfe == 4 * 20


def test_cnf_round_trip_and_ladj_against_autograd():
    torch.manual_seed(3)
    field = EGNN([0, 1, 1], bonds=[(0, 1), (0, 2)], hidden=8, layers=1, frequencies=1)
    _randomise(field.to(F64))
    cnf = CNF(field, (3, 3), ODEConfig(rtol=1e-10, atol=1e-10), mean_free=True)
    x = torch.randn(2, 3, 3, dtype=F64)
    x = x - x.mean(1, keepdim=True)
    assert_bijective(cnf, x, atol=1e-8)
    with torch.no_grad():
        _, ladj = cnf(x)
    # ladj is the divergence in R^{12}; on the mean-free subspace the Jacobian of the
    # translation-invariant flow is the same plus a fixed identity block on the centroid.
    ref = _subspace_logdet(cnf, x[:1])
    assert abs(float(ladj[0] - ref[0])) <= 1e-7


def _subspace_logdet(cnf: CNF, x: Tensor) -> Tensor:
    """log|det| of the forward map restricted to the centre-of-mass-free subspace."""
    n = x.shape[1]
    # orthonormal basis of {sum = 0} in R^n
    helmert = torch.linalg.svd(torch.eye(n, dtype=F64) - 1.0 / n).U[:, : n - 1].contiguous()
    basis = torch.kron(helmert, torch.eye(3, dtype=F64))  # [3N, 3(N-1)]
    out = []
    for xi in x:
        s = basis.T @ xi.reshape(-1)

        def fn(s_: Tensor) -> Tensor:
            y, _ = cnf((basis @ s_).reshape(1, n, 3))
            return basis.T @ y.reshape(-1)

        jac = torch.autograd.functional.jacobian(fn, s)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def _randomise(module: nn.Module, scale: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_exact_divergence_equals_autograd_trace():
    field = EGNN([0, 1, 1, 1, 2], bonds=[(0, 1), (0, 2)], hidden=8, layers=2).to(F64)
    _randomise(field)
    x = torch.randn(4, 5, 3, dtype=F64, requires_grad=True)
    t = torch.tensor(0.3, dtype=F64)
    div = exact_divergence(field(t, x), x)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], x[b].detach())
        assert abs(float(div[b]) - float(jac.reshape(15, 15).trace())) <= 1e-10


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_within_three_standard_errors(kind):
    field = EGNN([0, 1, 1, 2], hidden=8, layers=2).to(F64)
    _randomise(field)
    x = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
    t = torch.tensor(0.7, dtype=F64)
    v = field(t, x)
    exact = exact_divergence(v, x, create_graph=True)
    n = 2000
    probes = sample_probes(tuple(x.shape), n, kind, F64, x.device, torch.Generator().manual_seed(0))
    (vjp,) = torch.autograd.grad(v, x, probes, is_grads_batched=True, retain_graph=True)
    single = (vjp * probes).reshape(n, 2, -1).sum(-1)  # [n, B] one-probe estimates
    mean, se = single.mean(0), single.std(0) / math.sqrt(n)
    assert bool((se > 0).all())
    assert bool(((mean - exact).abs() <= 3 * se).all()), (mean, exact, se)
    # The n-probe estimator is their mean.
    est = hutchinson_divergence(v, x, probes)
    assert torch.allclose(est, mean, atol=1e-12)


def test_sample_probes_moments():
    p = sample_probes((20000,), 1, "rademacher", F64, torch.device("cpu"))
    assert set(p.unique().tolist()) == {-1.0, 1.0}
    g = sample_probes((20000,), 1, "gaussian", F64, torch.device("cpu"))
    assert abs(float(g.var()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="probe: choose from"):
        sample_probes((3,), 1, "uniform", F64, torch.device("cpu"))


def test_hutchinson_cnf_gradients_flow_and_ladj_is_unbiased():
    flow, a = _linear_flow(rtol=1e-8, atol=1e-8, divergence="hutchinson", n_probes=2)
    z = torch.randn(256, 3, dtype=F64)
    _, ladj = flow.transform(z)
    # For a linear field each probe's estimate has mean tr(A); the batch mean is close.
    se = float(ladj.detach().std()) / math.sqrt(256)
    assert abs(float(ladj.detach().mean()) - float(torch.trace(a))) <= 3 * se + 1e-9
    ladj.sum().backward()
    assert flow.transform.dynamics.field.a.grad is not None


def test_adjoint_gradients_equal_direct_gradients():
    grads = []
    for adjoint in (False, True):
        flow, _ = _linear_flow(rtol=1e-10, atol=1e-10, adjoint=adjoint)
        x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
        flow.log_prob(x).sum().backward()
        grads.append(flow.transform.dynamics.field.a.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_torus_cnf_round_trip_ladj_and_wrapping():
    torch.manual_seed(0)
    domain = Domain.circle(2) + Domain.real(1) + Domain.interval(1, 0.0, 1.0)
    cnf = torus_cnf(domain, (8,), ODEConfig(rtol=1e-8, atol=1e-8)).to(F64)
    _randomise(cnf, 0.3)
    x = torch.cat(
        [
            torch.rand(2, 2, dtype=F64) * 6 - 3,
            torch.randn(2, 1, dtype=F64),
            torch.rand(2, 1, dtype=F64),
        ],
        dim=1,
    )
    # The round trip is exact up to the solver's error: 100 x its tolerance of 1e-8.
    assert_bijective(cnf, x, atol=1e-6)
    assert_ladj_matches_autograd(cnf, x, atol=1e-6)
    with torch.no_grad():
        y, _ = cnf(x)
        field = cnf.dynamics.field
        t = torch.tensor(0.4, dtype=F64)
        shift = torch.tensor([2 * math.pi, -2 * math.pi, 0.0, 0.0], dtype=F64)
        periodic = float((field(t, x + shift) - field(t, x)).abs().max())
        at_bounds = field(t, torch.tensor([[0.1, 0.2, 0.3, 0.0], [0.1, 0.2, 0.3, 1.0]], dtype=F64))
    assert not bool(domain.outside(y).any())
    assert periodic <= 1e-12  # torsions enter through cos/sin
    assert float(at_bounds[:, 3].abs().max()) <= 1e-12  # no flow across interval bounds


def test_nan_in_integration_names_the_evaluation():
    cnf = CNF(Explodes(), (2,), ODEConfig(solver="euler", step_size=0.25))
    with pytest.raises(
        IntegrationError, match=r"CNF\.forward: non-finite .* evaluation 4 \(t = 0\.75"
    ):
        cnf(torch.ones(3, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solver": "rk45"}, "solver: unknown solver 'rk45'"),
        ({"rtol": 0.5}, r"rtol: must lie in \[1e-12, 0.1\], got 0.5"),
        ({"atol": 0.0}, r"atol: must lie in \[1e-12, 0.1\]"),
        ({"atol": -1e-6}, r"atol: must lie in"),
        ({"solver": "euler"}, "step_size: fixed-step solver 'euler' needs a step"),
        ({"solver": "rk4", "step_size": 2.0}, "step_size: fixed-step solver 'rk4'"),
        ({"step_size": 0.1}, "step_size: adaptive solver 'dopri5' takes no step_size"),
        ({"divergence": "trace"}, "divergence: choose from"),
        ({"probe": "uniform"}, "probe: choose from"),
        ({"n_probes": 0}, "n_probes: must be an integer >= 1"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ODEConfig(**kwargs)


def test_bad_shapes_rejected():
    cnf = CNF(LinearField(torch.eye(3)), (3,))
    with pytest.raises(ValueError, match="expected 3 features"):
        cnf(torch.ones(2, 4))
    with pytest.raises(ValueError, match="mean_free: needs an event shape"):
        CNF(LinearField(torch.eye(3)), (3,), mean_free=True)
    with pytest.raises(ValueError, match="domain: 2 features for event shape"):
        CNF(LinearField(torch.eye(3)), (3,), domain=Domain.circle(2))
