"""The ``confflow`` command line: a thin layer over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from confflow import __version__

app = typer.Typer(
    name="confflow",
    help="Boltzmann-weighted molecular conformer ensembles with normalizing flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"confflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Boltzmann-weighted molecular conformer ensembles with normalizing flows."""


@app.command()
def demo(
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 800,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics to this JSON file.")
    ] = None,
) -> None:
    """Fit a circular spline flow to a known density on the torus and print its metrics."""
    from confflow.demo import as_dict, run_torus_demo

    result = run_torus_demo(steps=steps, seed=seed)
    typer.echo("confflow demo: circular rational-quadratic spline flow on a torus mixture")
    typer.echo(f"  test NLL (flow)     {result.test_nll:8.4f} nats")
    typer.echo(f"  test NLL (true)     {result.true_nll:8.4f} nats")
    typer.echo(f"  KL(p || q) estimate {result.kl_estimate:8.4f} nats")
    typer.echo(f"  ESS of flow samples {100 * result.ess:8.1f} %")
    typer.echo(f"  wall time           {result.seconds:8.1f} s")
    if json_out is not None:
        tmp = json_out.with_name(json_out.name + ".tmp")
        try:
            tmp.write_text(json.dumps(as_dict(result), indent=2))
            tmp.replace(json_out)
        except OSError as err:
            typer.echo(f"error: cannot write {json_out}: {err.strerror}", err=True)
            raise typer.Exit(code=1) from err
        typer.echo(f"  metrics written to  {json_out}")
