"""``confflow reweight``: ESS and free energies of macrostates from a samples file.

A thin layer over :mod:`confflow.reweighting`: free energies (kT) of each macrostate relative
to the first, ``F_B - F_A``, with bootstrap confidence intervals. Errors go through the CLI's
error boundary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from confflow.cli.boundary import guarded
from confflow.errors import InputError

__all__ = ["register", "reweight"]


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
    raise InputError(
        f"--cv {spec!r}: expected xI (feature I), torsion:i,j,k,l, or phi/psi for alanine dipeptide"
    )


def _macrostate(spec: str) -> tuple[str, float, float]:
    try:
        name, bounds = spec.split("=", 1)
        low, high = (float(v) for v in bounds.split(":"))
    except ValueError as err:
        raise InputError(f"--macrostate {spec!r}: expected NAME=LOW:HIGH") from err
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

    from confflow.atomic import write_json
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
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{samples}: not a samples file of confflow sample ({err})") from err
    if len(macrostate) < 2:
        raise InputError("--macrostate: give at least two macrostates")
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
        write_json(json_out, report)
    if plots is not None:
        from confflow.reweighting.plots import free_energy_profile, log_weight_histogram

        plots.mkdir(parents=True, exist_ok=True)
        log_weight_histogram(plots / "log_weights.png", log_w)
        label = f"{cv} (rad)" if period is not None else cv
        free_energy_profile(plots / "profile.png", values, log_w, label=label)
        typer.echo(f"  plots in {plots}")


def register(app: typer.Typer) -> None:
    """Adds ``reweight`` to the ``confflow`` app."""
    app.command()(guarded(reweight))
