"""The ``train``, ``sample`` and ``reweight`` commands of the ``confflow`` CLI.

Thin layers over :mod:`confflow.training`, :mod:`confflow.models` and
:mod:`confflow.reweighting`; registered on the main app by :func:`register`. Bad input exits
with status 2 and a one-line message; a failed run (diverged training, unusable checkpoint)
with status 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "reweight", "sample", "train"]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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

    from confflow.models import build_boltzmann_generator
    from confflow.training import CheckpointError, Trainer, TrainingDivergedError
    from confflow.training.spec import load_dataset, read_spec

    try:
        run = read_spec(spec)
        overrides = {"steps": steps, "seed": seed, "device": device}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        config = dataclasses.replace(run.train, progress=progress, **overrides)
        torch.manual_seed(config.seed)
        train_x = val_x = None
        if run.dataset is not None:
            train_x, val_x, _ = load_dataset(run.dataset)
        model = build_boltzmann_generator(run.model, data=train_x)
        out.mkdir(parents=True, exist_ok=True)
        run = dataclasses.replace(run, model=model.config, train=config)
        _write_json(out / "config.json", run.to_dict())
        trainer = Trainer(model, config, train_x, val_x, out)
    except ValueError as err:
        raise _fail(str(err), 2) from err
    except OSError as err:
        raise _fail(f"{out}: {err.strerror}", 2) from err
    try:
        result = trainer.fit(resume=resume)
    except (CheckpointError, TrainingDivergedError) as err:
        raise _fail(str(err), 1) from err
    if result.resumed_from is not None:
        typer.echo(f"resumed from step {result.resumed_from}")
    typer.echo(f"trained {model.target.description}: {result.step} steps")
    typer.echo(f"  skipped steps       {result.skipped}")
    for key, value in result.metrics.items():
        typer.echo(f"  {key:<19} {value:.6g}")
    typer.echo(f"  target evaluations  {result.target_evaluations}")
    typer.echo(f"  checkpoint          {out / 'checkpoint.pt'}")


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

    from confflow.energies import kT
    from confflow.reweighting import kish_ess, largest_weight_share
    from confflow.training import load_generator, resolve_device

    if out.suffix != ".npz":
        raise _fail(f"--out {out}: must end in .npz", 2)
    try:
        dev = resolve_device(device)
        model, _ = load_generator(checkpoint, dev)
    except ValueError as err:
        raise _fail(str(err), 2) from err
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
    try:
        np.savez(
            out,
            x=x.numpy(),
            energy=energy.numpy(),
            log_q=log_q.numpy(),
            log_w=log_w.numpy(),
            temperature=model.temperature,
            target=json.dumps(model.config.target.__dict__),
            fingerprint=model.fingerprint,
        )
    except OSError as err:
        raise _fail(f"--out {out}: {err.strerror}", 2) from err
    typer.echo(f"{n} samples of {model.target.description} -> {out}")
    typer.echo(f"  ESS                 {100 * kish_ess(log_w):.2f} %")
    typer.echo(f"  largest weight      {largest_weight_share(log_w):.3g}")
    typer.echo(f"  zero-weight samples {int(torch.isinf(log_w).sum())} (non-finite energy)")


def _cv(spec: str, x, kind: str):
    from confflow.energies.systems import ALDP_PHI, ALDP_PSI
    from confflow.reweighting import torsion

    aldp_torsions = {"phi": ALDP_PHI, "psi": ALDP_PSI}
    if spec in aldp_torsions and kind.startswith("aldp"):
        return torsion(x, aldp_torsions[spec]), 2 * math.pi
    if spec.startswith("torsion:"):
        atoms = tuple(int(a) for a in spec.removeprefix("torsion:").split(","))
        return torsion(x, atoms), 2 * math.pi
    if spec.startswith("x") and spec[1:].isdigit() and x.dim() == 2 and int(spec[1:]) < x.shape[1]:
        return x[:, int(spec[1:])], None
    raise ValueError(
        f"--cv {spec!r}: expected xI (feature I), torsion:i,j,k,l, or phi/psi for alanine dipeptide"
    )


def _macrostate(spec: str) -> tuple[str, float, float]:
    try:
        name, bounds = spec.split("=", 1)
        low, high = (float(v) for v in bounds.split(":"))
    except ValueError as err:
        raise ValueError(f"--macrostate {spec!r}: expected NAME=LOW:HIGH") from err
    return name, low, high


def reweight(
    samples: Annotated[Path, typer.Argument(help=".npz file written by confflow sample.")],
    cv: Annotated[str, typer.Option(help="Collective variable: xI, torsion:i,j,k,l, phi, psi.")],
    macrostate: Annotated[
        list[str], typer.Option(help="NAME=LOW:HIGH in the CV's units (repeat; first = A).")
    ],
    bootstrap: Annotated[int, typer.Option(min=10, help="Bootstrap replicates.")] = 200,
    seed: Annotated[int, typer.Option(min=0, help="Bootstrap seed.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for PNG plots.")] = None,
) -> None:
    """ESS and free energies (kT, with bootstrap CIs) of macrostates relative to the first."""
    import numpy as np
    import torch

    from confflow.reweighting import (
        free_energy_difference,
        in_range,
        kish_ess,
        largest_weight_share,
    )

    try:
        data = np.load(samples)
        x = torch.from_numpy(data["x"])
        log_w = torch.from_numpy(data["log_w"])
        kind = json.loads(str(data["target"]))["kind"]
    except (OSError, KeyError, ValueError) as err:
        raise _fail(f"{samples}: not a samples file of confflow sample ({err})", 2) from err
    try:
        if len(macrostate) < 2:
            raise ValueError("--macrostate: give at least two macrostates")
        values, period = _cv(cv, x, kind)
        states = [_macrostate(m) for m in macrostate]
        masks = [in_range(values, lo, hi, period) for _, lo, hi in states]
        gen = torch.Generator().manual_seed(seed)
        results = {
            f"{states[0][0]}->{name}": free_energy_difference(
                log_w, masks[0], mask, n_bootstrap=bootstrap, generator=gen
            )
            for (name, _, _), mask in zip(states[1:], masks[1:], strict=True)
        }
    except ValueError as err:
        raise _fail(str(err), 2) from err
    ess, share = kish_ess(log_w), largest_weight_share(log_w)
    typer.echo(f"{len(log_w)} samples: ESS {100 * ess:.2f} %, largest weight {share:.3g}")
    for key, r in results.items():
        typer.echo(
            f"  dF {key:<16} {r.value:8.3f} kT  (95% CI {r.low:.3f} .. {r.high:.3f}, "
            f"sd {r.std:.3f})"
        )
    if json_out is not None:
        report = {"ess": ess, "largest_weight": share, "n": len(log_w)}
        report["free_energies"] = {k: r.to_dict() for k, r in results.items()}
        _write_json(json_out, report)
    if plots is not None:
        from confflow.plots import free_energy_profile, log_weight_histogram

        plots.mkdir(parents=True, exist_ok=True)
        log_weight_histogram(plots / "log_weights.png", log_w)
        label = f"{cv} (rad)" if period is not None else cv
        free_energy_profile(plots / "profile.png", values, log_w, label=label)
        typer.echo(f"  plots in {plots}")


def register(app: typer.Typer) -> None:
    """Adds ``train``, ``sample`` and ``reweight`` to the ``confflow`` app."""
    app.command()(train)
    app.command()(sample)
    app.command()(reweight)
