"""``confflow reweight``: ESS and free energies of macrostates from a samples file.

A thin layer over :mod:`confflow.reweighting`: free energies (kT) of each macrostate relative
to the first, ``F_B - F_A``, with bootstrap confidence intervals. With ``--energy gfn2[:solvent]``
the samples of a molecule are first reweighted to that GFN-xTB level
(:func:`~confflow.reweighting.change_level`): the ESS kept through the change is printed, every
figure is at the level, and ``--out`` keeps the level's energies. Errors go through the CLI's error
boundary.
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
    cv: Annotated[
        str | None, typer.Option(help="Collective variable: xI, torsion:i,j,k,l, phi, psi.")
    ] = None,
    macrostate: Annotated[
        list[str] | None,
        typer.Option(help="NAME=LOW:HIGH in the CV's units (repeat; first = A)."),
    ] = None,
    energy: Annotated[
        str | None,
        typer.Option(help="Reweight to a GFN-xTB level: gfn2, gfn1, gfn2:water, ..."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="With --energy: write the samples with the level's energies (.npz)."),
    ] = None,
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
        data = dict(np.load(samples))
        x = torch.from_numpy(data["x"])
        log_w = torch.from_numpy(data["log_w"])
        target = json.loads(str(data["target"]))
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{samples}: not a samples file of confflow sample ({err})") from err
    macrostate = macrostate or []
    if cv is not None and len(macrostate) < 2:
        raise InputError("--macrostate: give at least two macrostates")
    if cv is None and macrostate:
        raise InputError("--macrostate: needs --cv")
    if out is not None and (energy is None or out.suffix != ".npz"):
        raise InputError(f"--out {out}: needs --energy and a .npz name")
    level = None
    if energy is not None:
        level, log_w = _to_level(energy, data, target, x, log_w)
    results = {}
    if cv is not None:
        values, period = _cv(cv, x, target["kind"])
        states = [_macrostate(m) for m in macrostate]
        masks = [in_range(values, lo, hi, period) for _, lo, hi in states]
        gen = torch.Generator().manual_seed(seed)
        results = {
            f"{states[0][0]}->{name}": free_energy_difference(
                log_w, masks[0], mask, n_bootstrap=bootstrap, generator=gen
            )
            for (name, _, _), mask in zip(states[1:], masks[1:], strict=True)
        }
    kept = torch.isfinite(log_w)
    ess, share = kish_ess(log_w[kept]), largest_weight_share(log_w[kept])
    typer.echo(f"{int(kept.sum())} samples: ESS {100 * ess:.2f} %, largest weight {share:.3g}")
    for key, r in results.items():
        typer.echo(
            f"  dF {key:<16} {r.value:8.3f} kT  (95% CI {r.low:.3f} .. {r.high:.3f}, "
            f"sd {r.std:.3f})"
        )
    if out is not None and level is not None:
        _write_level_samples(out, data, level, log_w)
        typer.echo(f"  samples at {level['name']} -> {out}")
    if json_out is not None:
        report = {"ess": ess, "largest_weight": share, "n": int(kept.sum())}
        report["free_energies"] = {k: r.to_dict() for k, r in results.items()}
        if level is not None:
            report["level"] = {k: v for k, v in level.items() if k not in ("energy", "method")}
        write_json(json_out, report)
    if plots is not None:
        from confflow.reweighting.plots import free_energy_profile, log_weight_histogram

        plots.mkdir(parents=True, exist_ok=True)
        log_weight_histogram(plots / "log_weights.png", log_w)
        label = f"{cv} (rad)" if period is not None else cv
        free_energy_profile(plots / "profile.png", values, log_w, label=label)
        typer.echo(f"  plots in {plots}")


def _to_level(spec: str, data: dict, target: dict, x, log_w):
    """The samples' log-weights at the level ``spec``, and what the change did.

    Prints the ESS kept through the change and one line per failed conformer (at most
    :data:`~confflow.generate.ensemble.MAX_LISTED_FAILURES`).

    Returns:
        ``(facts, log_w)``: a dict with ``name``, ``ess_change``, ``failed``, ``failures`` and
        ``energy`` (``[B]`` kJ/mol, NaN where failed), and the ``[B]`` log-weights at the level
        (``-inf`` for failed samples).

    Raises:
        InputError: samples of a target without atoms, or a level the molecule cannot have.
    """
    import torch

    from confflow.energies import XTBEnergy
    from confflow.generate.ensemble import MAX_LISTED_FAILURES
    from confflow.models import TargetConfig
    from confflow.models.targets import build_target
    from confflow.reweighting import change_level

    molecule = build_target(TargetConfig(**target), float(data["temperature"])).molecule
    if molecule is None:
        raise InputError(f"--energy {spec}: the samples are of {target['kind']}, not a molecule")
    try:
        xtb = XTBEnergy.from_molecule(
            molecule, spec, workers=torch.get_num_threads(), progress=True
        )
    except ValueError as err:
        raise InputError(f"--energy {spec}: {err}") from err
    result = xtb.evaluate(x)
    energy = torch.from_numpy(data["energy"])
    try:
        change = change_level(log_w, energy, result.energy, float(data["temperature"]))
    except ValueError as err:
        first = min(result.failures.items(), default=(0, "no energies"))
        raise InputError(f"--energy {spec}: conformer {first[0]}: {first[1]} ({err})") from err
    failures = sorted(result.failures.items())
    for index, message in failures[:MAX_LISTED_FAILURES]:
        typer.echo(f"  {xtb.level.name}: conformer {index} excluded: {message}", err=True)
    typer.echo(
        f"level {xtb.level.name}: ESS {100 * change.ess:.2f} %, {100 * change.ess_change:.0f} % "
        f"of the force field's; {change.n_failed} conformers failed"
    )
    facts = {
        "name": xtb.level.name,
        "ess_change": change.ess_change,
        "failed": change.n_failed,
        "failures": [{"sample": i, "message": m} for i, m in failures[:MAX_LISTED_FAILURES]],
        "method": xtb.level.method,
        "energy": result.energy,
    }
    return facts, change.log_w


def _write_level_samples(path: Path, data: dict, level: dict, log_w) -> None:
    """The samples file with the level's energies (kJ/mol) and log-weights, atomically."""
    import numpy as np

    from confflow.atomic import atomic_path

    arrays = {**data, f"energy_{level['method']}": level["energy"].numpy(), "log_w": log_w.numpy()}
    arrays["log_w_force_field"] = data["log_w"]
    arrays["level"] = level["name"]
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)


def register(app: typer.Typer) -> None:
    """Adds ``reweight`` to the ``confflow`` app."""
    app.command()(guarded(reweight))
