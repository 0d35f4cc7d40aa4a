"""Training steps per second of the alanine dipeptide Boltzmann generator, per objective.

The default flow of ``benchmarks/aldp.py`` (internal coordinates, spline couplings), its
normalisation from the molecule (no MD data needed), on the "aldp" system (Amber99SB-ILDN +
OBC implicit solvent, the torch OpenMM-System energy). Per objective, the time of
``--steps`` optimiser steps after ``--warmup`` steps, median of ``--repeats``:

* ``reverse-kl`` — reverse KL with ``--batch`` flow samples per step (one energy gradient per
  sample);
* ``fab`` — FAB with ``--batch`` AIS chains (``fab_stages`` x ``fab_leapfrog`` HMC gradients
  every fifth step, buffer steps in between).

``evals_per_s`` counts target energy evaluations. Each repeat ends with the trainer's
validation (``--batch`` flow samples), timed with it. Runs on ``--device cpu`` or ``cuda``.

Usage:
    python benchmarks/train_speed.py [--device cuda] [--batch 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _report import report_metrics

from confflow.models import BGConfig, build_boltzmann_generator
from confflow.training import TrainConfig, Trainer
from confflow.training.spec import target_for_system

OBJECTIVES = {
    "reverse-kl": {"kl_weight": 1.0},
    "fab": {"objective": "fab"},
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def steps_per_second(objective: str, args: argparse.Namespace) -> tuple[float, float]:
    """``(steps/s, target evaluations/s)`` of one objective, median of the repeats."""
    torch.manual_seed(0)
    model = build_boltzmann_generator(BGConfig(target_for_system("aldp")))
    config = TrainConfig(
        steps=args.warmup,
        kl_batch_size=args.batch,
        val_every=10**9,
        val_batch_size=args.batch,
        checkpoint_every=0,
        device=args.device,
        progress=False,
        **OBJECTIVES[objective],
    )
    trainer = Trainer(model, config)
    trainer.fit(resume=False)
    rates, eval_rates = [], []
    for _ in range(args.repeats):
        evaluations = trainer.evaluations
        _sync(args.device)
        start = time.perf_counter()
        trainer.fit_more(args.steps)
        _sync(args.device)
        elapsed = time.perf_counter() - start
        rates.append(args.steps / elapsed)
        eval_rates.append((trainer.evaluations - evaluations) / elapsed)
    return statistics.median(rates), statistics.median(eval_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=256, help="flow samples / AIS chains")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, object] = {"device": args.device, "batch": args.batch}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
    for objective in args.objectives:
        steps, evals = steps_per_second(objective, args)
        out[f"{objective}_steps_per_s"] = steps
        out[f"{objective}_evals_per_s"] = evals
    report_metrics(out, args.json)


if __name__ == "__main__":
    main()
