"""MD speed: OpenMM platforms side by side, and the cost of replica exchange.

For each system (alanine dipeptide vacuum / OBC2 / ff96 OBC1, an MMFF94 molecule from SMILES)
and each platform, times ``--steps`` Langevin steps (1 fs) after a warm-up, ``--repeats``
times interleaved across peers, and reports the median ns/day. Replica exchange (4 replicas,
300-1000 K, swaps every 0.1 ps) is timed per ns of the 300 K replica.

Usage:
    python benchmarks/md.py --json md.json [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import openmm
import torch

from confflow.atomic import write_text
from confflow.energies import available_platforms
from confflow.md import MDConfig, ReplicaConfig, resolve_system
from confflow.md.langevin import LangevinDriver
from confflow.md.replica_exchange import ReplicaExchangeDriver

SYSTEMS = (
    "aldp-vacuum",
    "aldp",
    "aldp-ff96",
    "smiles:CC(C)Cc1ccc(cc1)C(C)C(=O)O",  # ibuprofen, 33 atoms
    "smiles:COc1cc2c(cc1OC)C(=O)C(CC1CCN(Cc3ccccc3)CC1)C2",  # donepezil, 65 atoms
)


def _platforms(device: str) -> list[str]:
    if device == "cuda":
        return [p for p in ("CUDA", "OpenCL") if p in available_platforms()]
    return [p for p in ("Reference", "CPU") if p in available_platforms()]


def _drivers(device: str) -> dict[str, object]:
    drivers = {}
    for spec in SYSTEMS:
        system = resolve_system(spec)
        for platform in _platforms(device):
            config = MDConfig(ns=1.0, platform=platform, equilibration_ps=0.0)
            driver = LangevinDriver(system, config)
            driver.start()
            drivers[f"md {spec} {platform}"] = driver
    system = resolve_system("aldp")
    platform = _platforms(device)[0]
    config = MDConfig(ns=1.0, platform=platform, equilibration_ps=0.0, stride_ps=0.1)
    rex = ReplicaExchangeDriver(system, config, ReplicaConfig(4, 1000.0, 0.1))
    rex.start()
    drivers[f"rex4 aldp {platform}"] = rex
    return drivers


def _time(driver: object, steps: int) -> float:
    t0 = time.perf_counter()
    if isinstance(driver, ReplicaExchangeDriver):
        driver.advance(max(1, steps // driver.config.stride_steps), 0)
    else:
        driver.context.getIntegrator().step(steps)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads of the CPU platform")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OPENMM_CPU_THREADS"] = str(args.threads)  # read when a CPU Context is made
    drivers = _drivers(args.device)
    slow = {k for k in drivers if "aldp-ff96" in k}  # ~75 ns/day: fewer steps
    for name, driver in drivers.items():  # warm-up
        _time(driver, 100 if name in slow else args.steps // 5)
    times: dict[str, list[float]] = {k: [] for k in drivers}
    for _ in range(args.repeats):
        for name, driver in drivers.items():
            steps = args.steps // 10 if name in slow else args.steps
            times[name].append(_time(driver, steps) / steps)
    results = {}
    print(f"{'peer':55s} {'ns/day':>10s} {'ms/step':>9s}")
    for name, per_step in times.items():
        median = statistics.median(per_step)
        ns_day = 1e-6 * 86400.0 / median  # 1 fs steps
        key = name.replace(" ", "_").replace(":", "_")
        results[f"{key}_ns_per_day"] = round(ns_day, 1)
        print(f"{name:55s} {ns_day:10.1f} {1e3 * median:9.3f}")
    results["openmm_version"] = openmm.__version__
    results["device"] = args.device
    if args.json:
        write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
