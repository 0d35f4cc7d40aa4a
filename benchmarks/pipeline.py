"""Throughput of ``confflow pipeline`` on a LocalCluster: 1 worker process against 2.

Eight small molecules run the whole per-molecule pipeline (ETKDG seeds, training of the
``confflow generate`` Boltzmann generator, sampling, reweighting, SDF output) on two
LocalClusters started side by side, one with one single-threaded worker and one with two.
Every repeat writes into a fresh output folder (a rerun into the same folder would do no
work), runs alternate between the two clusters so machine load hits both alike, and each
cluster first runs one unmeasured warm-up pass (worker imports). Training has a wall-clock
budget per molecule, so the mean ESS is reported too: two workers sharing the cores train
fewer steps in the same budget. Reported: median seconds per pass, molecules per hour, ESS.

Usage:
    python benchmarks/pipeline.py --json pipeline.json [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from confflow.atomic import write_json
from confflow.pipeline import PipelineConfig, run_pipeline

MOLECULES = [
    "CCO ethanol",
    "CCCO propanol",
    "COC dimethyl-ether",
    "CC(=O)O acetic-acid",
    "CN methylamine",
    "CC(C)=O acetone",
    "CC(C)O isopropanol",
    "CCN ethylamine",
]


def one_pass(client, inputs: Path, config: PipelineConfig, gpus: bool) -> tuple[float, float]:
    """Seconds and mean ESS for all molecules, into a fresh output folder."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_pipeline(inputs, out, config, client, gpus=gpus, progress=False)
        seconds = time.perf_counter() - start
    failed = [r["name"] for r in summary.records if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"molecules failed: {failed}")
    return seconds, statistics.mean(r["ess"] for r in summary.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results as a flat JSON object")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0, help="training s per molecule")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from distributed import Client, LocalCluster

    config = PipelineConfig(
        n_seeds=16, md_ns=0.0, budget=args.budget, n_samples=1000, device=args.device
    )
    gpus = args.device == "cuda"
    resources = {"GPU": 1} if gpus else None
    times: dict[int, list[float]] = {1: [], 2: []}
    ess: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "molecules.smi"
        inputs.write_text("\n".join(MOLECULES) + "\n")
        clusters = {
            n: LocalCluster(
                n_workers=n, threads_per_worker=1, dashboard_address=":0", resources=resources
            )
            for n in times
        }
        try:
            clients = {n: Client(cluster) for n, cluster in clusters.items()}
            for client in clients.values():
                one_pass(client, inputs, config, gpus)  # warm-up: imports in every worker
            for _ in range(args.repeats):
                for n, client in clients.items():
                    seconds, mean_ess = one_pass(client, inputs, config, gpus)
                    times[n].append(seconds)
                    ess[n].append(mean_ess)
                    print(f"{n} worker(s): {seconds:.1f} s, mean ESS {100 * mean_ess:.1f} %")
            for client in clients.values():
                client.close()
        finally:
            for cluster in clusters.values():
                cluster.close()

    n_mol = len(MOLECULES)
    result: dict[str, float | int | str] = {
        "device": args.device,
        "molecules": n_mol,
        "budget_s": args.budget,
        "repeats": args.repeats,
    }
    for n, values in times.items():
        median = statistics.median(values)
        result[f"seconds_{n}w"] = median
        result[f"molecules_per_hour_{n}w"] = 3600 * n_mol / median
        result[f"mean_ess_{n}w"] = statistics.median(ess[n])
    result["speedup_2w_over_1w"] = result["seconds_1w"] / result["seconds_2w"]

    print(f"{'workers':>8} {'s / 8 molecules':>16} {'molecules/hour':>15} {'mean ESS %':>11}")
    for n in times:
        seconds, rate = result[f"seconds_{n}w"], result[f"molecules_per_hour_{n}w"]
        print(f"{n:>8} {seconds:>16.1f} {rate:>15.0f} {100 * result[f'mean_ess_{n}w']:>11.1f}")
    print(f"speed-up 2 vs 1 worker: {result['speedup_2w_over_1w']:.2f}x")
    if args.json is not None:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
