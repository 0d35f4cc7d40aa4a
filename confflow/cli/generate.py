"""The ``generate`` command: a SMILES in, a Boltzmann-weighted conformer ensemble out.

A thin layer over :func:`confflow.generate.run_generate`. Errors go through the CLI's error
boundary: bad input (molecule, options, output path, checkpoint) exits with status 2, Ctrl-C
with 130, keeping the trained model if training had finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import RunInterruptedError, guarded

__all__ = ["generate", "register"]


def generate(
    smiles: Annotated[str, typer.Argument(help="The molecule as a SMILES string.")],
    out: Annotated[
        Path, typer.Option("--out", help="SDF of the ensemble; the report is OUT.json.")
    ] = Path("ensemble.sdf"),
    temperature: Annotated[float, typer.Option(help="Temperature in K.")] = 300.0,
    n: Annotated[int, typer.Option("-n", help="Flow samples to draw.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed of every stage.")] = 0,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda[:i]'.")] = "auto",
    budget: Annotated[
        float,
        typer.Option(
            help="Seconds of training (ML + refinement); a state mixture whose expected ESS "
            "is below 15% then trains up to as long again."
        ),
    ] = 120.0,
    md_ns: Annotated[
        float, typer.Option("--md-ns", help="ns of replica-exchange MD per replica (0: none).")
    ] = 0.05,
    replicas: Annotated[int, typer.Option(help="Replica-exchange temperatures (1: plain MD).")] = 4,
    energy: Annotated[str, typer.Option(help="Force field: mmff94 or mmff94s.")] = "mmff94",
    model: Annotated[
        str,
        typer.Option(
            help="'torsional' (a flow over the rotatable torsions), 'cartesian' "
            "(spline couplings over all internal coordinates), another family over all "
            "coordinates ('maf', 'iaf', 'cnf', 'egnn-cnf', 'e3nn-cnf') or 'auto' "
            "(torsional if any bond rotates)."
        ),
    ] = "auto",
    relax_steps: Annotated[
        int | None,
        typer.Option(
            "--relax-steps",
            help="Torsional model: gradient steps relaxing bonds and angles at each torsion "
            "set (default 4; 0: the frozen seed structure).",
            show_default=False,
        ),
    ] = None,
    states: Annotated[
        bool,
        typer.Option(
            "--states/--no-states",
            help="Torsional model: sample every ring pucker, nitrogen invertomer and "
            "amide/ester isomer found among the seeds (--no-states: the lowest seed's only).",
        ),
    ] = True,
    unique: Annotated[
        float | None,
        typer.Option(help="Cluster into conformers at this heavy-atom RMSD (Angstrom)."),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Reuse this trained model (skips MD and training).")
    ] = None,
    largest_fragment: Annotated[
        bool, typer.Option("--largest-fragment", help="Keep the largest fragment of a salt.")
    ] = False,
    level: Annotated[
        str | None,
        typer.Option(
            help="Reweight to a GFN-xTB level: gfn2, gfn1, gfn2:water, gfn2:gbsa:dmso, ..."
        ),
    ] = None,
    level_refine: Annotated[
        float,
        typer.Option(help="Seconds of refinement at --level when its ESS is below --level-ess."),
    ] = 300.0,
    level_ess: Annotated[
        float, typer.Option(help="ESS fraction at --level that ends (or skips) the refinement.")
    ] = 0.1,
    plots: Annotated[bool, typer.Option("--plots", help="Write PNG diagnostics.")] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="Compile MMFF's kernel in the background during seeds and MD; training "
            "switches to it when ready (--no-compile: eager throughout).",
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Boltzmann-weighted conformers of a molecule from a trained Boltzmann generator."""
    from confflow.generate import GenerateConfig, run_generate

    config = GenerateConfig(
        smiles=smiles,
        out=out,
        temperature=temperature,
        n=n,
        seed=seed,
        device=device,
        budget=budget,
        md_ns=md_ns,
        replicas=replicas,
        energy=energy,
        model=model,
        **({} if relax_steps is None else {"relax_steps": relax_steps}),
        states=states,
        unique=None if unique is None else unique / 10.0,
        checkpoint=checkpoint,
        largest_fragment=largest_fragment,
        level=level,
        level_refine=level_refine,
        level_ess=level_ess,
        plots=plots,
        compile=compile,
        progress=not quiet,
    )
    log = (lambda _: None) if quiet else (lambda line: typer.echo(line, err=True))
    try:
        result = run_generate(config, log=log)
    except KeyboardInterrupt as err:
        kept = config.run_dir / "model.pt"
        note = f"trained model kept in {kept}" if kept.exists() else "nothing was written"
        raise RunInterruptedError(note) from err
    if not quiet:
        typer.echo(f"confflow generate: {smiles} at {temperature:g} K")
        typer.echo(f"  ESS                {100 * result.ess:.1f} %")
        if "level" in result.report_data:
            facts = result.report_data["level"]
            typer.echo(
                f"  level              {facts['name']} (ESS {100 * facts['ess_change']:.0f} % "
                f"of the force field's, {facts['failed']} failed)"
            )
        typer.echo(f"  stereo rejections  {result.stereo_rejected}")
        typer.echo(f"  wall time          {result.wall_s:.1f} s")
    typer.echo(f"  ensemble           {result.sdf} ({result.n_written} conformers)")
    typer.echo(f"  report             {result.report}")
    typer.echo(f"  model              {result.checkpoint}")


def register(app: typer.Typer) -> None:
    """Adds ``generate`` to the ``confflow`` app."""
    app.command()(guarded(generate))
