"""The shipped test helpers catch broken transforms."""

import math

import pytest
import torch

from confflow.testing import assert_bijective, assert_ladj_matches_autograd, assert_not_above
from confflow.transforms import ElementwiseAffine, Transform


class WrongLogDet(ElementwiseAffine):
    """Correct map, log-det off by a constant."""

    def _forward(self, x, context):
        y, ladj = super()._forward(x, context)
        return y, ladj + 0.1


class NotInverse(Transform):
    """An inverse that is not the inverse."""

    features = 2

    def _forward(self, x, context):
        return 2 * x, torch.full(
            (x.shape[0],), 2 * torch.log(torch.tensor(2.0)).item(), dtype=x.dtype
        )

    def _inverse(self, y, context):
        return y / 2.1, torch.zeros(y.shape[0], dtype=y.dtype)


def test_wrong_log_det_is_caught():
    with pytest.raises(AssertionError, match="WrongLogDet"):
        assert_ladj_matches_autograd(WrongLogDet(2), torch.randn(4, 2))


def test_wrong_inverse_is_caught():
    with pytest.raises(AssertionError, match=r"NotInverse: inverse\(forward\(x\)\)"):
        assert_bijective(NotInverse(), torch.randn(4, 2, dtype=torch.float64))


def test_helper_leaves_the_module_dtype_alone():
    t = ElementwiseAffine(3)
    assert_ladj_matches_autograd(t, torch.randn(4, 3))
    assert t.shift.dtype == torch.float32


def test_assert_not_above_allows_rounding_only():
    bound = torch.tensor([350.0, -20.0, 0.0], dtype=torch.float64)
    assert_not_above(bound * (1 + 4e-16) + 1e-15, bound)  # a recomputation's last bits
    assert_not_above(bound - 1.0, bound)
    with pytest.raises(AssertionError, match="element 0 exceeds"):
        assert_not_above(bound + torch.tensor([1e-9, 0.0, 0.0], dtype=torch.float64), bound)
    with pytest.raises(AssertionError, match="element 2"):
        assert_not_above(torch.tensor([0.0, -30.0, math.nan], dtype=torch.float64), bound)
