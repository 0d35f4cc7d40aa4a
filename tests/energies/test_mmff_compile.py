"""The compiled-kernel helpers: eager fallback after a failed compilation, background errors."""

import pytest
import torch

from confflow.energies.mmff_compile import SharedKernel


def _square(x: torch.Tensor) -> torch.Tensor:
    return x * x


def _broken(*args):
    raise RuntimeError("no compiler")


def test_a_failed_compilation_warns_and_leaves_the_kernel_eager():
    shared = SharedKernel(_square)
    shared.kernel.current = _broken  # what a failing compiler leaves behind
    x = torch.arange(3.0)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler"):
        assert shared.prepare("sig", [(x,)]).result(timeout=60) is False
    assert not shared.serves("sig")
    assert torch.equal(shared.kernel(x), x * x)  # eager from now on


def test_an_error_in_the_background_reaches_whoever_waits():
    shared = SharedKernel(_broken)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="no compiler"):
        shared.prepare("sig", [(torch.zeros(2),)]).result(timeout=60)
