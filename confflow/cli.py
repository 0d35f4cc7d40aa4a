"""The ``confflow`` command line: a thin layer over the library."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from confflow import __version__
from confflow.cli_bg import register as _register_bg
from confflow.cli_generate import register as _register_generate
from confflow.cli_pipeline import register as _register_pipeline

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


@app.command()
def md(
    out: Annotated[Path, typer.Option(help="Output directory (trajectory.h5, metadata.json).")],
    system: Annotated[
        str | None, typer.Option(help="Named system: aldp, aldp-ff96 or aldp-vacuum.")
    ] = None,
    smiles: Annotated[
        str | None, typer.Option(help="Any molecule, simulated with MMFF94 through OpenMM.")
    ] = None,
    ns: Annotated[float, typer.Option(help="Production length in ns.")] = 1.0,
    temperature: Annotated[float, typer.Option(help="Temperature in K.")] = 300.0,
    timestep_fs: Annotated[float, typer.Option(help="Time step in fs.")] = 1.0,
    friction: Annotated[float, typer.Option(help="Langevin friction in 1/ps.")] = 1.0,
    stride_ps: Annotated[float, typer.Option(help="Time between stored frames in ps.")] = 1.0,
    chunk_frames: Annotated[int, typer.Option(help="Frames per atomic chunk/checkpoint.")] = 100,
    equilibration_ps: Annotated[float, typer.Option(help="Unrecorded MD first, in ps.")] = 10.0,
    platform: Annotated[
        str, typer.Option(help="OpenMM platform, or auto (Reference, CPU for custom forces).")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (>= 1).")] = 1,
    replicas: Annotated[
        int, typer.Option(help="Temperature replica exchange with this many replicas (0: off).")
    ] = 0,
    t_max: Annotated[float, typer.Option(help="Highest replica temperature in K.")] = 1000.0,
    exchange_ps: Annotated[float, typer.Option(help="Time between swap attempts in ps.")] = 1.0,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in OUT.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar with ns/day on stderr.")] = True,
) -> None:
    """Langevin MD or replica exchange with OpenMM; mdtraj HDF5 output, resumable."""
    from confflow.md import MDConfig, ReplicaConfig, resolve_system, run_md

    if (system is None) == (smiles is None):
        typer.echo("error: give exactly one of --system or --smiles", err=True)
        raise typer.Exit(code=2)
    try:
        config = MDConfig(
            temperature=temperature,
            ns=ns,
            timestep_fs=timestep_fs,
            friction_per_ps=friction,
            stride_ps=stride_ps,
            chunk_frames=chunk_frames,
            equilibration_ps=equilibration_ps,
            platform=platform,
            seed=seed,
        )
        ladder = None
        if replicas:
            ladder = ReplicaConfig(n_replicas=replicas, t_max=t_max, exchange_ps=exchange_ps)
            ladder.exchange_steps(config)
        md_system = resolve_system(f"smiles:{smiles}" if smiles is not None else str(system), seed)
        result = run_md(md_system, config, out, replicas=ladder, resume=resume, progress=progress)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(f"confflow md: {md_system.name} at {temperature:g} K")
    typer.echo(f"  frames      {result.n_frames}")
    typer.echo(f"  wall time   {result.wall_s:.1f} s")
    typer.echo(f"  speed       {result.ns_per_day:.0f} ns/day")
    for key, value in result.summary.items():
        typer.echo(f"  {key:<11s} {value}")
    typer.echo(f"  trajectory  {result.trajectory}")


datasets_app = typer.Typer(
    help="Named MD datasets: list the recipes, generate one into the cache.",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list() -> None:
    """List the named datasets with their size and cost."""
    from confflow.datasets import DATASETS

    for recipe in DATASETS.values():
        typer.echo(recipe.describe())
        typer.echo(f"    {recipe.description}")
    typer.echo("smiles:<SMILES>: 1 ns of MMFF94 MD at 300 K of any molecule")


@datasets_app.command("generate")
def datasets_generate(
    name: Annotated[str, typer.Argument(help="Dataset name, or smiles:<SMILES>.")],
    cache: Annotated[
        Path | None,
        typer.Option(help="Cache directory (default: CONFFLOW_CACHE_DIR or user cache)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar with ns/day on stderr.")] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes for the chains of an umbrella recipe (default: one per chain)."
        ),
    ] = None,
) -> None:
    """Generate (or resume, or find) a dataset in the cache and print its summary."""
    from confflow.datasets import dataset_path, generate, get_recipe, reference_phi_free_energy

    try:
        recipe = get_recipe(name)
        typer.echo(recipe.describe())
        t0 = time.perf_counter()
        result = generate(recipe, cache, progress=progress, workers=workers)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(f"  frames      {result.n_frames}")
    typer.echo(f"  wall time   {time.perf_counter() - t0:.1f} s")
    if recipe.system.startswith("aldp"):
        est = reference_phi_free_energy(recipe.name, cache)
        typer.echo(f"  F(phi>0) - F(phi<0) = {est.delta_f:.3f} +- {est.stderr:.3f} kT")
        if recipe.umbrella and recipe.umbrella.n_chains > 1:
            for chain in range(recipe.umbrella.n_chains):
                one = reference_phi_free_energy(recipe.name, cache, chains=[chain])
                typer.echo(f"    chain {chain} alone: {one.delta_f:.3f} +- {one.stderr:.3f} kT")
    typer.echo(f"  directory   {dataset_path(recipe.name, cache)}")


_register_bg(app)
_register_pipeline(app)
_register_generate(app)
