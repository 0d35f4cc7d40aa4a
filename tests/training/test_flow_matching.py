"""Mean-free Gaussian base and conditional flow matching (couplings, alignment, training)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from confflow.coordinates import kabsch_align
from confflow.distributions import Flow, MeanFreeNormal, StandardNormal
from confflow.nn import MLP, TimeEmbedding
from confflow.testing import random_rotation
from confflow.training import TrainConfig, Trainer, TrainingDivergedError, fit_flow_matching
from confflow.training.flow_matching import (
    align_to_reference,
    ot_pairing,
    permute_identical_atoms,
)
from confflow.transforms import CNF, ODEConfig

F64 = torch.float64


def test_mean_free_normal_is_the_standard_normal_of_subspace_coordinates():
    n, std = 5, 0.7
    base = MeanFreeNormal(n, std).to(F64)
    basis = torch.linalg.svd(torch.eye(n, dtype=F64) - 1.0 / n).U[:, : n - 1].contiguous()
    basis = torch.kron(basis, torch.eye(3, dtype=F64))  # orthonormal [3N, 3(N-1)]
    s = std * torch.randn(6, 3 * (n - 1), dtype=F64)
    x = (s @ basis.T).reshape(6, n, 3)
    ref = torch.distributions.Normal(0.0, std).log_prob(s).sum(-1)
    assert torch.allclose(base.log_prob(x), ref, atol=1e-12)
    samples = base.sample(40000)
    assert float(samples.sum(1).abs().max()) <= 1e-12
    coords = samples.reshape(-1, 3 * n) @ basis  # should be i.i.d. N(0, std^2)
    cov = coords.T @ coords / coords.shape[0]
    assert float((cov - std**2 * torch.eye(3 * (n - 1), dtype=F64)).abs().max()) < 0.03


def test_mean_free_normal_errors():
    base = MeanFreeNormal(3)
    with pytest.raises(ValueError, match="positions are not centred"):
        base.log_prob(torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match=r"expected \[B, 3, 3\]"):
        base.log_prob(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="n_atoms: need at least 2"):
        MeanFreeNormal(1)
    with pytest.raises(ValueError, match="std: must be positive"):
        MeanFreeNormal(3, std=0.0)


def test_kabsch_and_hungarian_undo_a_rotation_and_permutation():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 6, 3, dtype=F64, generator=gen)
    ref = ref - ref.mean(1, keepdim=True)
    rot = random_rotation(F64, gen)
    perm = torch.tensor([0, 2, 1, 3, 5, 4])  # within classes {1, 2} and {4, 5}
    x = ref[:, perm] @ rot.T + 0.5
    classes = [0, 1, 1, 2, 3, 3]
    aligned = align_to_reference(x, ref, classes, iterations=3)
    assert float((aligned - ref).abs().max()) <= 1e-10
    assert float((kabsch_align(ref @ rot.T, ref) - ref).abs().max()) <= 1e-10
    # proper rotations only: a mirror image keeps its handedness (signed volumes)
    mirror = ref * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    aligned_mirror = kabsch_align(mirror, ref)

    def volume(p: Tensor) -> Tensor:
        return torch.linalg.det(p[:, 1:4] - p[:, :1])

    torch.testing.assert_close(volume(aligned_mirror), volume(mirror), rtol=1e-10, atol=1e-12)
    same = permute_identical_atoms(ref[:, perm], ref, classes)
    assert torch.equal(same, ref)
    with pytest.raises(ValueError, match="classes: expected 6 labels"):
        permute_identical_atoms(ref, ref, [0, 1])


def test_ot_pairing_recovers_a_shuffled_batch():
    x0 = torch.randn(32, 4, dtype=F64)
    shuffle = torch.randperm(32)
    x1 = x0[shuffle] + 1e-3 * torch.randn(32, 4, dtype=F64)
    j = ot_pairing(x0, x1)
    assert torch.equal(shuffle[j], torch.arange(32))


class MLPField(nn.Module):
    """A small time-dependent MLP field on ``R^D``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.time = TimeEmbedding(2)
        self.net = MLP(dim + self.time.dim, dim, (32, 32), "silu", zero_init=True)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
        return self.net(torch.cat([x, self.time(tt)], -1))


def test_flow_matching_learns_a_shifted_gaussian(tmp_path):
    torch.manual_seed(0)
    mean, std = torch.tensor([2.0, -1.0]), 0.5
    data = mean + std * torch.randn(4000, 2)
    field = MLPField(2)
    config = TrainConfig(steps=300, batch_size=128, lr=3e-3, seed=1, progress=False)
    losses = fit_flow_matching(field, StandardNormal(2), data, config, out_dir=tmp_path)
    assert len(losses) == 300 and all(math.isfinite(v) for v in losses)
    assert (tmp_path / "checkpoint.pt").is_file()
    flow = Flow(StandardNormal(2), CNF(field, (2,), ODEConfig(rtol=1e-5, atol=1e-5)))
    test = mean + std * torch.randn(2000, 2)
    with torch.no_grad():
        nll = -float(flow.log_prob(test).mean())
    true_nll = 2 * (0.5 * math.log(2 * math.pi * std**2) + 0.5)
    assert nll - true_nll < 0.1  # KL(p || q) estimate in nats
    # Same settings in the same folder: resumes at the end and runs no further steps.
    assert fit_flow_matching(field, StandardNormal(2), data, config, out_dir=tmp_path) == []


def test_flow_matching_resume_reproduces_uninterrupted_run(tmp_path):
    data = torch.randn(500, 3)
    config = TrainConfig(steps=12, batch_size=16, checkpoint_every=6, seed=3, progress=False)

    def run(out):
        torch.manual_seed(0)
        field = MLPField(3)
        fit_flow_matching(field, StandardNormal(3), data, config, out_dir=out)
        return field

    full = run(tmp_path / "a")
    # Interrupted after step 6 (checkpoint), then resumed.
    torch.manual_seed(0)
    part = MLPField(3)
    short = config
    seen = []

    def stop_at_six(step: int, logs: dict) -> None:
        seen.append(step)
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_flow_matching(
            part, StandardNormal(3), data, short, out_dir=tmp_path / "b", callback=stop_at_six
        )
    torch.manual_seed(0)
    resumed = MLPField(3)
    fit_flow_matching(resumed, StandardNormal(3), data, short, out_dir=tmp_path / "b")
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fm_sigma": -0.1}, "fm_sigma: must be finite and >= 0"),
        ({"fm_align_iterations": 0}, "fm_align_iterations: must be a positive integer"),
        ({"objective": "score-matching"}, "unknown objective 'score-matching'"),
    ],
)
def test_flow_matching_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_non_finite_flow_matching_losses_are_skipped_then_stop_the_run():
    """The Trainer's one policy: skip and count, stop after max_nonfinite skipped steps."""

    class Exploding(MLPField):
        def forward(self, t, x, context=None):
            return super().forward(t, x, context) * math.inf

    config = TrainConfig(steps=50, batch_size=8, max_nonfinite=3, progress=False)
    with pytest.raises(TrainingDivergedError, match=r"4 steps skipped .* non-finite loss"):
        fit_flow_matching(Exploding(2), StandardNormal(2), torch.randn(100, 2), config)


def test_every_configurable_objective_is_registered_and_flow_matching_needs_a_cnf():
    from confflow.errors import InputError
    from confflow.training.config import OBJECTIVE_NAMES
    from confflow.training.objectives import OBJECTIVES
    from confflow.transforms import ElementwiseAffine

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES
    flow = Flow(StandardNormal(2), ElementwiseAffine(2))
    config = TrainConfig(objective="flow-matching", steps=2, batch_size=4, progress=False)
    with pytest.raises(InputError, match="needs exactly one continuous layer"):
        Trainer(flow, config, torch.randn(10, 2)).fit()


def test_a_custom_objective_plugs_into_the_trainer():
    """The Trainer runs any Objective: here maximum likelihood written out by hand."""
    from confflow.training.objectives import Objective, StepLoss
    from confflow.transforms import ElementwiseAffine

    class HandNLL(Objective):
        def step(self, model, batch, generator):
            return StepLoss(-model.log_prob(batch).mean())

        def monitor(self, metrics):
            return 0.0

    torch.manual_seed(0)
    data = 3.0 + 0.5 * torch.randn(2000, 2)
    flow = Flow(StandardNormal(2), ElementwiseAffine(2))
    config = TrainConfig(steps=400, batch_size=256, lr=0.05, warmup=0, progress=False)
    Trainer(flow, config, data, objective=HandNLL()).fit()
    with torch.no_grad():
        x, _ = flow.sample(4000)
    assert torch.allclose(x.mean(0), torch.tensor([3.0, 3.0]), atol=0.1)
    assert torch.allclose(x.std(0), torch.tensor([0.5, 0.5]), atol=0.1)
