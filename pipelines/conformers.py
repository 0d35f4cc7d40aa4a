"""Boltzmann-weighted conformer ensembles for a library of molecules, on Dask.

The same workflow as ``confflow pipeline``, written out as a script to copy and adapt: open a
cluster (embedded LocalCluster, an existing scheduler, or SLURM through dask-jobqueue), run
the per-molecule stages as tasks, print the summary. Rerunning with the same ``--out`` skips
the molecules that are complete and redoes the rest.

Usage:
    python pipelines/conformers.py molecules.smi --out runs/library
    python pipelines/conformers.py molecules.smi --out runs/library \
        --cluster slurm --jobqueue slurm/jobqueue.yaml --budget 600
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from confflow.pipeline import (
    PipelineConfig,
    PipelineError,
    open_cluster,
    read_inputs,
    run_pipeline,
    summary_rows,
)


def main(argv: list[str] | None = None) -> int:
    """Runs the workflow; returns 0 when every molecule is done, 1 if some failed, 2 on error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="SMILES per line (optional name) or SDF")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cluster", default="local", help="local or slurm")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler")
    parser.add_argument("--jobqueue", type=Path, help="SLURM settings (slurm/jobqueue.yaml)")
    parser.add_argument("--workers", type=int, help="local worker processes")
    parser.add_argument("--budget", type=float, default=120.0, help="training s per molecule")
    parser.add_argument("--samples", type=int, default=2000, help="flow samples per molecule")
    parser.add_argument("--md-ns", type=float, default=0.05, help="MD per molecule and replica")
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig(budget=args.budget, n_samples=args.samples, md_ns=args.md_ns)
        read_inputs(args.input)
        with open_cluster(
            args.cluster, scheduler=args.scheduler, jobqueue=args.jobqueue, workers=args.workers
        ) as cluster:
            print(f"cluster    {cluster.description}")
            print(f"dashboard  {cluster.dashboard or 'none'}")
            summary = run_pipeline(args.input, args.out, config, cluster.client, gpus=cluster.gpus)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, status, ess, effective, seconds, note in summary_rows(summary):
        print(f"{name:<24} {status:<7} ESS {ess:>6}% ({effective:>7}) {seconds:>8} s  {note}")
    print(f"manifest   {summary.manifest}")
    return 1 if summary.counts.get("failed") else 0


if __name__ == "__main__":  # LocalCluster starts worker processes: keep the guard
    sys.exit(main())
