"""State populations of ``confflow generate`` against classical harmonic references.

Ring puckers with axial/equatorial substituents, nitrogen invertomers, the anomeric effect,
proline puckers and amide cis/trans, on small molecules whose states are known. For each case
``confflow generate`` runs with its defaults (``--budget`` overrides) and its weighted samples
are classified by a geometric feature of the case (axial/equatorial by the angle to the ring's
Cremer-Pople normal, cis/trans or the sign of a torsion). The reference is computed without
the generator: every MMFF94 minimum found by exhaustive ETKDG + minimisation, weighted by its
classical harmonic free energy (finite-difference Hessian of the analytic gradient, symmetry
numbers counted; :func:`confflow.chem.minima.harmonic_minima`). The populations of minima by
energy alone (the CREST/GEOM convention, no basin widths) are shown beside it.

Target: every class holding at least :data:`FLOOR` of the reference population is within a
factor 1.5 of it. Prints a table; ``--json`` writes the rows and the summary.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem

from confflow.atomic import write_json
from confflow.chem import Molecule
from confflow.chem.conformation import substituent_position
from confflow.chem.minima import harmonic_minima
from confflow.energies import kT
from confflow.generate import GenerateConfig, run_generate
from confflow.reweighting import torsion

#: Reference populations below this are reported but not scored.
FLOOR = 1e-3
#: Largest accepted ratio between generator and reference populations.
FACTOR = 1.5


@dataclass(frozen=True)
class Case:
    """A molecule and the features that name its states.

    Attributes:
        name: short name.
        smiles: input (atom indices below are RDKit's: heavy atoms in SMILES order).
        features: ``("axial", ring, atom, substituent)`` (``substituent`` ``-1``: the
            hydrogen on ``atom``), ``("cis", (a, b, c, d))`` or ``("sign", (a, b, c, d))``.
    """

    name: str
    smiles: str
    features: tuple


SIX = (1, 2, 3, 4, 5, 6)
CASES = (
    Case("methylcyclohexane", "CC1CCCCC1", (("axial", SIX, 1, 0),)),
    Case("fluorocyclohexane", "FC1CCCCC1", (("axial", SIX, 1, 0),)),
    Case(
        "trans-1,2-dimethylcyclohexane",
        "C[C@@H]1CCCC[C@H]1C",
        (("axial", SIX, 1, 0), ("axial", SIX, 6, 7)),
    ),
    Case("N-methylpiperidine", "CN1CCCCC1", (("axial", SIX, 1, 0),)),
    Case("morpholine", "C1COCCN1", (("axial", (0, 1, 2, 3, 4, 5), 5, -1),)),
    Case("2-methoxytetrahydropyran", "CO[C@@H]1CCCCO1", (("axial", (2, 3, 4, 5, 6, 7), 2, 1),)),
    Case(
        "Ac-Pro-OMe",
        "CC(=O)N1CCC[C@H]1C(=O)OC",
        (("cis", (0, 1, 3, 7)), ("sign", (3, 7, 6, 5))),
    ),
    Case("N-ethyl-N-methylacetamide", "CCN(C)C(C)=O", (("cis", (5, 4, 2, 1)),)),
    Case("N-methylacetamide", "CNC(C)=O", (("cis", (3, 2, 1, 0)),)),
)


def _hydrogen_on(molecule: Molecule, atom: int) -> int:
    return next(
        n.GetIdx()
        for n in molecule.rdkit_mol.GetAtomWithIdx(atom).GetNeighbors()
        if n.GetAtomicNum() == 1
    )


def classify(case: Case, molecule: Molecule, x: torch.Tensor) -> list[str]:
    """The class of each conformer ``x [B, N, 3]`` (nm): its features joined by ``/``."""
    parts = []
    for feature in case.features:
        if feature[0] == "axial":
            _, ring, atom, sub = feature
            sub = _hydrogen_on(molecule, atom) if sub < 0 else sub
            axial = substituent_position(x, ring, atom, sub)
            parts.append(["ax" if a else "eq" for a in axial.tolist()])
        elif feature[0] == "cis":
            angle = torsion(x, feature[1]).abs()
            parts.append(["cis" if a < math.pi / 2 else "trans" for a in angle.tolist()])
        else:
            angle = torsion(x, feature[1])
            parts.append(["+" if a > 0 else "-" for a in angle.tolist()])
    return ["/".join(p) for p in zip(*parts, strict=True)]


def _sum_by_class(labels: list[str], weights: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, w in zip(labels, weights, strict=True):
        out[label] = out.get(label, 0.0) + float(w)
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def reference(case: Case, molecule: Molecule, conformers: int, temperature: float) -> dict:
    """Harmonic and energy-only populations of the case's classes over all MMFF94 minima."""
    minima = harmonic_minima(molecule, n_conformers=conformers, temperature=temperature)
    labels = classify(case, molecule, minima.x)
    harmonic = _sum_by_class(labels, minima.population.numpy())
    beta = 1.0 / kT(temperature)
    log_e = -beta * (minima.energy - minima.energy.min()) - minima.symmetry.double().log()
    by_energy = _sum_by_class(labels, torch.softmax(log_e, 0).numpy())
    return {"harmonic": harmonic, "energy": by_energy, "minima": int(minima.x.shape[0])}


def generated(case: Case, molecule: Molecule, budget: float | None, seed: int) -> dict:
    """Class populations of ``confflow generate``'s weighted samples, with standard errors."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"progress": False, "device": "cpu", "seed": seed}
        if budget is not None:
            settings["budget"] = budget
        config = GenerateConfig(case.smiles, Path(tmp) / "out.sdf", **settings)
        start = time.perf_counter()
        result = run_generate(config)
        seconds = time.perf_counter() - start
        records = list(Chem.SDMolSupplier(str(result.sdf), removeHs=False))
    x = torch.from_numpy(np.stack([r.GetConformer().GetPositions() for r in records])) / 10.0
    w = np.array([float(r.GetProp("weight")) for r in records])
    labels = classify(case, molecule, x)
    pops = _sum_by_class(labels, w)
    n_eff = result.ess * len(records)
    errors = {k: math.sqrt(max(p * (1 - p), 1e-12) / n_eff) for k, p in pops.items()}
    report = result.report_data
    return {
        "populations": pops,
        "errors": errors,
        "ess": result.ess,
        "seconds": seconds,
        "model": report["model"],
        "states": len(report.get("states", [])),
    }


def score(ref: dict[str, float], gen: dict[str, float]) -> float:
    """Largest ratio (>= 1) between generator and reference over classes above the floor."""
    worst = 1.0
    for label, p in ref.items():
        if p < FLOOR:
            continue
        q = gen.get(label, 0.0)
        worst = max(worst, math.inf if q == 0 else max(q / p, p / q))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write rows and summary here")
    parser.add_argument("--budget", type=float, default=None, help="generate --budget (s)")
    parser.add_argument("--conformers", type=int, default=300, help="ETKDG seeds of the reference")
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(
        f"| {'case':<30} | {'class':<12} | {'harmonic':>9} | {'energy':>9} | "
        f"{'generate':>17} | {'ratio':>5} |"
    )
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        molecule = Molecule.from_smiles(case.smiles, stereo="first")
        start = time.perf_counter()
        ref = reference(case, molecule, args.conformers, 300.0)
        ref_seconds = time.perf_counter() - start
        gen = generated(case, molecule, args.budget, args.seed)
        ratio = score(ref["harmonic"], gen["populations"])
        for label in sorted(set(ref["harmonic"]) | set(gen["populations"])):
            p = gen["populations"].get(label, 0.0)
            e = gen["errors"].get(label, 0.0)
            print(
                f"| {case.name:<30} | {label:<12} | {ref['harmonic'].get(label, 0.0):9.4f} | "
                f"{ref['energy'].get(label, 0.0):9.4f} | {p:9.4f} +- {e:.4f} | {ratio:5.2f} |"
            )
        rows.append(
            {
                "case": case.name,
                "smiles": case.smiles,
                "reference": ref,
                "reference_seconds": ref_seconds,
                "generate": gen,
                "ratio": ratio,
                "within_target": ratio <= FACTOR,
            }
        )
    summary = {
        "cases": len(rows),
        "within_target": sum(r["within_target"] for r in rows),
        "worst_ratio": max((r["ratio"] for r in rows), default=float("nan")),
        "median_ess": float(np.median([r["generate"]["ess"] for r in rows])) if rows else None,
    }
    print(summary)
    if args.json is not None:
        write_json(args.json, {"rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
