"""Stage 7: the outputs — SDF of conformers with SD tags, JSON report, optional PNGs."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

import torch
from rdkit import Chem
from torch import Tensor

from confflow.atomic import atomic_path, write_json
from confflow.chem import Molecule

__all__ = ["versions", "write_ensemble_sdf", "write_plots", "write_report"]


def write_ensemble_sdf(
    path: Path,
    molecule: Molecule,
    x: Tensor,
    tags: dict[str, Tensor | list[str]],
) -> None:
    """Writes one SD record per conformer with SD tags (atomically).

    Args:
        path: output ``.sdf``.
        molecule: the molecule.
        x: ``[B, N, 3]`` positions in nm (written in Angstrom).
        tags: name -> ``[B]`` values, e.g. ``energy_kJ_mol``, ``log_q``, ``log_w``, ``weight``
            (float tensors, written with full precision), ``state`` (integer tensors) or
            ``conformation`` (strings).
    """
    mol = molecule.with_positions(x)
    columns = {name: _column(values) for name, values in tags.items()}
    with atomic_path(path) as tmp, Chem.SDWriter(str(tmp)) as writer:
        for b, conf in enumerate(mol.GetConformers()):
            mol.SetProp("_Name", f"{molecule.smiles} conformer {b}")
            for name, values in columns.items():
                mol.SetProp(name, values[b])
            writer.write(mol, confId=conf.GetId())


def _column(values: Tensor | list[str]) -> list[str]:
    """SD tag texts: floats with full precision, integers and strings as they are."""
    if isinstance(values, Tensor):
        if values.dtype.is_floating_point:
            return [repr(v) for v in values.detach().cpu().double().tolist()]
        return [str(v) for v in values.tolist()]
    return [str(v) for v in values]


def versions() -> dict[str, str]:
    """Versions of confflow and the libraries that shape its results."""
    from importlib.metadata import version

    import openmm
    import rdkit

    from confflow import __version__

    return {
        "confflow": __version__,
        "torch": torch.__version__,
        "rdkit": rdkit.__version__,
        "openmm": openmm.__version__,
        "tblite": version("tblite"),
        "python": platform.python_version(),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Writes the JSON report atomically (non-finite numbers as ``null``)."""
    write_json(path, _clean(report))


def write_plots(
    folder: Path,
    torsions: list[tuple[int, int, int, int]],
    md_x: Tensor,
    x: Tensor,
    log_w: Tensor,
) -> list[Path]:
    """Torsion marginals (training data vs reweighted flow) and the log-weight histogram as PNGs.

    Args:
        folder: output folder (created).
        torsions: rotatable torsions as atom quadruples.
        md_x: ``[F, N, 3]`` nm training positions (MD frames and seeds).
        x: ``[B, N, 3]`` nm flow samples.
        log_w: ``[B]`` log-weights of the flow samples.

    Returns:
        Paths of the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from confflow.reweighting import normalized_weights, torsion
    from confflow.reweighting.plots import log_weight_histogram

    folder.mkdir(parents=True, exist_ok=True)
    paths = [log_weight_histogram(folder / "log_weights.png", log_w)]
    if torsions:
        w = normalized_weights(log_w).numpy()
        cols = min(4, len(torsions))
        rows = math.ceil(len(torsions) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.5 * rows), squeeze=False)
        bins = torch.linspace(-math.pi, math.pi, 37).numpy()
        for ax, atoms in zip(axes.flat, torsions, strict=False):
            ax.hist(
                torsion(md_x, atoms).numpy(), bins, density=True, alpha=0.5, label="training data"
            )
            ax.hist(
                torsion(x, atoms).numpy(),
                bins,
                weights=w,
                density=True,
                alpha=0.5,
                label="flow, reweighted",
            )
            ax.set_title("-".join(map(str, atoms)), fontsize=8)
            ax.set_xlabel("torsion (rad)")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        path = folder / "torsions.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
