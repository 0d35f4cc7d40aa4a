"""Cost of one torsional energy evaluation with its gradient: frozen, relaxed, compiled MMFF.

The target of ``confflow generate``'s torsional model is the MMFF94 energy at the free torsions
with the local structure relaxed by ``--relax-steps`` (default 4) preconditioned gradient steps
(:class:`confflow.energies.LocalRelaxation`); each step is an MMFF energy and gradient at new
internal coordinates, so one relaxed evaluation costs several frozen ones. Per molecule (from
``datasets/molecules``, an MMFF-minimised ETKDG seed as the reference), the time of the energy
and its gradient with respect to the torsions at ``--batch`` random torsion sets in float32 (as
in training):

* ``frozen`` — the seed's local structure (``relax_steps=0``);
* ``relaxed`` — ``--relax-steps`` steps, MMFF evaluated eagerly (the default);
* ``relaxed_compiled`` — the same with ``MMFFEnergy(compile=True)`` (only with ``--compile``;
  ``compile_s`` is the first call's extra time: compilation, or loading it from the cache).

Variants are timed in turn within each repeat (``--calls`` calls per timing) and the median
over ``--repeats`` is reported, so that a change of machine load hits them alike.

Usage:
    python benchmarks/relax_cost.py [--names salbutamol ibuprofen] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from pathlib import Path

import torch
from _report import report_metrics

from confflow.chem import Molecule
from confflow.coordinates import TorsionalEmbedding
from confflow.energies import MMFFEnergy, TorsionalEnergy

DEFAULT_NAMES = ("ibuprofen", "salbutamol", "lidocaine_H+", "atenolol", "haloperidol")


SETS = Path(__file__).resolve().parent.parent / "datasets" / "molecules"


def _smiles(name: str) -> str:
    for path in sorted(SETS.glob("*.smi")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] == name:
                return fields[0]
    raise SystemExit(f"relax_cost: no molecule named {name!r} in the molecule sets")


def _energies(smiles: str, steps: int, compiled: bool) -> tuple[Molecule, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mol = Molecule.from_smiles(smiles)
    embedding = TorsionalEmbedding(mol, mol.embed(1, seed=1, mmff=True)[0])
    eager = MMFFEnergy(mol.rdkit_mol)
    variants = {
        "frozen": TorsionalEnergy(eager, embedding),
        "relaxed": TorsionalEnergy(eager, embedding, relax_steps=steps),
    }
    if compiled:
        fast = MMFFEnergy(mol.rdkit_mol, compile=True)
        variants["relaxed_compiled"] = TorsionalEnergy(fast, embedding, relax_steps=steps)
    return mol, variants


def _call(energy: TorsionalEnergy, theta: torch.Tensor) -> None:
    x = theta.clone().requires_grad_(True)
    energy.energy(x).sum().backward()


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Median ms per evaluation (energy and torsion gradient) of each variant, one molecule."""
    mol, variants = _energies(_smiles(name), args.relax_steps, args.compile)
    dim = next(iter(variants.values())).embedding.dim
    gen = torch.Generator().manual_seed(0)
    theta = ((2 * torch.rand(args.batch, dim, generator=gen) - 1) * math.pi).float()
    out: dict[str, float] = {"atoms": mol.n_atoms, "torsions": dim}
    for key, energy in variants.items():
        start = time.perf_counter()
        _call(energy, theta)
        first = time.perf_counter() - start
        if key == "relaxed_compiled":
            out["compile_s"] = first
    times: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(args.repeats):
        for key, energy in variants.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                _call(energy, theta)
            times[key].append(1000 * (time.perf_counter() - start) / args.calls)
    for key, values in times.items():
        out[f"{key}_ms"] = statistics.median(values)
    out["relaxed_over_frozen"] = out["relaxed_ms"] / out["frozen_ms"]
    if args.compile:
        out["relaxed_over_compiled"] = out["relaxed_ms"] / out["relaxed_compiled_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    parser.add_argument("--batch", type=int, default=256, help="torsion sets per evaluation")
    parser.add_argument("--relax-steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5, help="calls per timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time compiled MMFF")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, float | int | str] = {"batch": args.batch, "threads": args.threads}
    for name in args.names:
        for key, value in measure(name, args).items():
            out[f"{name}/{key}"] = value
    report_metrics(out, args.json)


if __name__ == "__main__":
    main()
