"""``confflow datasets list`` and ``confflow datasets generate``: named MD datasets.

Thin layers over :mod:`confflow.datasets`; errors go through the CLI's error boundary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import guarded

__all__ = ["datasets_generate", "datasets_list", "register"]


def datasets_list() -> None:
    """List the named datasets with their size and cost."""
    from confflow.datasets import DATASETS

    for recipe in DATASETS.values():
        typer.echo(recipe.describe())
        typer.echo(f"    {recipe.description}")
    typer.echo("smiles:<SMILES>: 1 ns of MMFF94 MD at 300 K of any molecule")


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

    recipe = get_recipe(name)
    typer.echo(recipe.describe())
    t0 = time.perf_counter()
    result = generate(recipe, cache, progress=progress, workers=workers)
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


def register(app: typer.Typer) -> None:
    """Adds the ``datasets`` group (``list``, ``generate``) to the ``confflow`` app."""
    group = typer.Typer(
        help="Named MD datasets: list the recipes, generate one into the cache.",
        no_args_is_help=True,
    )
    group.command("list")(guarded(datasets_list))
    group.command("generate")(guarded(datasets_generate))
    app.add_typer(group, name="datasets")
