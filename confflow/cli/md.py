"""``confflow md``: Langevin MD or replica exchange with OpenMM, resumable.

A thin layer over :func:`confflow.md.run_md`; errors go through the CLI's error boundary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import RunInterruptedError, guarded
from confflow.errors import InputError

__all__ = ["md", "register"]


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
        str, typer.Option(help="OpenMM platform, or auto (Reference; CPU for a CustomGBForce).")
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
        raise InputError("give exactly one of --system or --smiles")
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
    try:
        result = run_md(md_system, config, out, replicas=ladder, resume=resume, progress=progress)
    except KeyboardInterrupt as err:
        raise RunInterruptedError(
            f"completed chunks kept in {out}; rerun with --resume to continue"
        ) from err
    typer.echo(f"confflow md: {md_system.name} at {temperature:g} K")
    typer.echo(f"  frames      {result.n_frames}")
    typer.echo(f"  wall time   {result.wall_s:.1f} s")
    typer.echo(f"  speed       {result.ns_per_day:.0f} ns/day")
    for key, value in result.summary.items():
        typer.echo(f"  {key:<11s} {value}")
    typer.echo(f"  trajectory  {result.trajectory}")


def register(app: typer.Typer) -> None:
    """Adds ``md`` to the ``confflow`` app."""
    app.command()(guarded(md))
