"""MBAR: confflow's solver against pymbar's (the field's reference) on umbrella-sampling sizes.

Every case is a 1-D torsion double well (``u = 3 cos 2t + 0.8 sin t`` kT, wells 1.6 kT apart,
barriers of about 6 kT) sampled exactly (inverse CDF on a fine grid) in ``K`` harmonic windows
evenly spaced over the circle, ``n`` samples each. The force constant is the ``aldp`` phi
setting (36 windows, 200 kJ/mol/rad^2 at 300 K) scaled by ``(K / 36)^2`` so that neighbouring
windows overlap alike for every ``K``. Timed, single-threaded, median of ``--repeats``
(the two solvers interleaved):

* ``cold`` — window free energies from zeros: :func:`confflow.md.mbar.mbar_free_energies`
  against ``pymbar.MBAR(u_kn, N_k)`` (its default solver protocol);
* ``boot`` — one block-bootstrap replicate (10 blocks per window, resampled with
  replacement) started from the full data's solution, as ``umbrella_free_energy`` runs it
  ``n_bootstrap`` times: ``mbar_free_energies(..., initial=f)`` against
  ``pymbar.MBAR(..., initial_f_k=f)``.

Agreement: ``max |df|``, the largest difference of the window free energies (kT), and
``|d dF|``, the difference of ``F(t > 0) - F(t < 0)`` (kT) from confflow's unbiased weights
and from pymbar's ``compute_expectations`` of the indicator of ``t > 0`` in the unbiased state.

Usage:
    python benchmarks/mbar.py [--cases 20x2000,36x5000,40x20000] [--repeats 3] [--json out]
"""

from __future__ import annotations

import os

# one thread for both solvers; read by the BLAS and numexpr pools when numpy/pymbar load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pymbar  # noqa: E402

from confflow.atomic import write_json  # noqa: E402
from confflow.md.mbar import mbar_free_energies, mbar_log_weights  # noqa: E402
from confflow.md.umbrella import UmbrellaConfig  # noqa: E402

TEMPERATURE = 300.0
GRID = np.linspace(-math.pi, math.pi, 20001)[:-1]


def potential(theta: np.ndarray) -> np.ndarray:
    """The double well in kT at torsions ``theta`` (rad)."""
    return 3.0 * np.cos(2.0 * theta) + 0.8 * np.sin(theta)


def make_case(
    n_windows: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torsions ``[K n]`` (rad), reduced biases ``[K, K n]`` (kT) and counts ``[K]``."""
    umbrella = UmbrellaConfig(
        (0, 1, 2, 3), n_windows=n_windows, force_constant=200.0 * (n_windows / 36) ** 2
    )
    series = []
    for b in umbrella.bias_kt(GRID, TEMPERATURE):
        p = np.exp(-potential(GRID) - b)
        series.append(rng.choice(GRID, size=n, p=p / p.sum()))
    theta = np.concatenate(series) + rng.uniform(0.0, GRID[1] - GRID[0], n_windows * n)
    return theta, umbrella.bias_kt(theta, TEMPERATURE), np.full(n_windows, n)


def block_resample(counts: np.ndarray, rng: np.random.Generator, n_blocks: int = 10) -> np.ndarray:
    """Sample indices of one block-bootstrap replicate (blocks resampled within each window)."""
    index, start = [], 0
    for count in counts:
        size = count // n_blocks
        picks = rng.integers(0, n_blocks, size=n_blocks)
        index.append((start + picks[:, None] * size + np.arange(size)[None, :]).ravel())
        start += count
    return np.concatenate(index)


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """Wall time in s and the result of ``fn()``."""
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def run_case(n_windows: int, n: int, repeats: int, seed: int) -> dict[str, float]:
    """Timings (s) and agreement (kT) of both solvers on one case."""
    rng = np.random.default_rng(seed)
    theta, bias, counts = make_case(n_windows, n, rng)
    idx = block_resample(counts, rng)
    sub = bias[:, idx]
    sub_counts = np.full(n_windows, len(idx) // n_windows)
    peers: dict[str, Callable[[], np.ndarray]] = {
        "ours_cold": lambda: mbar_free_energies(bias, counts),
        "pymbar_cold": lambda: pymbar.MBAR(bias, counts).f_k,
    }
    f_ref = peers["ours_cold"]()
    peers["ours_boot"] = lambda: mbar_free_energies(sub, sub_counts, initial=f_ref)
    peers["pymbar_boot"] = lambda: pymbar.MBAR(sub, sub_counts, initial_f_k=f_ref).f_k
    times: dict[str, list[float]] = {k: [] for k in peers}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, fn in peers.items():
            seconds, results[name] = timed(fn)
            times[name].append(seconds)
    in_b = theta > 0
    log_w = mbar_log_weights(bias, counts, results["ours_cold"])
    ours_df = float(np.logaddexp.reduce(log_w[~in_b]) - np.logaddexp.reduce(log_w[in_b]))
    mbar = pymbar.MBAR(bias, counts, initial_f_k=results["pymbar_cold"])
    with np.errstate(divide="ignore"):  # pymbar takes the log of the indicator's zeros
        expectation = mbar.compute_expectations(in_b.astype(np.float64), np.zeros(len(theta)))
    p_b = float(np.ravel(expectation["mu"])[0])
    out = {k: statistics.median(v) for k, v in times.items()}
    out["max_df_kT"] = float(np.abs(results["ours_cold"] - results["pymbar_cold"]).max())
    out["max_df_boot_kT"] = float(np.abs(results["ours_boot"] - results["pymbar_boot"]).max())
    out["dF_kT"] = ours_df
    out["d_dF_kT"] = abs(ours_df - math.log((1.0 - p_b) / p_b))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="20x2000,36x5000,40x20000", help="KxN,KxN,...")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("pymbar").setLevel(logging.ERROR)  # "JAX not found" is expected here
    results: dict[str, object] = {"pymbar_version": pymbar.__version__, "threads": 1}
    print(
        "| windows x samples | ours cold s | pymbar cold s | ratio | ours boot s | pymbar boot s "
        "| ratio | max abs df kT | abs d dF kT |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for case in args.cases.split(","):
        k, n = (int(v) for v in case.lower().split("x"))
        row = run_case(k, n, args.repeats, args.seed)
        print(
            f"| {k} x {n:,} | {row['ours_cold']:.3f} | {row['pymbar_cold']:.3f} "
            f"| {row['pymbar_cold'] / row['ours_cold']:.1f} | {row['ours_boot']:.3f} "
            f"| {row['pymbar_boot']:.3f} | {row['pymbar_boot'] / row['ours_boot']:.1f} "
            f"| {max(row['max_df_kT'], row['max_df_boot_kT']):.1e} | {row['d_dF_kT']:.1e} |",
            flush=True,
        )
        results.update({f"K{k}_N{n}_{key}": value for key, value in row.items()})
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
