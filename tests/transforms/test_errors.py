"""Bad input: a ValueError that names the transform and the problem."""

import math

import pytest
import torch

from confflow.domains import Domain
from confflow.transforms import (
    MAF,
    AffineCoupling,
    Compose,
    LULinear,
    Permutation,
    Sigmoid,
    SplineCoupling,
    coupling_masks,
)

INTERVAL = Domain.real(1) + Domain.interval(1, 0.0, 1.0) + Domain.circle(1)


def test_wrong_feature_count():
    t = SplineCoupling(4, [True, True, False, False])
    with pytest.raises(ValueError, match=r"SplineCoupling\.forward: expected 4 features"):
        t(torch.randn(3, 5))


def test_wrong_rank():
    t = LULinear(3)
    with pytest.raises(ValueError, match=r"LULinear\.inverse: expected 2 dimensions"):
        t.inverse(torch.randn(3))


def test_nan_input():
    t = MAF(3)
    x = torch.randn(4, 3)
    x[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"MAF\.inverse: input contains NaN"):
        t.inverse(x)


def test_integer_input():
    with pytest.raises(ValueError, match="floating-point"):
        SplineCoupling(2, [True, False])(torch.ones(2, 2, dtype=torch.long))


def test_value_outside_interval_domain():
    t = SplineCoupling(INTERVAL, [False, True, True])
    x = torch.tensor([[0.0, 1.5, 0.0]])
    with pytest.raises(ValueError, match=r"SplineCoupling\.forward: feature 1 .*interval domain"):
        t(x)


def test_value_outside_circle_domain():
    t = SplineCoupling(INTERVAL, [True, False, True])
    x = torch.tensor([[0.0, 0.5, 4.0]])
    with pytest.raises(ValueError, match=r"feature 2 .*circle domain"):
        t.inverse(x)


def test_outside_interval_through_compose_names_the_first_part():
    t = Compose([SplineCoupling(INTERVAL, m) for m in coupling_masks(3, 2, "alternate")])
    with pytest.raises(ValueError, match=r"SplineCoupling\.inverse: feature 1"):
        t.inverse(torch.tensor([[0.0, -0.1, 0.0]]))


def test_sigmoid_inverse_rejects_values_outside_its_interval():
    with pytest.raises(ValueError, match=r"Sigmoid\.inverse: feature 0"):
        Sigmoid(2, 0.0, 1.0).inverse(torch.tensor([[1.0, 0.5]]))


def test_context_shape_mismatch():
    t = SplineCoupling(2, [True, False], context_features=3)
    with pytest.raises(ValueError, match="context must be"):
        t(torch.randn(4, 2), torch.randn(5, 3))


def test_missing_context():
    t = SplineCoupling(2, [True, False], context_features=3)
    with pytest.raises(ValueError, match="needs a context"):
        t(torch.randn(4, 2))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SplineCoupling(3, [True, True, True]), "must transform some"),
        (lambda: SplineCoupling(3, [True, False]), "mask has 2 entries"),
        (lambda: AffineCoupling(Domain.circle(2), [True, False]), "real line"),
        (lambda: MAF(Domain.circle(2), elementwise="affine"), "real-line"),
        (lambda: MAF(2, elementwise="cubic"), "elementwise must be"),
        (lambda: Permutation([0, 0, 1]), "not a permutation"),
        (lambda: Sigmoid(2, 1.0, 0.0), "low < high"),
        (lambda: Domain.interval(1, 1.0, 1.0), "finite low < high"),
        (lambda: coupling_masks(4, 2, "random"), "unknown pattern"),
        (lambda: Compose([]), "at least one"),
    ],
)
def test_bad_construction(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
