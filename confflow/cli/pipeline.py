"""The ``pipeline`` command of the ``confflow`` CLI: many molecules on a Dask cluster.

A thin layer over :mod:`confflow.pipeline`. Errors go through the CLI's error boundary: bad
input (input file, settings, cluster choice, jobqueue file, scheduler address) exits with
status 2; a run in which some molecule failed exits with status 1 after writing the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from confflow.cli.boundary import EXIT_FAILED, guarded

__all__ = ["pipeline", "register"]


def _settings(config: Path | None, overrides: dict[str, Any]) -> Any:
    import yaml

    from confflow.pipeline import PipelineConfig, PipelineError

    data: dict[str, Any] = {}
    if config is not None:
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except OSError as err:
            raise PipelineError(f"--config {config}: cannot read ({err.strerror})") from err
        except yaml.YAMLError as err:
            raise PipelineError(f"--config {config}: invalid YAML") from err
        if not isinstance(data, dict):
            raise PipelineError(f"--config {config}: expected a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return PipelineConfig.from_dict(data, where=f"--config {config}" if config else "settings")


def pipeline(
    input_file: Annotated[
        Path, typer.Argument(help="SMILES per line (optional name after it) or an SDF file.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (one folder per molecule).")],
    cluster: Annotated[str, typer.Option(help="'local' (LocalCluster) or 'slurm'.")] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler (tcp://host:port).")
    ] = None,
    jobqueue: Annotated[
        Path | None, typer.Option(help="SLURM settings for --cluster slurm (slurm/jobqueue.yaml).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file of stage settings (PipelineConfig fields).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seed conformers per molecule.")] = None,
    md_ns: Annotated[
        float | None, typer.Option(help="Reference MD per molecule and replica in ns (0: none).")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="Training seconds per molecule.")] = None,
    samples: Annotated[int | None, typer.Option(help="Flow samples per molecule.")] = None,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    level: Annotated[
        str | None, typer.Option(help="Reweight to a GFN-xTB level: gfn2, gfn2:water, ...")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Per-stage progress bars on stderr.")] = True,
) -> None:
    """Conformer ensembles for every molecule of a file, on a Dask cluster; rerun to resume."""
    from rich.console import Console
    from rich.table import Table

    from confflow.pipeline import (
        open_cluster,
        read_inputs,
        run_pipeline,
        summary_rows,
    )

    overrides = {"n_seeds": seeds, "md_ns": md_ns, "budget": budget}
    overrides |= {"n_samples": samples, "device": device, "seed": seed, "level": level}
    settings = _settings(config, overrides)
    read_inputs(input_file)  # bad input fails before any cluster starts
    with open_cluster(cluster, scheduler=scheduler, jobqueue=jobqueue, workers=workers) as h:
        typer.echo(f"cluster    {h.description}")
        typer.echo(f"dashboard  {h.dashboard or 'none'}")
        summary = run_pipeline(input_file, out, settings, h.client, gpus=h.gpus, progress=progress)
    table = Table(title=f"confflow pipeline: {len(summary.records)} molecules")
    for column in ("molecule", "status", "ESS %", "effective", "seconds", "note"):
        table.add_column(column)
    for row in summary_rows(summary):
        table.add_row(*row)
    Console().print(table)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    typer.echo(f"{counts} in {summary.seconds:.1f} s; manifest {summary.manifest}")
    if summary.counts.get("failed"):
        raise typer.Exit(code=EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Adds ``pipeline`` to the ``confflow`` app."""
    app.command()(guarded(pipeline))
