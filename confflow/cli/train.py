"""``confflow train``: train a Boltzmann generator from a config file or a dataset name.

A thin layer over :class:`confflow.training.Trainer`; rerunning with the same ``--out``
resumes from its last checkpoint. Errors go through the CLI's error boundary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import RunInterruptedError, guarded

__all__ = ["register", "train"]


def train(
    spec: Annotated[str, typer.Argument(help="Config file (.yaml/.yml/.json) or dataset name.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoints, logs).")],
    steps: Annotated[int | None, typer.Option(min=1, help="Override train.steps.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override train.seed.")] = None,
    device: Annotated[str | None, typer.Option(help="Override train.device.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from OUT/checkpoint.pt if present.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a Boltzmann generator; rerunning with the same --out resumes."""
    import torch

    from confflow.atomic import write_json
    from confflow.models import build_boltzmann_generator
    from confflow.training import Trainer
    from confflow.training.spec import load_dataset, read_spec

    run = read_spec(spec)
    overrides = {"steps": steps, "seed": seed, "device": device}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(run.train, progress=progress, **overrides)
    torch.manual_seed(config.seed)
    train_x = val_x = None
    if run.dataset is not None:
        train_x, val_x, _ = load_dataset(run.dataset)
    model = build_boltzmann_generator(run.model, data=train_x)  # any family of model.flow
    if train_x is not None:  # as the family's samples (torsions for the torsional one)
        train_x, val_x = model.from_positions(train_x), model.from_positions(val_x)
    out.mkdir(parents=True, exist_ok=True)
    run = dataclasses.replace(run, model=model.config, train=config)
    write_json(out / "config.json", run.to_dict())
    trainer = Trainer(model, config, train_x, val_x, out)
    try:
        result = trainer.fit(resume=resume)
    except KeyboardInterrupt as err:
        last = out / "checkpoint.pt"
        raise RunInterruptedError(
            f"the last checkpoint is kept in {last}; rerun to resume"
        ) from err
    if result.resumed_from is not None:
        typer.echo(f"resumed from step {result.resumed_from}")
    typer.echo(f"trained {model.target.description}: {result.step} steps")
    typer.echo(f"  skipped steps       {result.skipped}")
    for key, value in result.metrics.items():
        typer.echo(f"  {key:<19} {value:.6g}")
    typer.echo(f"  target evaluations  {result.target_evaluations}")
    typer.echo(f"  checkpoint          {out / 'checkpoint.pt'}")


def register(app: typer.Typer) -> None:
    """Adds ``train`` to the ``confflow`` app."""
    app.command()(guarded(train))
