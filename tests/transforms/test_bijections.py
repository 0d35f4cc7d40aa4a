"""Every transform: round trips (float32 and float64) and log-dets against autograd."""

import math

import pytest
import torch

from confflow.domains import Domain
from confflow.testing import assert_bijective, assert_ladj_matches_autograd
from confflow.transforms import (
    IAF,
    MAF,
    ActNorm,
    AffineCoupling,
    Compose,
    ElementwiseAffine,
    ElementwiseSpline,
    Inverse,
    Logit,
    LULinear,
    Permutation,
    Sigmoid,
    SplineCoupling,
    coupling_masks,
)

MIXED = Domain.real(2) + Domain.interval(2, 0.1, 0.3) + Domain.circle(3)
MASK = [True, False, True, False, True, True, False]
SMALL = dict(hidden=(16, 16), zero_init=False)


def _randomize(t: torch.nn.Module) -> torch.nn.Module:
    """Moves every parameter away from its identity start."""
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return t


def mixed_points(n: int, dtype: torch.dtype, boundary: bool = False) -> torch.Tensor:
    """Points in MIXED: real coordinates in and beyond the spline region, intervals, circles."""
    real = torch.randn(n, 2, dtype=dtype) * 4  # crosses the +-5 spline bound into the tails
    interval = 0.1 + 0.2 * torch.rand(n, 2, dtype=dtype)
    circle = (2 * torch.rand(n, 3, dtype=dtype) - 1) * math.pi
    x = torch.cat([real, interval, circle], dim=1)
    if boundary:
        eps = 1e-7
        x[: n // 2, 2:4] = 0.1 + eps
        x[n // 2 :, 2:4] = 0.3 - eps
        x[: n // 2, 4:] = -math.pi
        x[n // 2 :, 4:] = math.pi - eps
        x[:, 0] = torch.tensor([-5.0, 5.0, -6.0, 6.0, 4.999, -4.999, 20.0, -20.0][:n], dtype=dtype)
    return x


def real_points(n: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(n, d, dtype=dtype) * 2


def _actnorm():
    t = ActNorm(4)
    t.train()
    t.inverse(torch.randn(64, 4) * 3 + 1)  # data-dependent initialisation
    return t


CASES = {
    "elementwise_affine": (
        lambda: _randomize(ElementwiseAffine(4)),
        lambda n, dt: real_points(n, 4, dt),
    ),
    "actnorm": (_actnorm, lambda n, dt: real_points(n, 4, dt)),
    "lu_linear": (lambda: _randomize(LULinear(4, seed=1)), lambda n, dt: real_points(n, 4, dt)),
    "permutation": (
        lambda: Permutation.random(7, seed=2, domain=MIXED),
        lambda n, dt: mixed_points(n, dt),
    ),
    "sigmoid": (lambda: Sigmoid(3, -1.0, 2.0), lambda n, dt: real_points(n, 3, dt)),
    "logit": (lambda: Logit(3, -1.0, 2.0), lambda n, dt: -1 + 3 * torch.rand(n, 3, dtype=dt)),
    "affine_coupling": (
        lambda: AffineCoupling(MIXED[[0, 1, 4]], [True, False, False], **SMALL),
        lambda n, dt: mixed_points(n, dt)[:, [0, 1, 4]],
    ),
    "elementwise_spline_mixed": (lambda: _randomize(ElementwiseSpline(MIXED)), mixed_points),
    "elementwise_spline_boundary": (
        lambda: _randomize(ElementwiseSpline(MIXED)),
        lambda n, dt: mixed_points(n, dt, boundary=True),
    ),
    "spline_coupling_mixed": (lambda: SplineCoupling(MIXED, MASK, **SMALL), mixed_points),
    "spline_coupling_boundary": (
        lambda: SplineCoupling(MIXED, MASK, **SMALL),
        lambda n, dt: mixed_points(n, dt, boundary=True),
    ),
    "spline_coupling_context": (
        lambda: SplineCoupling(MIXED, MASK, context_features=2, **SMALL),
        mixed_points,
    ),
    "maf_spline": (lambda: MAF(MIXED, **SMALL), mixed_points),
    "maf_spline_boundary": (
        lambda: MAF(MIXED, **SMALL),
        lambda n, dt: mixed_points(n, dt, boundary=True),
    ),
    "iaf_spline": (lambda: IAF(MIXED, **SMALL), mixed_points),
    "maf_affine": (
        lambda: _randomize(MAF(4, elementwise="affine", **SMALL)),
        lambda n, dt: real_points(n, 4, dt),
    ),
    "iaf_affine": (
        lambda: _randomize(IAF(4, elementwise="affine", **SMALL)),
        lambda n, dt: real_points(n, 4, dt),
    ),
    "compose": (
        lambda: Compose(
            [SplineCoupling(MIXED, m, **SMALL) for m in coupling_masks(7, 3, "alternate")]
            + [Inverse(SplineCoupling(MIXED, MASK, **SMALL))]
        ),
        mixed_points,
    ),
}


def _context(name: str, n: int, dtype: torch.dtype):
    return torch.randn(n, 2, dtype=dtype) if "context" in name else None


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_round_trip(name, dtype):
    make, points = CASES[name]
    t = make().to(dtype)
    x = points(8, dtype)
    assert_bijective(t, x, _context(name, 8, dtype))


@pytest.mark.parametrize("name", sorted(CASES))
def test_ladj_matches_autograd(name):
    make, points = CASES[name]
    t = make().double()
    x = points(8, torch.float64)
    assert_ladj_matches_autograd(t, x, _context(name, 8, torch.float64))


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_wrapper_swaps_directions(name):
    make, points = CASES[name]
    t = make().double()
    x = points(6, torch.float64)
    ctx = _context(name, 6, torch.float64)
    y, ladj = t(x, ctx)
    y2, ladj2 = Inverse(t).inverse(x, ctx)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(ladj2, ladj)


def test_sigmoid_round_trip_near_interval_ends():
    # Data within 1e-6 of either end; the latent side is then |x| ~ 14.
    t = Logit(2, 0.0, 1.0).double()
    u = torch.tensor([[1e-6, 1 - 1e-6], [0.5, 1e-5]], dtype=torch.float64)
    assert_bijective(t, u)
    assert_ladj_matches_autograd(t, u)
