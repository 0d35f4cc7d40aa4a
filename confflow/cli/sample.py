"""``confflow sample``: samples of a trained Boltzmann generator with energies and log-weights.

Writes an ``.npz`` (atomically) with positions, energies (kJ/mol), ``log q`` and log-weights
``-E / kT - log q`` (nats). Errors go through the CLI's error boundary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import guarded
from confflow.errors import InputError

__all__ = ["register", "sample"]


def sample(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by confflow train.")],
    n: Annotated[int, typer.Option("-n", min=1, help="Number of samples.")] = 10_000,
    out: Annotated[Path, typer.Option("--out", help="Output .npz file.")] = Path("samples.npz"),
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Samples per batch.")] = 10_000,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = "auto",
) -> None:
    """Draw samples with energies (kJ/mol), log q and log-weights into an .npz file."""
    import numpy as np
    import torch

    from confflow.atomic import atomic_path
    from confflow.energies import kT
    from confflow.reweighting import kish_ess, largest_weight_share
    from confflow.training import load_generator, resolve_device

    if out.suffix != ".npz":
        raise InputError(f"--out {out}: must end in .npz")
    dev = resolve_device(device)
    model, _ = load_generator(checkpoint, dev)
    gen = torch.Generator(dev).manual_seed(seed)
    xs, energies, log_qs, log_ws = [], [], [], []
    with torch.no_grad():
        for start in range(0, n, batch):
            x, log_q = model.sample(min(batch, n - start), gen)
            log_w = model.log_weights(x, log_q)
            xs.append(x.cpu().double())
            log_qs.append(log_q.cpu().double())
            log_ws.append(log_w.cpu())
            energies.append((-log_w - log_q.double()).cpu() * kT(model.temperature))
    x, energy = torch.cat(xs), torch.cat(energies)
    log_q, log_w = torch.cat(log_qs), torch.cat(log_ws)
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            x=x.numpy(),
            energy=energy.numpy(),
            log_q=log_q.numpy(),
            log_w=log_w.numpy(),
            temperature=model.temperature,
            target=json.dumps(model.config.target.__dict__),
            fingerprint=model.fingerprint,
        )
    typer.echo(f"{n} samples of {model.target.description} -> {out}")
    typer.echo(f"  ESS                 {100 * kish_ess(log_w):.2f} %")
    typer.echo(f"  largest weight      {largest_weight_share(log_w):.3g}")
    typer.echo(f"  zero-weight samples {int(torch.isinf(log_w).sum())} (non-finite energy)")


def register(app: typer.Typer) -> None:
    """Adds ``sample`` to the ``confflow`` app."""
    app.command()(guarded(sample))
