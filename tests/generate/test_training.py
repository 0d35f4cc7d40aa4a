"""The generator's refinement loop: one segment at least, a stop at ``stop_ess``, restarts at a
smaller learning rate on a plateau, and the best model chosen by confirmed checks.

A one-sample ESS check always reads 100%: a refinement told to stop at 90% stops after its
first segment (a level's refinement round always trains on its new surrogate). At 2.0 (never
reached) it runs to its budget.
"""

import dataclasses

import pytest

from confflow.energies.analytic import DoubleWell
from confflow.generate import GenerateConfig
from confflow.generate.training import SCHEDULES, Schedule, train_model
from confflow.models import BGConfig, TargetConfig, build_boltzmann_generator

# the torsional schedule with one-sample checks and short segments
PLAN = dataclasses.replace(
    SCHEDULES["torsional"], segment=2, patience=1000, ess_samples=1, stop_ess=0.9
)


def _refine(tmp_path, plan: Schedule):
    target = TargetConfig("double-well", {"dim": 2, "b": 6.0, "c": 1.0})
    model = build_boltzmann_generator(
        BGConfig(target, flow={"layers": 2, "hidden": [16], "bins": 8})
    )
    config = GenerateConfig("C", tmp_path / "x.sdf", budget=2.0, device="cpu", progress=False)
    data = DoubleWell(dim=2, b=6.0, c=1.0).sample(64).float()
    return train_model(model, data, config, maximum_likelihood=False, schedule=plan)


def test_a_check_at_the_target_stops_after_one_segment(tmp_path):
    summary = _refine(tmp_path, PLAN)
    assert summary.stopped_early
    assert summary.ess_history == pytest.approx([1.0, 1.0], abs=1e-12)
    assert summary.refine_steps == PLAN.segment


def test_without_a_reachable_target_the_budget_ends_it(tmp_path):
    summary = _refine(tmp_path, dataclasses.replace(PLAN, stop_ess=2.0))
    assert not summary.stopped_early
    assert summary.refine_steps > 2 and len(summary.ess_history) > 2


def test_a_check_that_beats_the_best_is_confirmed_and_the_confirmation_decides(tmp_path):
    # two-sample checks are noisy: many beat the best, and their four-sample confirmations differ
    summary = _refine(tmp_path, dataclasses.replace(PLAN, ess_samples=2, stop_ess=2.0))
    confirmations = iter(summary.confirmed_ess)
    best = summary.ess_history[0]
    for check in summary.ess_history[1:]:
        if check > best:
            best = max(best, next(confirmations))
    assert next(confirmations, None) is None  # one confirmation per check above the best
    assert summary.best_ess == best
    assert summary.confirmed_ess, "no check beat the starting model"
    assert any(c not in summary.ess_history for c in summary.confirmed_ess)


@pytest.mark.parametrize("cuts", [0, 2])
def test_a_plateau_restarts_at_a_smaller_learning_rate_before_it_stops(tmp_path, cuts):
    # one-sample checks read 100%: none beats the start, each segment is a plateau of patience 1
    plan = dataclasses.replace(PLAN, patience=1, stop_ess=2.0, lr_cuts=cuts)
    summary = _refine(tmp_path, plan)
    assert summary.stopped_early
    assert summary.lr_cuts == cuts
    assert summary.refine_steps == (cuts + 1) * plan.segment
    assert summary.best_ess == pytest.approx(1.0, abs=1e-12) and not summary.confirmed_ess
