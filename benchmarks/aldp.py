"""Boltzmann generator on alanine dipeptide (``aldp``, 300 K): MD data and the energy, mixed.

Trains the default Boltzmann generator (internal coordinates, circular and real-line spline
couplings) on the MD training split within a wall-clock budget: maximum likelihood mixed with
reverse KL on the energy, ``(1 - w) NLL + w KL`` with ``w = --kl-weight`` (default 0.9;
``--kl-weight 0`` is maximum likelihood alone; ``--forward-weight a`` makes the energy term
``(1 - a)`` reverse KL plus ``a`` importance-weighted forward KL; ``--oversample-phi-pos k``
repeats the phi > 0 training frames ``k`` times; ``--circular-components K`` sets the wrapped
normals of the base on each free torsion, ``0`` a uniform base), then evaluates against the MD
test split:

* ``test_nll`` — mean -log q of the test frames (nats; density of the canonical pose, nm);
* ``ess`` — Kish ESS fraction of ``--samples`` flow samples reweighted to the target
  (median of ``--repeats`` independent draws; min and max reported too);
* ``rama_tv`` — total variation between the (phi, psi) histograms (36 x 36 bins) of the MD
  test frames and of the reweighted flow samples;
* ``dF_flow_kT`` / ``dF_md_kT`` — free energy of phi > 0 relative to phi < 0,
  ``F(phi > 0) - F(phi < 0)`` in kT (positive: phi > 0 is the less likely state), from the
  reweighted flow (bootstrap sd) and from the MD reference ``--reference`` (default
  ``aldp-reference``: umbrella sampling on phi + MBAR, block-bootstrap sd; ``--reference test``
  counts the MD test split, block bootstrap over ``--md-block`` frames), ``dF_err_kT`` their
  combined sd; ``dF_md_kT`` is ``null`` when the reference holds no phi > 0 frame;
* ``phi_pos_flow`` / ``phi_pos_md`` — fraction of the (unweighted) flow samples with
  phi > 0 (median of the draws) and the reference's probability of phi > 0; a flow that
  under-samples this minor state gives its samples there large weights;
* ``target_evaluations`` — energy evaluations of training validation and evaluation;
* ``wall_s`` — total wall time.

``--data-free`` trains without any MD frame: the internal-coordinate normalisation comes from
the molecule (ideal bond lengths and angles), and the objective is FAB (the alpha-2 divergence
by annealed importance sampling towards ``p^2 / q`` with HMC and a prioritised replay buffer,
:mod:`confflow.training.fab`; ``--fab-stages``, ``--fab-leapfrog``); the MD data serve only for
the evaluation. The best model is then the one with the largest validation ESS.

Steps are set from a timing of the first steps so that the cosine schedule ends within the
budget; the trainer also stops at the budget, or after ``--patience`` validations without a
better validation loss (default 0: never), and the model with the best validation loss (the
validation NLL and flow-sample reverse KL, mixed as in training) is the one evaluated.

Usage:
    python benchmarks/aldp.py [--dataset aldp-rex] [--reference aldp-reference] [--budget 30]
        [--device cpu|cuda] [--json out]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _report import report_metrics

from confflow.datasets import get_recipe, load, reference_phi_free_energy
from confflow.energies import ALDP_PHI, ALDP_PSI
from confflow.models import BGConfig, FlowConfig, build_boltzmann_generator
from confflow.reweighting import free_energy_difference, kish_ess, torsion
from confflow.training import TrainConfig, Trainer
from confflow.training.checkpoint import read_checkpoint
from confflow.training.spec import target_for_system


def rama_hist(phi: torch.Tensor, psi: torch.Tensor, w: torch.Tensor, bins: int) -> torch.Tensor:
    edges = torch.linspace(-math.pi, math.pi, bins + 1, dtype=torch.float64)
    i = (torch.bucketize(phi.double(), edges[1:-1])).clamp(0, bins - 1)
    j = (torch.bucketize(psi.double(), edges[1:-1])).clamp(0, bins - 1)
    h = torch.zeros(bins * bins, dtype=torch.float64).index_add_(0, i * bins + j, w.double())
    return h / h.sum()


def oversampled(x: torch.Tensor, rare: torch.Tensor, times: int) -> torch.Tensor:
    """``x`` ``[M, ...]`` with the rows where ``rare`` is True repeated ``times`` times in all.

    The data term then holds more of a rare state, so that the flow keeps mass there; the
    importance weights correct the bias this leaves in ``q``.
    """
    return torch.cat([x, *[x[rare]] * (times - 1)]) if times > 1 else x


@torch.no_grad()
def draw(model, n: int, chunk: int, seed: int, device: torch.device):
    gen = torch.Generator(device).manual_seed(seed)
    phis, psis, log_ws = [], [], []
    for start in range(0, n, chunk):
        x, log_q = model.sample(min(chunk, n - start), gen)
        log_ws.append(model.log_weights(x, log_q).cpu())
        phis.append(torsion(x, ALDP_PHI).cpu())
        psis.append(torsion(x, ALDP_PSI).cpu())
    return torch.cat(phis), torch.cat(psis), torch.cat(log_ws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="aldp-rex", help="training data (MD dataset)")
    parser.add_argument(
        "--reference", default="aldp-reference", help="dataset for dF_md, or 'test' (MD test split)"
    )
    parser.add_argument("--budget", type=float, default=30.0, help="training minutes")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument(
        "--circular-components",
        type=int,
        default=FlowConfig.circular_components,
        help="wrapped normals per free torsion in the base (0: uniform on the circle)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--kl-weight", type=float, default=0.9, help="share of reverse KL (0: maximum likelihood)"
    )
    parser.add_argument("--kl-batch-size", type=int, default=256)
    parser.add_argument(
        "--forward-weight",
        type=float,
        default=0.0,
        help="share of importance-weighted forward KL in the energy term (0: reverse KL only)",
    )
    parser.add_argument(
        "--cap-threshold",
        type=float,
        default=TrainConfig.cap_threshold,
        help="reduced energy (kT) above which the KL term's energy is capped (linear-log)",
    )
    parser.add_argument(
        "--oversample-phi-pos",
        type=int,
        default=1,
        help="repeat the training frames with phi > 0 (the minor state) this many times",
    )
    parser.add_argument(
        "--data-free", action="store_true", help="FAB on the energy alone, no MD frame in training"
    )
    parser.add_argument("--fab-stages", type=int, default=TrainConfig.fab_stages)
    parser.add_argument("--fab-leapfrog", type=int, default=TrainConfig.fab_leapfrog)
    parser.add_argument("--md-block", type=int, default=100)
    parser.add_argument(
        "--patience", type=int, default=0, help="validations without improvement (0: never stop)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="run folder (checkpoints, log)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.oversample_phi_pos < 1:
        parser.error(f"--oversample-phi-pos: must be >= 1, got {args.oversample_phi_pos}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()

    recipe = get_recipe(args.dataset)
    splits = load(args.dataset)
    train_x, val_x, test_x = splits.train.float(), splits.validation.float(), splits.test.float()
    flow = FlowConfig(
        layers=args.layers,
        hidden=tuple(args.hidden),
        bins=args.bins,
        circular_components=args.circular_components,
    )
    config = BGConfig(target_for_system(recipe.system), recipe.config.temperature, flow)
    torch.manual_seed(args.seed)
    model = build_boltzmann_generator(config, data=None if args.data_free else train_x)

    # the settings that set the cost of a step, shared by the timing probe and the run
    step_settings = dict(kl_batch_size=args.kl_batch_size, device=args.device, progress=False)
    if args.data_free:
        step_settings.update(
            objective="fab", fab_stages=args.fab_stages, fab_leapfrog=args.fab_leapfrog
        )
    else:
        step_settings.update(
            batch_size=args.batch_size,
            kl_weight=args.kl_weight,
            forward_weight=args.forward_weight,
            cap_threshold=args.cap_threshold,
        )
    data = None if args.data_free else train_x
    # time a few steps on a copy to size the schedule to the budget
    probe = build_boltzmann_generator(model.config)
    probe_cfg = TrainConfig(steps=30, val_every=10_000, **step_settings)
    t0 = time.perf_counter()
    Trainer(probe, probe_cfg, train_data=data).fit()
    per_step = (time.perf_counter() - t0) / 30
    budget_s = 60 * args.budget
    steps = max(50, int(0.9 * budget_s / per_step))
    train_cfg = TrainConfig(
        steps=steps,
        lr=args.lr,
        warmup=min(500, steps // 20),
        val_every=max(50, steps // 20),
        val_batch_size=2000,
        checkpoint_every=max(50, steps // 10),
        patience=args.patience,
        seed=args.seed,
        **step_settings,
    )
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="aldp-bench-"))
    if args.data_free:
        trainer = Trainer(model, train_cfg, None, None, out_dir)
    else:
        rare = torsion(train_x.double(), ALDP_PHI) > 0
        fit_x = oversampled(train_x, rare, args.oversample_phi_pos)
        trainer = Trainer(model, train_cfg, fit_x, val_x, out_dir)
    result = trainer.fit(resume=False, max_seconds=budget_s - (time.perf_counter() - t0))
    train_s = time.perf_counter() - start
    best = read_checkpoint(out_dir / "best.pt")
    model.load_state_dict(best["model"])

    model.eval()
    with torch.no_grad():
        test_nll = float(
            torch.cat(
                [-model.log_prob(c.to(device)).double().cpu() for c in test_x.split(4096)]
            ).mean()
        )
    md_phi, md_psi = torsion(test_x.double(), ALDP_PHI), torsion(test_x.double(), ALDP_PSI)
    md_hist = rama_hist(md_phi, md_psi, torch.ones_like(md_phi), 36)
    gen = torch.Generator().manual_seed(args.seed)
    in_b_md = md_phi > 0
    if args.reference != "test":
        md = reference_phi_free_energy(args.reference)
        df_md, df_md_err = md.delta_f, md.stderr
    elif bool(in_b_md.any()):
        block = min(args.md_block, len(md_phi) // 10)
        md = free_energy_difference(
            torch.zeros(len(md_phi)), ~in_b_md, in_b_md, block=block, generator=gen
        )
        df_md, df_md_err = md.value, md.std
    else:
        df_md, df_md_err = math.inf, math.nan
    ess, tv, dfs, df_errs, pos = [], [], [], [], []
    evaluations = result.target_evaluations
    for r in range(args.repeats):
        phi, psi, log_w = draw(model, args.samples, 10_000, args.seed + 100 + r, device)
        evaluations += args.samples
        ess.append(kish_ess(log_w))
        pos.append(float((phi > 0).double().mean()))
        w = torch.exp(log_w - torch.logsumexp(log_w, 0))
        tv.append(0.5 * float((rama_hist(phi, psi, w, 36) - md_hist).abs().sum()))
        if bool((phi > 0).any()) and bool((phi < 0).any()):
            f = free_energy_difference(log_w, phi < 0, phi > 0, generator=gen)
            dfs.append(f.value)
            df_errs.append(f.std)
    df_flow = statistics.median(dfs) if dfs else math.inf
    df_flow_err = statistics.median(df_errs) if df_errs else math.nan
    out = {
        "dataset": args.dataset,
        "reference": args.reference,
        "budget_min": args.budget,
        "data_free": args.data_free,
        "steps": result.step,
        "best_step": int(best["step"]),
        "stopped_early": result.stopped_early,
        "train_frames": len(train_x),
        "oversample_phi_pos": args.oversample_phi_pos,
        "circular_components": args.circular_components,
        "test_frames": len(test_x),
        "n_samples": args.samples,
        "repeats": args.repeats,
        "test_nll": test_nll,
        "ess": statistics.median(ess),
        "ess_min": min(ess),
        "ess_max": max(ess),
        "phi_pos_flow": statistics.median(pos),
        "phi_pos_md": 1 / (1 + math.exp(df_md)),
        "rama_tv": statistics.median(tv),
        "dF_flow_kT": df_flow,
        "dF_flow_err_kT": df_flow_err,
        "dF_md_kT": df_md,
        "dF_md_err_kT": df_md_err,
        "dF_err_kT": math.hypot(df_flow_err, df_md_err),
        "target_evaluations": evaluations,
        "train_s": train_s,
        "wall_s": time.perf_counter() - start,
    }
    report_metrics(out, args.json)


if __name__ == "__main__":
    main()
