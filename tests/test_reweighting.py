"""Kish ESS and normalised weights against known answers."""

import math

import pytest
import torch

from confflow.reweighting import kish_ess, normalized_weights


def test_equal_weights_give_full_ess():
    assert kish_ess(torch.full((100,), -3.0)) == pytest.approx(1.0)


def test_one_dominant_weight_gives_one_over_n():
    log_w = torch.full((50,), -1e4, dtype=torch.float64)
    log_w[7] = 0.0
    assert kish_ess(log_w) == pytest.approx(1 / 50)


def test_two_level_weights_match_formula():
    # weights 1 (x3) and 3 (x1): ESS = 6^2 / (4 * 12) = 0.75
    log_w = (
        torch.log(torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=torch.float64)) + 700.0
    )  # huge offsets are fine
    assert kish_ess(log_w) == pytest.approx(0.75)


def test_normalized_weights_sum_to_one_without_overflow():
    w = normalized_weights(torch.tensor([1e3, 1e3 + math.log(3.0), -math.inf], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("log_w", "message"),
    [
        (torch.tensor([]), "non-empty"),
        (torch.tensor([0.0, math.nan]), "NaN"),
        (torch.tensor([-math.inf, -math.inf]), "no sample carries weight"),
    ],
)
def test_bad_log_weights(log_w, message):
    with pytest.raises(ValueError, match=message):
        kish_ess(log_w)
