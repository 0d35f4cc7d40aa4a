"""FAB: the alpha-2 surrogate's gradient, the replay buffer, and a data-free fit of a double well.

The double well ``u(x) = x0^4 - 6 x0^2 + x0 + x1^2 / 2`` (9 kT barrier, unequal wells) has
exact samples and ``log Z`` by quadrature.
"""

from __future__ import annotations

import math

import pytest
import torch

from confflow.models import BGConfig, ConfigError, TargetConfig, build_boltzmann_generator
from confflow.training import TrainConfig, Trainer
from confflow.training.fab import FAB, ReplayBuffer, alpha2_surrogate

B, C = 6.0, 1.0
SMALL_FLOW = {"layers": 4, "hidden": [32, 32], "bins": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    torch.manual_seed(0)
    cfg = BGConfig(TargetConfig("double-well", {"dim": 2, "b": B, "c": C}), flow=SMALL_FLOW)
    return build_boltzmann_generator(cfg)


def test_alpha2_surrogate_gradient_matches_finite_differences():
    """On a quadrature grid the surrogate's gradient is that of ``log int p^2 / q``."""
    model = _model().double()
    s = torch.linspace(-3.5, 3.5, 161, dtype=torch.float64)
    grid = torch.cartesian_prod(s, 1.6 * s)
    log_p = -model.reduced_energy(grid)

    def alpha2() -> torch.Tensor:
        return torch.logsumexp(2 * log_p - model.log_prob(grid), 0)

    log_q = model.log_prob(grid)
    loss = alpha2_surrogate(log_q, 2 * log_p - log_q)
    params = [p for p in model.flow.parameters() if p.numel() > 0]
    grads = torch.autograd.grad(loss, params)
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for p, g in zip(params, grads, strict=True):
        flat, gflat = p.data.view(-1), g.view(-1)
        for i in torch.randint(p.numel(), (2,), generator=gen).tolist():
            h = 1e-5
            with torch.no_grad():
                flat[i] += h
                up = float(alpha2())
                flat[i] -= 2 * h
                down = float(alpha2())
                flat[i] += h
            fd = (up - down) / (2 * h)
            assert abs(float(gflat[i]) - fd) < 1e-3 * abs(fd) + 1e-6, (float(gflat[i]), fd)
            checked += 1
    assert checked >= 8


def test_replay_buffer_draws_by_weight_and_follows_the_flow():
    buffer = ReplayBuffer(capacity=6)
    x = torch.arange(8.0)[:, None]
    log_w = torch.tensor([0.0, 0.0, -math.inf, 0.0, 0.0, 0.0, 0.0, math.log(1e6)])
    buffer.add(x, log_w, torch.zeros(8))
    assert len(buffer) == 6  # the non-finite weight is dropped, the oldest leaves
    assert buffer.x[:, 0].tolist() == [1.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    gen = torch.Generator().manual_seed(0)
    draws = [int(buffer.x[buffer.draw(1, gen)][0, 0]) for _ in range(50)]
    assert draws.count(7) >= 49
    # the flow now gives the drawn sample a higher density: its weight for p^2/q falls
    index = torch.tensor([5])
    buffer.reweight(index, torch.tensor([2.0]))
    assert math.isclose(float(buffer.log_w[5]), math.log(1e6) - 2.0, rel_tol=1e-6)
    assert float(buffer.log_q[5]) == 2.0
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)


def test_data_free_fab_fit_reaches_the_true_nll():
    model = _model()
    cfg = TrainConfig(
        objective="fab",
        steps=500,
        kl_batch_size=256,
        lr=3e-3,
        warmup=20,
        val_every=250,
        val_batch_size=2048,
        checkpoint_every=0,
        progress=False,
        device="cpu",
        fab_stages=4,
        fab_leapfrog=3,
    )
    trainer = Trainer(model, cfg)
    result = trainer.fit()
    assert isinstance(trainer.objective, FAB)
    assert result.skipped == 0
    # every fifth step runs AIS: 256 chains, 1 + 4 x (3 + 1) evaluations; two validations
    assert result.target_evaluations == 100 * 256 * 17 + 2 * 2048
    test = model.energy.sample(20_000, torch.Generator().manual_seed(3))
    with torch.no_grad():
        model_nll = -model.log_prob(test.float()).double().mean().item()
    truth = model.energy.log_partition()
    true_nll = (model.reduced_energy(test) + truth).mean().item()
    assert model_nll - true_nll < 0.05, (model_nll, true_nll)
    assert model_nll - true_nll > -0.02


@pytest.mark.parametrize(
    ("field", "value"), [("fab_accept", 1.0), ("fab_stages", 0), ("fab_replay", -1)]
)
def test_bad_fab_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(objective="fab", **{field: value})
