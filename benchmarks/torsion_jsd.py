"""Torsion marginals of ``confflow generate`` against long MMFF94 replica exchange.

For each molecule (default: three small ones of ``datasets/molecules/druglike.smi``):

1. reference: replica exchange of the MMFF94 OpenMM System with ``confflow.md`` (4 replicas,
   300-600 K, swaps every 0.1 ps, frames every 0.5 ps, ``--md-ns`` ns per replica), the 300 K
   replica; resumable in ``--work/<name>/``;
2. ``confflow generate`` with its defaults (``-n`` samples; ``--relax-steps K`` to override its
   relaxation) into ``--work/<name>-ensemble/`` (``<name>-ensemble-stepsK/``);
3. for every heavy-atom torsion ``a-b-c-d`` about a rotatable bond: ``--bins`` histograms over
   (-180, 180] degrees of the reference frames and of the written conformers weighted by their
   ``weight`` tag, and their Jensen-Shannon divergence in bits (log base 2: 0 identical,
   1 disjoint). The divergence between the two halves of the reference is reported as its
   noise floor.

Symmetry: where ``a`` (or ``d``) has topologically equivalent siblings, e.g. the two ortho
carbons of a phenyl ring, the choice of ``d`` is arbitrary and the true marginal is the same
for every choice; both histograms are averaged over the equivalent choices, which removes the
ring-flip asymmetry a finite MD run leaves in one of them without favouring either side.

Prints one row per torsion; ``--json`` writes ``max_jsd`` (largest over all torsions),
``max_jsd_md_halves`` and the rows.

Usage:
    python benchmarks/torsion_jsd.py [--molecules amphetamine benzocaine hydrocinnamic_acid]
        [--md-ns 2] [-n 5000] [--relax-steps K] [--work DIR] [--json out]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem

from confflow.atomic import write_json
from confflow.chem import Molecule
from confflow.generate import GenerateConfig, run_generate
from confflow.generate.molecule import rotatable_torsions
from confflow.md import MDConfig, ReplicaConfig, read_frames, run_md, smiles_system
from confflow.reweighting import torsion

ROOT = Path(__file__).resolve().parent.parent
MOLECULES = ROOT / "datasets" / "molecules" / "druglike.smi"


def dihedrals(x: np.ndarray, quads: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Torsions ``[T, K]`` in rad of positions ``[T, N, 3]`` (any length unit)."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    return torch.stack([torsion(xt, q) for q in quads], dim=1).numpy()


def equivalent_torsions(
    mol: Chem.Mol, quad: tuple[int, int, int, int]
) -> list[tuple[int, int, int, int]]:
    """``quad`` and its variants with ``a``/``d`` replaced by topologically equivalent atoms."""
    rank = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    a, b, c, d = quad

    def twins(end: int, centre: int, other: int) -> list[int]:
        atoms = mol.GetAtomWithIdx(centre).GetNeighbors()
        return [n.GetIdx() for n in atoms if n.GetIdx() != other and rank[n.GetIdx()] == rank[end]]

    return [(a2, b, c, d2) for a2 in twins(a, b, c) for d2 in twins(d, c, b)]


def histogram(theta: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """Normalised histogram of ``theta [T, V]`` (rad; V equivalent variants pooled)."""
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    h, _ = np.histogram(theta.ravel(), bins=edges, weights=np.repeat(weights, theta.shape[1]))
    return h / h.sum()


def jsd_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two histograms, in bits."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / m[mask])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def reference(smiles: str, out: Path, ns: float) -> np.ndarray:
    """Positions ``[T, N, 3]`` nm of the 300 K replica (runs or resumes the exchange)."""
    config = MDConfig(ns=ns, stride_ps=0.5, chunk_frames=500)
    replicas = ReplicaConfig(n_replicas=4, t_max=600.0, exchange_ps=0.1)
    result = run_md(
        smiles_system(smiles),
        config,
        out,
        replicas=replicas,
        resume=(out / "metadata.json").exists(),
    )
    return read_frames(result.trajectory).positions


def ensemble(
    smiles: str, out: Path, n: int, seed: int, options: dict
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Positions ``[S, N, 3]`` (Å), weights ``[S]`` and report of a generate run.

    ``options`` are :class:`GenerateConfig` fields beside the defaults (``relax_steps``).
    """
    sdf = out / "ensemble.sdf"
    if not sdf.exists():
        out.mkdir(parents=True, exist_ok=True)
        run_generate(GenerateConfig(smiles=smiles, out=sdf, n=n, seed=seed, **options))
    records = [r for r in Chem.SDMolSupplier(str(sdf), removeHs=False) if r is not None]
    x = np.stack([r.GetConformer().GetPositions() for r in records])
    w = np.array([float(r.GetProp("weight")) for r in records])
    report = json.loads(sdf.with_suffix(".json").read_text())
    return x, w, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--molecules", nargs="+", default=["amphetamine", "benzocaine", "hydrocinnamic_acid"]
    )
    parser.add_argument("--md-ns", type=float, default=2.0, help="ns per replica")
    parser.add_argument("-n", type=int, default=5000, help="generate samples")
    parser.add_argument(
        "--relax-steps", type=int, default=None, help="generate --relax-steps (default: its own)"
    )
    parser.add_argument("--bins", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("torsion_jsd"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = dict(line.split()[::-1] for line in MOLECULES.read_text().splitlines() if line.strip())
    rows = []
    print("| molecule | torsion (atoms) | JSD bits | JSD MD halves | ESS % |")
    print("|---|---|---|---|---|")
    for name in args.molecules:
        smiles = table[name]
        t0 = time.perf_counter()
        md = reference(smiles, args.work / name, args.md_ns)
        md_s = time.perf_counter() - t0
        options, label = {}, "ensemble"
        if args.relax_steps is not None:
            options["relax_steps"] = args.relax_steps
            label += f"-steps{args.relax_steps}"
        x, w, report = ensemble(smiles, args.work / f"{name}-{label}", args.n, args.seed, options)
        molecule = Molecule.from_smiles(smiles, stereo="first")
        quads = rotatable_torsions(molecule)
        half = len(md) // 2
        for quad in quads:
            variants = equivalent_torsions(molecule.rdkit_mol, quad)
            theta_md, theta_bg = dihedrals(md, variants), dihedrals(x, variants)
            p = histogram(theta_md, np.ones(len(theta_md)), args.bins)
            q = histogram(theta_bg, w, args.bins)
            a = histogram(theta_md[:half], np.ones(half), args.bins)
            b = histogram(theta_md[half:], np.ones(len(theta_md) - half), args.bins)
            row = {
                "molecule": name,
                "torsion": list(quad),
                "equivalent_choices": len(variants),
                "jsd_bits": jsd_bits(p, q),
                "jsd_md_halves_bits": jsd_bits(a, b),
                "ess": report["ess"],
                "md_frames": len(theta_md),
                "md_seconds": md_s,
                "generate_seconds": report.get("wall_s"),
            }
            rows.append(row)
            print(
                f"| {name} | {'-'.join(map(str, quad))} | {row['jsd_bits']:.4f} | "
                f"{row['jsd_md_halves_bits']:.4f} | {100 * report['ess']:.1f} |"
            )
    summary = {
        "max_jsd": max(r["jsd_bits"] for r in rows),
        "max_jsd_md_halves": max(r["jsd_md_halves_bits"] for r in rows),
        "torsions": len(rows),
        "torsions_within_0.05": sum(r["jsd_bits"] <= 0.05 for r in rows),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json is not None:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
