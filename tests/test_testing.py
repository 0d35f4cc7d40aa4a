"""The shipped test helpers catch broken transforms."""

import pytest
import torch

from confflow.testing import assert_bijective, assert_ladj_matches_autograd
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
