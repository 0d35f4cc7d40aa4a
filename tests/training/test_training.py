"""Trainer on a double well with a known answer; NaN guard; early stopping; checkpoints.

The double well ``u(x) = x0^4 - 6 x0^2 + x0 + x1^2 / 2`` has a 9 kT barrier and wells of
unequal weight; the free-energy difference between ``x0 > 0`` and ``x0 < 0`` comes from 1-D
quadrature (exact to 1e-10). Noise of the flow estimate: its bootstrap standard deviation.
"""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from confflow.energies.analytic import DoubleWell
from confflow.models import BGConfig, ConfigError, TargetConfig, build_boltzmann_generator
from confflow.reweighting import free_energy_difference, kish_ess
from confflow.training import (
    CheckpointError,
    CheckpointMismatchError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    load_generator,
    read_checkpoint,
    write_checkpoint,
)

B, C = 6.0, 1.0
SMALL_FLOW = {"layers": 4, "hidden": [32, 32], "bins": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dim: int = 2):
    cfg = BGConfig(TargetConfig("double-well", {"dim": dim, "b": B, "c": C}), flow=SMALL_FLOW)
    return build_boltzmann_generator(cfg)


def _true_delta_f() -> float:
    def u(s):
        return s**4 - B * s**2 + C * s

    left = integrate.quad(lambda s: math.exp(-u(s)), -np.inf, 0, epsrel=1e-12)[0]
    right = integrate.quad(lambda s: math.exp(-u(s)), 0, np.inf, epsrel=1e-12)[0]
    return -math.log(right / left)


def _exact_samples(n: int, seed: int) -> torch.Tensor:
    return DoubleWell(dim=2, b=B, c=C).sample(n, torch.Generator().manual_seed(seed)).float()


def _check_known_answer(model) -> None:
    with torch.no_grad():
        x, log_q = model.sample(20_000, torch.Generator().manual_seed(7))
        log_w = model.log_weights(x, log_q)
    ess = kish_ess(log_w)
    gen = torch.Generator().manual_seed(8)
    df = free_energy_difference(log_w, x[:, 0] < 0, x[:, 0] >= 0, generator=gen)
    truth = _true_delta_f()
    assert ess > 0.7, ess
    # reweighting is consistent: the error is the bootstrap noise (3 sd) plus 0.05 kT
    assert abs(df.value - truth) < 3 * df.std + 0.05, (df, truth)


def test_reverse_kl_recovers_double_well():
    model = _model()
    cfg = TrainConfig(
        steps=800, kl_weight=1.0, lr=3e-3, warmup=20, val_every=100, progress=False, device="cpu"
    )
    result = Trainer(model, cfg).fit()
    assert result.skipped == 0
    assert result.target_evaluations == 800 * cfg.kl_batch_size + 8 * cfg.val_batch_size
    assert result.metrics["ess"] > 0.7
    _check_known_answer(model)


@pytest.mark.parametrize(("batch", "replay"), [(256, 0), (64, 1024)])
def test_importance_weighted_forward_kl_recovers_double_well(batch, replay):
    """Energy-only training with 80% importance-weighted forward KL (no data); with small
    batches, the forward term pooled over the last 1024 samples."""
    model = _model()
    cfg = TrainConfig(
        steps=800,
        kl_batch_size=batch,
        kl_weight=1.0,
        forward_weight=0.8,
        forward_replay=replay,
        lr=3e-3,
        warmup=20,
        val_every=100,
        progress=False,
        device="cpu",
    )
    result = Trainer(model, cfg).fit()
    assert result.skipped == 0
    assert result.target_evaluations == 800 * batch + 8 * cfg.val_batch_size
    assert result.metrics["ess"] > 0.7
    _check_known_answer(model)


def test_energy_loss_terms():
    """forward_weight 0 is reverse KL; 1 is -sum softmax(log_w) log q on the same samples."""
    from confflow.training import energy_loss, reverse_kl_loss

    model = _model()
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rev, _ = reverse_kl_loss(model, 64, 1e3, 1e2, torch.Generator().manual_seed(3))
    same, _ = energy_loss(model, 64, 1e3, 1e2, 0.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(same, rev)
    fwd, log_w1 = energy_loss(model, 64, 1e3, 1e2, 1.0, torch.Generator().manual_seed(3))
    x, _ = model.sample(64, torch.Generator().manual_seed(3))
    expected = -(torch.softmax(log_w1, 0) * model.log_prob(x).double()).sum()
    torch.testing.assert_close(fwd.double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="forward_weight: must be in"):
        energy_loss(model, 8, 1e3, 1e2, 1.5)


def test_energy_loss_forward_term_pools_a_replay_buffer():
    """With a buffer the forward term runs over the recent samples, each with its own weight."""
    from confflow.training import energy_loss
    from confflow.training.replay import ReplayBuffer

    model = _model()
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    buffer = ReplayBuffer(capacity=100)
    plain, _ = energy_loss(model, 64, 1e3, 1e2, 1.0, torch.Generator().manual_seed(3))
    first, log_w1 = energy_loss(model, 64, 1e3, 1e2, 1.0, torch.Generator().manual_seed(3), buffer)
    torch.testing.assert_close(first, plain)  # an empty buffer: the step's own samples
    second, log_w2 = energy_loss(model, 64, 1e3, 1e2, 1.0, torch.Generator().manual_seed(4), buffer)
    assert len(buffer) == 100  # the oldest 28 left
    x1, _ = model.sample(64, torch.Generator().manual_seed(3))
    x2, _ = model.sample(64, torch.Generator().manual_seed(4))
    x, log_w = torch.cat([x1[28:], x2]), torch.cat([log_w1[28:], log_w2])
    expected = -(torch.softmax(log_w, 0) * model.log_prob(x).double()).sum()
    torch.testing.assert_close(second.double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="forward_replay"):
        TrainConfig(forward_replay=-1)


def test_mixed_training_recovers_double_well():
    model = _model()
    data = _exact_samples(20_000, seed=1)
    cfg = TrainConfig(
        steps=400, kl_weight=0.5, lr=3e-3, warmup=20, val_every=100, progress=False, device="cpu"
    )
    result = Trainer(model, cfg, train_data=data, val_data=_exact_samples(5000, seed=2)).fit()
    assert result.skipped == 0
    # validation NLL close to the entropy of the target: E_p[-log p] = E_p[u] + log Z
    target = model.energy
    val = _exact_samples(5000, seed=2).double()
    entropy = float(-target.log_prob(val).mean())
    assert result.metrics["val_nll"] - entropy < 0.05
    _check_known_answer(model)


def test_nan_in_data_batches_is_skipped_and_logged(tmp_path):
    data = _exact_samples(64, seed=3)
    data[5, 1] = math.nan
    cfg = TrainConfig(
        steps=40, batch_size=16, lr=1e-3, val_every=20, progress=False, device="cpu", seed=4
    )
    model = _model()
    result = Trainer(model, cfg, train_data=data, out_dir=tmp_path).fit()
    # replay the mini-batch draws: the batches that contain row 5 are the skipped ones
    gen = torch.Generator().manual_seed(4)
    expected = sum(int((torch.randint(64, (16,), generator=gen) == 5).any()) for _ in range(40))
    assert 0 < expected < 40
    assert result.skipped == expected
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r.get("event") == "skipped"]
    assert len(skipped) == expected
    assert {r["reason"] for r in skipped} == {"non-finite values in the data batch"}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads((tmp_path / "final.json").read_text())["skipped"] == expected


def test_too_many_skipped_steps_stop_with_a_clear_message():
    data = torch.full((32, 2), math.nan)
    cfg = TrainConfig(steps=50, batch_size=8, max_nonfinite=3, progress=False, device="cpu")
    with pytest.raises(TrainingDivergedError, match=r"4 steps skipped \(> max_nonfinite = 3\)"):
        Trainer(_model(), cfg, train_data=data).fit()


def test_early_stopping_when_validation_stalls(tmp_path):
    data = _exact_samples(256, seed=5)
    # a learning rate far below float32 resolution: parameters, hence val NLL, never change
    cfg = TrainConfig(
        steps=100,
        lr=1e-12,
        weight_decay=0.0,
        val_every=10,
        patience=2,
        progress=False,
        device="cpu",
    )
    result = Trainer(_model(), cfg, train_data=data, val_data=data, out_dir=tmp_path).fit()
    assert result.stopped_early
    assert result.step == 30
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 30


@pytest.mark.parametrize("kl_weight", [0.0, 0.5, 1.0])
def test_best_model_minimises_the_validation_form_of_the_training_loss(tmp_path, kl_weight):
    data = _exact_samples(2000, seed=7)
    cfg = TrainConfig(
        steps=80,
        kl_weight=kl_weight,
        lr=3e-3,
        warmup=5,
        val_every=10,
        val_batch_size=512,
        progress=False,
        device="cpu",
    )
    # validation data off the target, so that its NLL and the reverse KL disagree on the best step
    shifted = data[:500] + torch.tensor([0.0, 2.0])
    Trainer(_model(), cfg, train_data=data, val_data=shifted, out_dir=tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r.get("event") == "validation"]
    losses = [(1 - kl_weight) * r["val_nll"] + kl_weight * r["kl"] for r in validations]
    best = validations[losses.index(min(losses))]["step"]
    assert len({round(v, 6) for v in losses}) > 1
    assert read_checkpoint(tmp_path / "best.pt")["step"] == best


def test_fit_more_extends_training_and_snapshot_is_a_copy():
    data = _exact_samples(256, seed=6)
    cfg = TrainConfig(steps=5, batch_size=32, val_every=10**6, progress=False, device="cpu")
    trainer = Trainer(_model(), cfg, train_data=data)
    trainer.fit(resume=False)
    before = trainer.snapshot()
    result = trainer.fit_more(7)
    assert result.step == 12 and trainer.step == 12 and trainer.config.steps == 12
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)  # training moved on
    trainer.model.load_state_dict(before)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_ess_checks_draw_the_validation_samples_or_independent_ones():
    data = _exact_samples(256, seed=6)
    cfg = TrainConfig(steps=3, batch_size=32, val_batch_size=64, progress=False, device="cpu")
    trainer = Trainer(_model(), cfg, train_data=data)
    trainer.fit(resume=False)
    trainer.model.train()
    checks = [trainer.ess_check(64), trainer.ess_check(64, salt=1), trainer.ess_check(64, 1)]
    assert trainer.model.training  # a check leaves the mode as it found it
    assert checks[0]["ess"] == pytest.approx(trainer.validate()["ess"], rel=1e-9)
    assert checks[2]["ess"] == pytest.approx(checks[1]["ess"], rel=1e-9)  # reproducible
    assert checks[1]["ess"] != pytest.approx(checks[0]["ess"], rel=1e-6)  # other samples
    assert trainer.evaluations >= 4 * 64
    with pytest.raises(ValueError, match="needs a Boltzmann generator"):
        Trainer(_model().flow, cfg, train_data=data).ess_check(8)


def test_checkpoint_round_trip_and_identity(tmp_path):
    model = _model()
    cfg = TrainConfig(steps=20, kl_weight=1.0, val_every=10, progress=False, device="cpu")
    Trainer(model, cfg, out_dir=tmp_path).fit()
    data = read_checkpoint(tmp_path / "checkpoint.pt")
    assert data["step"] == 20 and data["version"] and data["train_config"]["steps"] == 20
    loaded, _ = load_generator(tmp_path / "checkpoint.pt")
    x = torch.randn(10, 2)
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x).detach())
    # another system: a 3-D double well refuses the checkpoint
    other = Trainer(_model(dim=3), cfg, out_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="written for another system"):
        other.fit()


def test_resume_with_other_training_settings_is_refused(tmp_path):
    """A changed learning rate or loss mix is refused; a longer run resumes."""
    cfg = TrainConfig(steps=10, kl_weight=1.0, lr=1e-3, progress=False, device="cpu")
    Trainer(_model(), cfg, out_dir=tmp_path).fit()
    for change, message in (({"lr": 2e-3}, r"lr: 0\.001 -> 0\.002"), ({"seed": 5}, "seed: 0 -> 5")):
        changed = TrainConfig(**{**cfg.to_dict(), **change})
        with pytest.raises(CheckpointMismatchError, match=f"training settings differ.*{message}"):
            Trainer(_model(), changed, out_dir=tmp_path).fit()
    longer = TrainConfig(**{**cfg.to_dict(), "steps": 15})
    assert Trainer(_model(), longer, out_dir=tmp_path).fit().resumed_from == 10


def test_checkpoint_of_another_molecule_is_refused(tmp_path):
    cfg = TrainConfig(steps=1, kl_weight=1.0, progress=False, device="cpu")
    flow = {"layers": 2, "hidden": [8]}
    ethanol = build_boltzmann_generator(
        BGConfig(TargetConfig("smiles", {"smiles": "CCO"}), flow=flow)
    )
    write_checkpoint(tmp_path / "checkpoint.pt", Trainer(ethanol, cfg).state())
    propanol = build_boltzmann_generator(
        BGConfig(TargetConfig("smiles", {"smiles": "CCCO"}), flow=flow)
    )
    with pytest.raises(
        CheckpointMismatchError, match=r"another system \(smiles \{'smiles': 'CCO'\}"
    ):
        Trainer(propanol, cfg, out_dir=tmp_path).fit()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "corrupt or not a confflow checkpoint"),
        (b"garbage" * 100, "corrupt or not a confflow checkpoint"),
        ("truncated", "corrupt or not a confflow checkpoint"),
        ("foreign", "not a confflow checkpoint"),
    ],
)
def test_corrupt_checkpoints_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content == "truncated":
        write_checkpoint(path, Trainer(_model(), TrainConfig(kl_weight=1.0, device="cpu")).state())
        path.write_bytes(path.read_bytes()[:1000])
    elif content == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full halfway")  # torch.save fails after opening the file


def test_failed_checkpoint_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = Trainer(_model(), TrainConfig(kl_weight=1.0, device="cpu")).state()
    write_checkpoint(path, state)
    with pytest.raises(RuntimeError, match="disk full halfway"):
        write_checkpoint(path, {**state, "step": 99, "extra": _Unpicklable()})
    assert read_checkpoint(path)["step"] == state["step"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_trainer_input_errors():
    with pytest.raises(ValueError, match=r"train_data: required for kl_weight = 0.0"):
        Trainer(_model(), TrainConfig(device="cpu"))
    with pytest.raises(ValueError, match=r"train_data: expected \[M, 2\]"):
        Trainer(_model(), TrainConfig(device="cpu"), train_data=torch.zeros(5, 3))


def test_wall_clock_budget_stops_and_checkpoints(tmp_path):
    cfg = TrainConfig(steps=1000, kl_weight=1.0, val_every=500, progress=False, device="cpu")
    result = Trainer(_model(), cfg, out_dir=tmp_path).fit(max_seconds=0.0)
    assert result.out_of_time and result.step == 1
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1
    assert '"event": "out_of_time"' in (tmp_path / "metrics.jsonl").read_text()
