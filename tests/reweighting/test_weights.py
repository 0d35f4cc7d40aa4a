"""Log-weights, ESS, expectations, resampling and the largest-weight share against exact answers."""

import math

import pytest
import torch

from confflow.reweighting import (
    expectation,
    kish_ess,
    largest_weight_share,
    log_weights,
    normalized_weights,
    resample,
)


def _gaussian_proposal(scale: float, n: int):
    """Samples of q = N(0, scale^2) with log-weights towards p = N(0, 1) (unnormalised)."""
    gen = torch.Generator().manual_seed(0)
    x = scale * torch.randn(n, generator=gen, dtype=torch.float64)
    log_q = -0.5 * (x / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
    u = 0.5 * x**2 + 3.0  # an arbitrary offset: log Z does not matter
    return x, log_weights(u, log_q)


def test_log_weights_are_float64_and_exact():
    lw = log_weights(torch.tensor([1.0, 2.0]), torch.tensor([-0.5, 0.25]))
    assert lw.dtype == torch.float64
    torch.testing.assert_close(lw, torch.tensor([-0.5, -2.25], dtype=torch.float64))


def test_infinite_energy_gives_zero_weight():
    lw = log_weights(torch.tensor([math.inf, 0.0]), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(
        normalized_weights(lw), torch.tensor([0.0, 1.0], dtype=torch.float64)
    )


def test_ess_of_gaussian_proposal_matches_closed_form():
    # ESS/N -> 1 / E_q[(p/q)^2] = sqrt(2 s^2 - 1) / s^2 for q = N(0, s^2), p = N(0, 1)
    s = 1.5
    _, lw = _gaussian_proposal(s, 400_000)
    assert kish_ess(lw) == pytest.approx(math.sqrt(2 * s * s - 1) / s**2, abs=0.005)


def test_self_normalised_expectation_recovers_target_moments():
    x, lw = _gaussian_proposal(1.5, 400_000)
    moments = expectation(torch.stack([x, x**2], 1), lw)
    assert moments.shape == (2,)
    assert moments[0].item() == pytest.approx(0.0, abs=0.01)
    assert moments[1].item() == pytest.approx(1.0, abs=0.01)


def test_expectation_ignores_values_of_zero_weight_samples():
    lw = torch.tensor([0.0, -math.inf], dtype=torch.float64)
    assert expectation(torch.tensor([2.0, math.nan]), lw).item() == 2.0


def test_systematic_resampling_is_proportional():
    lw = torch.log(torch.tensor([1.0, 3.0, 0.0, 4.0], dtype=torch.float64))
    idx = resample(lw, 800, torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=4)
    # systematic resampling: each count is within one of n * w_i
    assert (counts - torch.tensor([100, 300, 0, 400])).abs().max() <= 1


def test_largest_weight_share():
    lw = torch.log(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)) + 500.0
    assert largest_weight_share(lw) == pytest.approx(0.5)
    assert largest_weight_share(torch.zeros(10)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: log_weights(torch.zeros(3), torch.zeros(2)), "must both be"),
        (
            lambda: log_weights(torch.tensor([math.nan]), torch.zeros(1)),
            "reduced_energy contains NaN",
        ),
        (lambda: log_weights(torch.zeros(1), torch.tensor([math.inf])), "log_q contains"),
        (lambda: kish_ess(torch.tensor([0.0, math.inf])), r"\+inf"),
        (lambda: expectation(torch.zeros(3), torch.zeros(2)), "values must be"),
        (lambda: resample(torch.zeros(2), 0), "n must be"),
        (lambda: largest_weight_share(torch.zeros(2, 2)), "non-empty"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
