"""Energies + forces: torch OpenMM-System vs the OpenMM bridge (and torch MMFF vs RDKit).

OpenMM part: for each alanine dipeptide system ("aldp-vacuum", "aldp" = Amber99SB-ILDN +
amber99_obc, "aldp-ff96" = openmmtools' AlanineDipeptideImplicit) and batch size, the time per
conformer of energy + forces of

* ``OpenMMSystemEnergy.energy_and_forces`` with ``torch.compile`` in float64 and float32, and
  eager in float64 (the fallback when compilation is unavailable);
* ``OpenMMBridge.energies_and_forces`` in this process on the fastest OpenMM platform for that
  system (chosen in the same run from the available ones: Reference, CPU, CUDA).

Torch and OpenMM repeats are interleaved so that load from other jobs hits both alike;
figures are medians of ``--repeats`` after one warm-up (compilation excluded). Ratios are
OpenMM time over torch time. ``omm_ratio_vs_openmm`` is the "aldp" system at the largest
batch (4096) with the compiled float64 path (the precision of the accuracy tests, as in the
MMFF part); ``omm_ratio_vs_openmm_float32`` the same in float32, the training precision.

MMFF part: if ``benchmarks/_energies_mmff.py`` exists (the only condition checked), its
``bench_mmff(batch_sizes, device, repeats)`` runs in the same process; its rows join the table
(ratio = RDKit loop time over torch time) and its metrics (``mmff_ratio_vs_rdkit`` ...) the
JSON.

Usage:
    python benchmarks/energies.py [--repeats 5] [--device cpu|cuda] [--threads 2]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from confflow.atomic import write_text
from confflow.energies.bridge import OpenMMBridge, available_platforms
from confflow.energies.openmm_torch import OpenMMSystemEnergy
from confflow.energies.systems import alanine_dipeptide

SYSTEMS = ("aldp-vacuum", "aldp", "aldp-ff96")
MMFF_FILE = Path(__file__).resolve().parent / "_energies_mmff.py"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _fastest_platform(system, positions: np.ndarray) -> str:
    """The OpenMM platform with the smallest time for 64 conformers (after a warm-up)."""
    times = {}
    for platform in available_platforms():
        try:
            bridge = OpenMMBridge(system, platform=platform)
        except Exception:  # a listed platform that cannot start here (e.g. no driver)
            continue
        bridge.energies_and_forces(positions[:8])
        times[platform] = min(
            _timed(lambda b=bridge: b.energies_and_forces(positions[:64]), torch.device("cpu"))
            for _ in range(3)
        )
    return min(times, key=times.get)


def bench_openmm(
    batch_sizes: list[int], device: str, repeats: int
) -> tuple[list[dict], dict[str, float]]:
    """Rows and flat metrics of the OpenMM part (see the module docstring)."""
    dev = torch.device(device)
    rows: list[dict] = []
    metrics: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for name in SYSTEMS:
        ref = alanine_dipeptide(name)
        platform = _fastest_platform(ref.system, np.repeat(ref.positions[None], 64, axis=0))
        bridge = OpenMMBridge(ref.system, platform=platform)
        compiled = OpenMMSystemEnergy(ref.system, compile=True).to(dev)
        eager = OpenMMSystemEnergy(ref.system).to(dev)
        for batch in batch_sizes:
            x = ref.positions[None] + 0.01 * rng.standard_normal((batch, *ref.positions.shape))
            x64 = torch.as_tensor(x, device=dev)
            x32 = x64.float()
            peers: dict[str, Callable[[], object]] = {
                "torch compiled float64": lambda e=compiled, v=x64: e.energy_and_forces(v),
                "torch compiled float32": lambda e=compiled, v=x32: e.energy_and_forces(v),
                "torch eager float64": lambda e=eager, v=x64: e.energy_and_forces(v),
                f"OpenMM {platform}": lambda b=bridge, v=x: b.energies_and_forces(v),
            }
            for fn in peers.values():  # warm-up, includes compilation for this shape
                fn()
            times: dict[str, list[float]] = {label: [] for label in peers}
            for _ in range(repeats):
                for label, fn in peers.items():
                    times[label].append(_timed(fn, dev))
            us = {label: 1e6 * statistics.median(t) / batch for label, t in times.items()}
            openmm_us = us[f"OpenMM {platform}"]
            for label, value in us.items():
                rows.append(
                    {
                        "part": "openmm",
                        "system": name,
                        "batch": batch,
                        "method": label,
                        "us_per_conf": value,
                        "ratio": openmm_us / value,
                    }
                )
            key = name.replace("-", "_")
            metrics[f"omm_us_{key}_openmm_{batch}"] = openmm_us
            for dtype in ("float32", "float64"):
                metrics[f"omm_us_{key}_torch_{dtype}_{batch}"] = us[f"torch compiled {dtype}"]
                metrics[f"omm_ratio_{key}_{dtype}_{batch}"] = (
                    openmm_us / us[f"torch compiled {dtype}"]
                )
            metrics[f"omm_ratio_{key}_eager_float64_{batch}"] = (
                openmm_us / us["torch eager float64"]
            )
    top = max(batch_sizes)
    metrics["omm_ratio_vs_openmm"] = metrics[f"omm_ratio_aldp_float64_{top}"]
    metrics["omm_ratio_vs_openmm_float32"] = metrics[f"omm_ratio_aldp_float32_{top}"]
    return rows, metrics


def _load_mmff() -> Callable[[list[int], str, int], tuple[list[dict], dict[str, float]]] | None:
    """``bench_mmff`` from ``benchmarks/_energies_mmff.py`` when that file exists."""
    if not MMFF_FILE.exists():
        return None
    spec = importlib.util.spec_from_file_location("_energies_mmff", MMFF_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bench_mmff


def _mmff_row(row: dict, metrics: dict[str, float]) -> dict:
    """An MMFF row in this table's columns (ratios there are RDKit time over torch time)."""
    atoms = metrics.get("mmff_n_atoms")
    return {
        "part": "mmff",
        "system": f"MMFF94, {atoms:.0f} atoms" if atoms else "MMFF94",
        "batch": row["batch"],
        "method": row.get("peer", row.get("method", "")),
        "us_per_conf": row["us_per_conf"],
        "ratio": row.get("ratio_vs_rdkit", row.get("ratio", float("nan"))),
    }


def _print_table(rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value:.2f}" if isinstance(value, float) else str(value))
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the flat metrics to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--skip-mmff", action="store_true", help="only the OpenMM part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, metrics = bench_openmm(args.batch_sizes, args.device, args.repeats)
    bench_mmff = None if args.skip_mmff else _load_mmff()
    if bench_mmff is not None:
        mmff_rows, mmff_metrics = bench_mmff(args.batch_sizes, args.device, args.repeats)
        rows += [_mmff_row(row, mmff_metrics) for row in mmff_rows]
        metrics.update(mmff_metrics)
    _print_table(rows)
    for key in ("omm_ratio_vs_openmm", "omm_ratio_vs_openmm_float32", "mmff_ratio_vs_rdkit"):
        if key in metrics:
            print(f"{key} = {metrics[key]:.2f}")
    if args.json is not None:
        write_text(args.json, json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
