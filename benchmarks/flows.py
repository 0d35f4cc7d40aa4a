"""Coupling rational-quadratic spline flows: confflow vs zuko vs normflows, same run.

Architecture for all three: 60 real features, 5 coupling blocks, conditioner with two hidden
layers of 256 (ReLU), 8 bins, identity tails beyond +-5, standard-normal base, float32.
zuko: ``NSF(60, transforms=5, passes=2)`` (coupling through a masked MLP);
normflows: ``CoupledRationalQuadraticSpline`` with ``num_blocks=1`` (its ResidualNet: one
residual block of two 256-wide layers between input and output layers, so one more hidden
matrix than the others) and alternating masks.

Figures (samples/s, medians of repeats after warm-up): a training step (log_prob + backward +
Adam step), log_prob alone, sampling with log_prob. Ratios are confflow / peer.

Usage:
    python benchmarks/flows.py [--repeats 7] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import normflows as nf
import torch
import zuko

from confflow.atomic import write_text
from confflow.distributions import Flow, StandardNormal
from confflow.transforms import Compose, SplineCoupling, coupling_masks

FEATURES, BLOCKS, HIDDEN, BINS, BOUND, BATCH = 60, 5, (256, 256), 8, 5.0, 1024


def build_confflow() -> tuple[torch.nn.Module, Callable, Callable]:
    masks = coupling_masks(FEATURES, BLOCKS)
    layers = [SplineCoupling(FEATURES, m, bins=BINS, bound=BOUND, hidden=HIDDEN) for m in masks]
    flow = Flow(StandardNormal(FEATURES), Compose(layers))
    return flow, flow.log_prob, lambda n: flow.sample(n)


def build_zuko() -> tuple[torch.nn.Module, Callable, Callable]:
    flow = zuko.flows.NSF(FEATURES, transforms=BLOCKS, bins=BINS, hidden_features=HIDDEN, passes=2)
    return flow, lambda x: flow().log_prob(x), lambda n: flow().rsample_and_log_prob((n,))


def build_normflows() -> tuple[torch.nn.Module, Callable, Callable]:
    layers = [
        nf.flows.CoupledRationalQuadraticSpline(
            FEATURES, 1, HIDDEN[0], num_bins=BINS, tail_bound=BOUND, reverse_mask=bool(i % 2)
        )
        for i in range(BLOCKS)
    ]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(FEATURES, trainable=False), layers)
    return flow, flow.log_prob, lambda n: flow.sample(n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Samples/s of ``iters`` calls of ``fn`` (one batch each)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return BATCH * iters / (time.perf_counter() - start)


def prepare(build: Callable, device: torch.device) -> dict[str, object]:
    """Builds a model, fits it briefly (away from the identity) and returns timed closures."""
    torch.manual_seed(0)
    model, log_prob, sample = build()
    model.to(device)
    x = torch.randn(BATCH, FEATURES, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(x).mean()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def logprob_step() -> None:
        log_prob(x)

    @torch.no_grad()
    def sample_step() -> None:
        sample(BATCH)

    for _ in range(3):
        train_step()
    ops = {"train": train_step, "logprob": logprob_step, "sample": sample_step}
    for op in ops.values():  # warm-up
        op()
    return {"ops": ops, "params": sum(p.numel() for p in model.parameters())}


def measure_all(
    builders: dict[str, Callable], device: torch.device, repeats: int, iters: int
) -> dict[str, dict[str, float]]:
    """Median samples/s per library and operation.

    Libraries are interleaved inside every repeat, so a change of machine load affects all of
    them alike.
    """
    prepared = {name: prepare(build, device) for name, build in builders.items()}
    ops = ("train", "logprob", "sample")
    rates = {name: {op: [] for op in ops} for name in builders}
    for _ in range(repeats):
        for op in ops:
            for name, p in prepared.items():
                rates[name][op].append(_time(p["ops"][op], device, iters))
    out = {}
    for name in builders:
        out[name] = {op: statistics.median(rates[name][op]) for op in ops}
        out[name]["params"] = prepared[name]["params"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3, help="batches per timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=str, default=None, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    builders = {"confflow": build_confflow, "zuko": build_zuko, "normflows": build_normflows}
    results = measure_all(builders, device, args.repeats, args.iters)
    print(f"{'library':<10} {'params':>9} {'train/s':>10} {'logprob/s':>11} {'sample/s':>10}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['params']:>9d} {r['train']:>10.0f} {r['logprob']:>11.0f} "
            f"{r['sample']:>10.0f}"
        )
    flat: dict[str, float | str] = {"device": args.device, "threads": args.threads}
    for name, r in results.items():
        for key in ("train", "logprob", "sample"):
            flat[f"{name}_{key}_per_s"] = r[key]
    for peer in ("zuko", "normflows"):
        for key in ("train", "sample", "logprob"):
            flat[f"{key}_ratio_vs_{peer}"] = results["confflow"][key] / results[peer][key]
    print(" ".join(f"{k}={v:.2f}" for k, v in flat.items() if "ratio" in k))
    if args.json:
        write_text(args.json, json.dumps(flat, indent=2))


if __name__ == "__main__":
    main()
