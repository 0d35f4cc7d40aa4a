"""Rational-quadratic splines: seams, tails, boundaries, identity start; property-based."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from confflow.domains import Domain, wrap_angle
from confflow.transforms import RQSpline, SplineCoupling

CIRCLE = Domain.circle(1)


def _raw(n: int, bins: int = 8, scale: float = 1.0, seed: int = 0, real: bool = False):
    """Random raw parameters ``[n, 1, P]`` for a one-coordinate circle (or real-line) spline."""
    g = torch.Generator().manual_seed(seed)
    size = 3 * bins - 1 if real else 3 * bins + 2
    return scale * torch.randn(n, 1, size, generator=g, dtype=torch.float64)


def test_parameter_counts():
    assert RQSpline(Domain.real(3), bins=8).params_per_dim == 23
    assert RQSpline(Domain.interval(1, 0.0, 1.0), bins=8).params_per_dim == 25
    assert RQSpline(Domain.real(1) + CIRCLE, bins=8).params_per_dim == 26


def test_circular_spline_is_continuous_across_the_seam():
    spline = RQSpline(CIRCLE, bins=8)
    raw = _raw(1, scale=2.0).expand(2, 1, -1)
    eps = 1e-9
    x = torch.tensor([[-math.pi + eps], [math.pi - eps]], dtype=torch.float64)
    y, ladj = spline(x, raw)
    # Values meet modulo 2 pi, and so do the slopes (d_0 == d_K).
    gap = wrap_angle(y[0] - y[1]).abs().item()
    assert gap < 1e-8
    assert abs(ladj[0].item() - ladj[1].item()) < 1e-6


def test_circular_spline_slope_matches_across_the_seam_numerically():
    spline = RQSpline(CIRCLE, bins=6)
    raw = _raw(1, bins=6, scale=1.5, seed=3)
    h = 1e-6

    def f(v: float) -> float:
        y, _ = spline(torch.tensor([[v]], dtype=torch.float64), raw)
        return y.item()

    left = wrap_angle(torch.tensor(f(math.pi - h) - f(math.pi - 2 * h))).item() / h
    right = wrap_angle(torch.tensor(f(-math.pi + 2 * h) - f(-math.pi + h))).item() / h
    assert abs(left - right) < 1e-4


def test_zero_parameters_give_identity_on_every_kind():
    domain = Domain.real(1) + Domain.interval(1, -2.0, 1.0) + Domain.circle(1)
    spline = RQSpline(domain, bins=5)
    x = torch.tensor([[0.3, -1.5, 3.0], [-7.0, 0.9, -3.1]], dtype=torch.float64)
    y, ladj = spline(x, torch.zeros(2, 3, 17, dtype=torch.float64))
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ladj, torch.zeros_like(ladj), atol=1e-12, rtol=0)


def test_real_spline_is_identity_in_the_tails():
    spline = RQSpline(Domain.real(1), bins=8, bound=3.0)
    x = torch.tensor([[-10.0], [-3.0], [3.5], [100.0]], dtype=torch.float64)
    y, ladj = spline(x, _raw(4, scale=3.0, real=True))
    torch.testing.assert_close(y, x, atol=0, rtol=0)
    assert (ladj == 0).all()


def test_interval_spline_maps_ends_to_ends():
    spline = RQSpline(Domain.interval(1, 0.5, 2.0), bins=8)
    x = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    y, _ = spline(x, _raw(2, scale=2.0)[..., :-1])  # interval: no rotation parameter
    torch.testing.assert_close(y, x, atol=1e-14, rtol=0)


@settings(max_examples=60, deadline=None)
@given(
    v=st.floats(-math.pi, math.pi, allow_nan=False),
    seed=st.integers(0, 10_000),
    bins=st.integers(2, 12),
    scale=st.floats(0.0, 2.0),
)
def test_circular_round_trip_property(v, seed, bins, scale):
    spline = RQSpline(CIRCLE, bins=bins)
    raw = _raw(1, bins, scale, seed)
    x = torch.tensor([[v]], dtype=torch.float64)
    y, ladj = spline(x, raw)
    assert -math.pi <= y.item() < math.pi
    x_back, ladj_back = spline.inverse(y, raw)
    assert wrap_angle(x_back - x).abs().item() < 1e-10
    assert abs(ladj.item() + ladj_back.item()) < 1e-8


@settings(max_examples=60, deadline=None)
@given(
    v=st.floats(-math.pi, math.pi, allow_nan=False),
    seed=st.integers(0, 10_000),
    bins=st.integers(2, 12),
    scale=st.floats(2.0, 8.0),
)
def test_circular_inverse_is_backward_stable_for_extreme_parameters(v, seed, bins, scale):
    # With extreme raw parameters the slope can fall to ~1e-7, so x itself cannot be recovered
    # to 1e-10 from a float64 y; the inverse must still be exact to rounding in y units.
    spline = RQSpline(CIRCLE, bins=bins)
    raw = _raw(1, bins, scale, seed)
    x = torch.tensor([[v]], dtype=torch.float64)
    y, ladj = spline(x, raw)
    x_back, _ = spline.inverse(y, raw)
    y_error = wrap_angle(x_back - x).abs().item() * math.exp(ladj.item())
    assert y_error < 1e-13


@settings(max_examples=60, deadline=None)
@given(
    v=st.floats(-50.0, 50.0, allow_nan=False),
    seed=st.integers(0, 10_000),
    bins=st.integers(2, 12),
    bound=st.floats(0.5, 10.0),
)
def test_real_round_trip_property(v, seed, bins, bound):
    spline = RQSpline(Domain.real(1), bins=bins, bound=bound)
    raw = _raw(1, bins, 2.0, seed, real=True)
    x = torch.tensor([[v]], dtype=torch.float64)
    y, ladj = spline(x, raw)
    x_back, ladj_back = spline.inverse(y, raw)
    assert abs(x_back.item() - v) <= 1e-10 * max(1.0, abs(v))
    assert abs(ladj.item() + ladj_back.item()) < 1e-8
    assert torch.isfinite(ladj).all()


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 9), n_real=st.integers(0, 3), n_circle=st.integers(0, 3))
def test_coupling_shapes_property(batch, n_real, n_circle):
    domain = Domain.real(n_real + 1) + Domain.circle(n_circle + 1)
    mask = [i % 2 == 0 for i in range(domain.dim)]
    t = SplineCoupling(domain, mask, hidden=(8,), zero_init=False)
    x = torch.cat(
        [torch.randn(batch, n_real + 1), (2 * torch.rand(batch, n_circle + 1) - 1) * math.pi], 1
    )
    y, ladj = t(x)
    assert y.shape == x.shape and ladj.shape == (batch,)
    assert (y[:, n_real + 1 :].abs() <= math.pi).all()
