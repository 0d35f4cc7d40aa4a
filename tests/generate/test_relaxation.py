"""Relaxed torsional training: the learned relaxation energy and the relax-fit-refine rounds."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from confflow.generate import GenerateConfig
from confflow.generate.model import (
    SCHEDULES,
    _refine_trainer,
    build_model,
    model_layout,
)
from confflow.generate.relaxation import ROUND_SAMPLES, RelaxationEstimate, refine_relaxed
from tests.coordinates.conftest import molecule


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _target(theta: torch.Tensor) -> torch.Tensor:
    """A smooth periodic relaxation energy in kT (between 0.5 and 4)."""
    return 2.0 + theta[:, 0].cos() + 0.5 * (theta[:, 1] - theta[:, 0]).sin()


def _strain(theta: torch.Tensor) -> torch.Tensor:
    """A frozen-structure strain in kT (0 to 20) that the relaxation energy partly follows."""
    return 10.0 * (1.0 + theta[:, 1].cos())


def test_estimate_learns_a_smooth_periodic_function_of_torsions_and_strain():
    torch.manual_seed(0)
    estimate = RelaxationEstimate(2)
    theta = (2 * torch.rand(4000, 2, generator=_gen(0)) - 1) * math.pi
    target = _target(theta) + 0.1 * _strain(theta)
    estimate.fit(theta, _strain(theta), target, steps=1500, generator=_gen(1))
    test = (2 * torch.rand(1000, 2, generator=_gen(2)) - 1) * math.pi
    with torch.no_grad():
        error = estimate(test, _strain(test)) - _target(test) - 0.1 * _strain(test)
        assert float(error.square().mean().sqrt()) < 0.1  # kT
        shifted = estimate(test + 2 * math.pi, _strain(test))
        assert torch.allclose(shifted, estimate(test, _strain(test)), atol=1e-4)
        far = 50 * torch.randn(1000, 2, generator=_gen(3))
        assert (estimate(far, 1e3 * torch.randn(1000, generator=_gen(4))) >= 0).all()


def test_estimate_is_differentiable_in_torsions_and_strain():
    estimate = RelaxationEstimate(3).double()
    theta = torch.randn(5, 3, dtype=torch.float64, generator=_gen(4), requires_grad=True)
    strain = torch.rand(5, dtype=torch.float64, generator=_gen(5)).add(0.5).requires_grad_(True)
    grad, grad_strain = torch.autograd.grad(estimate(theta, strain).sum(), (theta, strain))
    h = 1e-6
    with torch.no_grad():
        for k in range(3):
            step = torch.zeros_like(theta)
            step[:, k] = h
            numeric = (estimate(theta + step, strain) - estimate(theta - step, strain)) / (2 * h)
            assert torch.allclose(grad[:, k], numeric, atol=1e-7)
        numeric = (estimate(theta, strain + h) - estimate(theta, strain - h)) / (2 * h)
        assert torch.allclose(grad_strain, numeric, atol=1e-7)


def _model(tmp_path, relax: bool = True, smiles: str = "CCCCO"):
    mol = molecule(smiles)
    config = GenerateConfig(smiles, tmp_path / "m.sdf", relax=relax, progress=False)
    reference = mol.embed(1, seed=1, mmff=True)[0]
    return build_model(mol, config, model_layout(mol, config, reference, reference[None]))


def test_rounds_measure_the_exact_ess_and_keep_the_best_model(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = _model(tmp_path)
    with torch.no_grad():
        data, _ = model.sample(40, _gen(5))
    plan = SCHEDULES["relaxed"]
    common = {"seed": 0, "device": "cpu", "progress": False, "checkpoint_every": 0}
    trainer = _refine_trainer(model, data, 1e3, common, 32, plan)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = refine_relaxed(model, trainer, data, 10, 100, time.perf_counter() + 8.0, seed=0)
    assert out["rounds"] >= 1 and not out["stopped_early"]
    history = out["ess_history"]
    assert len(history) in (out["rounds"], out["rounds"] + 1)
    assert out["evaluations"] == data.shape[0] + ROUND_SAMPLES * len(history)
    assert len(out["estimate_rms"]) == len(history)
    assert all(0 <= rms < 20 for rms in out["estimate_rms"])  # kT, below the clip
    assert 0 < out["best_ess"] <= 1 and out["best_ess"] == max(history)
    assert trainer.step == 10 * out["rounds"]
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed == (history.index(max(history)) > 0)


def test_rounds_stop_after_patience_without_a_better_ess(tmp_path):
    model = _model(tmp_path)
    with torch.no_grad():
        data, _ = model.sample(20, _gen(6))
    common = {"seed": 0, "device": "cpu", "progress": False, "checkpoint_every": 0}
    # a vanishing learning rate: the model stays put, so the ESS only fluctuates
    still = dataclasses.replace(SCHEDULES["relaxed"], lr=1e-12)
    trainer = _refine_trainer(model, data, 1e3, common, 16, still)
    out = refine_relaxed(model, trainer, data, 2, 1, time.perf_counter() + 60.0, seed=0)
    history = out["ess_history"]
    assert out["stopped_early"] and len(history) >= 2
    assert history[-1] <= max(history[:-1]) == out["best_ess"]  # the round that did not improve


def test_rounds_need_a_relaxed_energy(tmp_path):
    model = _model(tmp_path, relax=False)
    common = {"seed": 0, "device": "cpu", "progress": False, "checkpoint_every": 0}
    data = torch.zeros(4, model.energy.embedding.dim)
    trainer = _refine_trainer(model, data, 1e3, common, 4, SCHEDULES["relaxed"])
    with pytest.raises(ValueError, match="not a RelaxedTorsionalEnergy"):
        refine_relaxed(model, trainer, data, 2, 1, time.perf_counter() + 1.0, seed=0)
