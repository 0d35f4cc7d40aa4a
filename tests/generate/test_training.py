"""The generator's refinement loop: its stop rule with a confirming ESS check.

A one-sample ESS check always reads 100%; a refinement told to stop at 90% therefore stops
before its first step, unless a larger check must confirm it. The untrained flow's ESS on
the double well is far below 90%, so with confirmation the refinement runs on.
"""

import dataclasses

from confflow.energies.analytic import DoubleWell
from confflow.generate import GenerateConfig
from confflow.generate.training import Schedule, train_model
from confflow.models import BGConfig, TargetConfig, build_boltzmann_generator

PLAN = Schedule(
    nll_share=0.0,
    kl_weight=1.0,
    forward_weight=0.8,
    kl_batch_size=64,
    lr=1e-4,
    segment=2,
    patience=1000,
    ess_samples=1,
    stop_ess=0.9,
)


def _model():
    target = TargetConfig("double-well", {"dim": 2, "b": 6.0, "c": 1.0})
    flow = {"layers": 2, "hidden": [16], "bins": 8}
    return build_boltzmann_generator(BGConfig(target, flow=flow))


def _refine(tmp_path, plan: Schedule):
    config = GenerateConfig("C", tmp_path / "x.sdf", budget=4.0, device="cpu", progress=False)
    data = DoubleWell(dim=2, b=6.0, c=1.0).sample(64).float()
    return train_model(_model(), data, config, maximum_likelihood=False, schedule=plan)


def test_an_unconfirmed_check_stops_at_once(tmp_path):
    summary = _refine(tmp_path, PLAN)
    assert summary.stopped_early
    assert summary.ess_history == [1.0]
    assert summary.refine_steps == 0


def test_a_confirming_check_keeps_the_refinement_going(tmp_path):
    summary = _refine(tmp_path, dataclasses.replace(PLAN, confirm_samples=2048))
    assert len(summary.ess_history) > 2  # ran on to the budget
    assert max(summary.ess_history) < 0.9  # every reading is the confirming check's
    assert not summary.stopped_early
