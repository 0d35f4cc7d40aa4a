"""Equivariant CNF (flow matching) vs coupling flow on alanine dipeptide (``aldp``, 300 K).

Trains, each within ``--budget`` seconds on the MD training split:

* ``cnf`` — a continuous normalizing flow on Cartesian positions (22 atoms, the
  centre-of-mass-free 63-dimensional subspace) with an EGNN (``--field egnn``) or e3nn
  vector field, trained by conditional flow matching with minibatch OT and Kabsch + Hungarian
  alignment (atoms exchangeable within graph-symmetry classes, e.g. methyl hydrogens);
* ``coupling`` — the Boltzmann generator of ``confflow.models`` (spline couplings over
  internal coordinates) by maximum likelihood,

then evaluates both on the same footing:

* ``*_nll`` — mean -log q of the MD test frames (nats). The CNF's density lives on the
  mean-free subspace and is rotation invariant, the coupling flow's on the canonical pose, so
  the two NLLs are not directly comparable;
* ``*_ess`` — Kish ESS fraction of ``--samples`` flow samples reweighted to the target, with
  the exact divergence for the CNF; samples whose alpha-carbon chirality differs from the MD
  frames are dropped before reweighting (``*_wrong_chirality`` is their fraction);
* ``*_rama_tv`` — total variation between (phi, psi) histograms (36 x 36) of the MD test frames
  and the reweighted samples;
* ``cnf_nfe`` — vector-field evaluations per integration (sampling with likelihood);
* ``*_samples_per_s`` — samples with exact log-likelihood per second;
* ``*_logw_std`` — standard deviation of the log-weights (nats), readable where the Kish ESS
  of a small sample says little.

The flow-matching schedule (cosine decay) is sized from 20 timed steps to end within the
budget. ``--coupling-budget`` gives the coupling flow its own training time; ``--save-field``
writes the trained CNF field (state dict, arguments, training figures) and ``--load-field``
evaluates such a file instead of training (same ``--field``, ``--hidden``, ``--layers``);
``--solver``, ``--rtol`` and ``--step-size`` choose the integrator for sampling and test NLL.

Usage:
    python benchmarks/cnf.py [--budget 1800] [--samples 10000] [--device cpu|cuda] [--json out]
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from _report import report_metrics

from confflow.coordinates.chirality import StereoCheck
from confflow.datasets import get_recipe, load
from confflow.distributions import Flow, MeanFreeNormal
from confflow.energies import ALDP_PHI, ALDP_PSI
from confflow.models import BGConfig, FlowConfig, build_boltzmann_generator
from confflow.models.cartesian import symmetry_classes
from confflow.nn import EGNN
from confflow.reweighting import kish_ess, log_weights, torsion
from confflow.training import TrainConfig, Trainer, fit_flow_matching, write_checkpoint
from confflow.training.spec import target_for_system
from confflow.transforms import CNF, ODEConfig


def log(message: str) -> None:
    """Progress line on stderr."""
    print(f"[cnf {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rama_tv(x: torch.Tensor, log_w: torch.Tensor, ref: torch.Tensor, bins: int = 36) -> float:
    """Total variation between weighted (phi, psi) histograms of ``x`` and of ``ref``."""

    def hist(pos: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        edges = torch.linspace(-math.pi, math.pi, bins + 1, dtype=torch.float64)[1:-1]
        i = torch.bucketize(torsion(pos.double(), ALDP_PHI), edges)
        j = torch.bucketize(torsion(pos.double(), ALDP_PSI), edges)
        h = torch.zeros(bins * bins, dtype=torch.float64).index_add_(0, i * bins + j, w)
        return h / h.sum()

    w = torch.exp(log_w - torch.logsumexp(log_w, 0))
    return 0.5 * float(
        (hist(x, w) - hist(ref, torch.ones(len(ref), dtype=torch.float64))).abs().sum()
    )


def evaluate(name, sample_fn, log_prob_fn, reduced, check, test_x, n, chunk, out):
    """Test NLL, ESS after dropping wrong chirality, Ramachandran TV, throughput."""
    with torch.no_grad():
        log(f"{name}: test NLL of {len(test_x)} frames")
        nll = torch.cat([-log_prob_fn(c).double().cpu() for c in test_x.split(chunk)])
        log(f"{name}: drawing {n} samples")
        xs, log_qs = [], []
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            x, log_q = sample_fn(min(chunk, n - start))
            xs.append(x.detach().double().cpu())
            log_qs.append(log_q.detach().double().cpu())
            log(f"{name}: {start + len(x)} samples in {time.perf_counter() - t0:.0f} s")
        seconds = time.perf_counter() - t0
        x, log_q = torch.cat(xs), torch.cat(log_qs)
        wrong = check.flag(x)
        keep = ~wrong & torch.isfinite(log_q)
        kept = int(keep.sum())
        if kept:
            u = torch.cat([reduced(c).double().cpu() for c in x[keep].split(chunk)])
            log_w = log_weights(u, log_q[keep])
    out[f"{name}_nll"] = float(nll.mean())
    out[f"{name}_wrong_chirality"] = float(wrong.double().mean())
    # With no sample kept there is nothing to reweight: ESS 0, histograms disjoint.
    out[f"{name}_ess"] = float(kish_ess(log_w)) if kept else 0.0
    out[f"{name}_logw_std"] = float(log_w[torch.isfinite(log_w)].std()) if kept else None
    out[f"{name}_rama_tv"] = rama_tv(x[keep], log_w, test_x.cpu()) if kept else 1.0
    out[f"{name}_samples_per_s"] = n / seconds


def train_cnf(field, base, data, classes, args) -> dict[str, float]:
    """Flow matching within ``args.budget`` s; returns steps, final loss and seconds."""
    # Size the cosine schedule so that it ends within the budget: time 20 steps on a copy.
    # AdamW, cosine decay to zero, no warm-up, no weight decay or clipping
    settings = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "warmup": 0}
    settings |= {"weight_decay": 0.0, "clip": 1e9, "checkpoint_every": 0, "progress": False}
    t0 = time.perf_counter()
    fm_probe = TrainConfig(steps=20, val_every=20, **settings)
    fit_flow_matching(copy.deepcopy(field), base, data, fm_probe, classes)
    steps = max(100, int(0.9 * args.budget / ((time.perf_counter() - t0) / 20)))
    log(f"cnf: flow matching, {steps} steps within {args.budget:.0f} s")
    fm = TrainConfig(steps=steps, val_every=steps, **settings)
    t0 = time.perf_counter()
    losses = fit_flow_matching(
        field, base, data, fm, classes, deadline=time.monotonic() + args.budget
    )
    return {
        "cnf_steps": len(losses),
        "cnf_fm_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "cnf_train_s": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="aldp")
    parser.add_argument("--budget", type=float, default=1800.0, help="training seconds each")
    parser.add_argument(
        "--coupling-budget", type=float, default=None, help="coupling seconds (default --budget)"
    )
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--test-frames", type=int, default=0, help="0: the whole test split")
    parser.add_argument("--field", choices=("egnn", "e3nn"), default="egnn")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--solver", default="dopri5", help="torchdiffeq solver for sampling")
    parser.add_argument("--rtol", type=float, default=1e-4, help="rtol = atol (adaptive solvers)")
    parser.add_argument("--step-size", type=float, default=None, help="fixed-step solvers only")
    parser.add_argument("--coupling-layers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save-field", type=Path, default=None, help="file for the CNF field")
    parser.add_argument(
        "--load-field", type=Path, default=None, help="skip flow matching: a --save-field file"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        ode = ODEConfig(args.solver, rtol=args.rtol, atol=args.rtol, step_size=args.step_size)
    except ValueError as err:
        parser.error(str(err))
    if args.load_field is not None and not args.load_field.is_file():
        parser.error(f"--load-field: no file {args.load_field}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    wall = time.perf_counter()

    recipe = get_recipe(args.dataset)
    splits = load(args.dataset)
    train_x, test_x = splits.train.float(), splits.test.float()
    if args.test_frames > 0:
        test_x = test_x[torch.linspace(0, len(test_x) - 1, args.test_frames).long()]
    config = BGConfig(
        target_for_system(recipe.system),
        recipe.config.temperature,
        FlowConfig(layers=args.coupling_layers),
    )
    coupling = build_boltzmann_generator(config, data=train_x)
    molecule = coupling.target.molecule
    check = StereoCheck(molecule, reference=train_x[0])
    out: dict[str, float | int | str | None] = {
        "dataset": args.dataset,
        "train_frames": len(train_x),
        "budget_s": args.budget,
        "samples": args.samples,
        "field": args.field,
        "md_wrong_chirality": float(check.flag(test_x).double().mean()),
    }

    # ---------------------------------------------------------------- equivariant CNF
    classes = symmetry_classes(molecule)
    centred = train_x - train_x.mean(1, keepdim=True)
    std = float(centred.std())
    if args.field == "egnn":
        field = EGNN(classes, molecule.bonds, args.hidden, args.layers, length_scale=std)
    else:
        from confflow.nn.e3nn_field import E3NNField

        field = E3NNField(
            classes, molecule.bonds, args.hidden, args.hidden // 2, args.layers, length_scale=std
        )
    field = field.to(device)
    base = MeanFreeNormal(molecule.n_atoms, std).to(device)
    if args.load_field is not None:
        saved = torch.load(args.load_field, map_location=device, weights_only=True)
        field.load_state_dict(saved["field"])
        training = saved.get("metrics", {})
        log(f"cnf: field loaded from {args.load_field}")
    else:
        training = train_cnf(field, base, centred.to(device), classes, args)
    if args.save_field is not None:
        plain_args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload = {"field": field.state_dict(), "args": plain_args, "metrics": training}
        write_checkpoint(args.save_field, payload)
    for key in ("cnf_steps", "cnf_fm_loss", "cnf_train_s"):
        out[key] = training.get(key)
    cnf = CNF(field, (molecule.n_atoms, 3), ode, mean_free=True)
    flow = Flow(base, cnf).to(device)
    nfe: list[int] = []

    def cnf_sample(k: int):
        x, log_q = flow.sample(k)
        nfe.append(cnf.nfe)
        return x, log_q

    evaluate(
        "cnf",
        cnf_sample,
        lambda c: flow.log_prob(c.to(device)),
        lambda c: coupling.reduced_energy(c.to(device).float()),
        check,
        test_x,
        args.samples,
        args.chunk,
        out,
    )
    out["cnf_nfe"] = sum(nfe) / len(nfe)

    # ---------------------------------------------------------------- coupling flow
    budget = args.budget if args.coupling_budget is None else args.coupling_budget
    out["coupling_budget_s"] = budget
    log(f"coupling: maximum likelihood for {budget:.0f} s")
    steps_probe = TrainConfig(steps=20, batch_size=256, val_every=10**6, progress=False)
    t0 = time.perf_counter()
    Trainer(build_boltzmann_generator(coupling.config), steps_probe, train_data=train_x).fit()
    per_step = (time.perf_counter() - t0) / 20
    steps = max(50, int(0.9 * budget / per_step))
    train_cfg = TrainConfig(
        steps=steps,
        batch_size=256,
        warmup=min(500, steps // 20),
        val_every=10**6,
        seed=args.seed,
        device=args.device,
        progress=False,
    )
    coupling = coupling.to(device)
    t0 = time.perf_counter()
    result = Trainer(coupling, train_cfg, train_data=train_x).fit(resume=False, max_seconds=budget)
    out["coupling_steps"] = result.step
    out["coupling_train_s"] = time.perf_counter() - t0
    coupling.eval()
    evaluate(
        "coupling",
        coupling.sample,
        lambda c: coupling.log_prob(c.to(device)),
        lambda c: coupling.reduced_energy(c.to(device).float()),
        check,
        test_x,
        args.samples,
        args.chunk,
        out,
    )
    out["wall_s"] = time.perf_counter() - wall
    report_metrics(out, args.json)


if __name__ == "__main__":
    main()
