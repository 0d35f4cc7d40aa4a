"""Benchmark of reweighting ``confflow generate`` ensembles from MMFF94 to GFN2-xTB.

For each molecule (default: eight of the 22-molecule drug-like set, neutral and charged) one
``confflow generate --level gfn2 --unique 0.5`` run with default settings, then the same
trained model sampled again with ``--level gfn2:water`` (the checkpoint is reused, so the
samples are the same; ``--levels`` chooses the levels). ``--level-refine S`` refines at each
level whose ESS is below 10% for up to S seconds (default 0: the reweighting alone).
Per molecule and level: the ESS at the level (flow -> xTB), its ratio
to the ESS at MMFF94 of the same samples (what the change of level costs), xTB wall time per
1,000 conformers on the torch threads, the largest change of a cluster population between the
levels, the conformers whose calculation failed, and the whole run's wall time.

``--crest K``: for the first K molecules, the CREST convention side by side: every cluster
representative covering 95% of the GFN2 population (at most 15) is optimised on GFN2-xTB (gas,
L-BFGS on tblite's gradient), duplicates merged (heavy-atom RMSD < 0.025 nm), and Boltzmann
weights of the minimum energies (no basin widths) set against the reweighted populations.
``--relax-check K``: for the first K molecules, how much a few GFN2-xTB relaxation steps at
fixed torsions would change the populations (the weights target the xTB energy at MMFF's local
structure): 150 samples drawn by their MMFF weights are relaxed by ``--relax-steps`` L-BFGS
iterations on GFN2-xTB with every sampled torsion restrained (hydrogen rotors included), and the
populations of conformer classes (state, and each heavy-atom torsion as g+, g- or t) are
compared at the unrelaxed and relaxed xTB energies.
Prints tables; ``--json`` writes rows and summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdMolTransforms
from scipy.optimize import minimize

from confflow.atomic import write_json
from confflow.chem import Molecule
from confflow.chem.rmsd import heavy_atom_rmsd
from confflow.energies import XTBEnergy, kT
from confflow.energies.xtb import BOHR_NM, HARTREE_KJ_MOL
from confflow.generate import GenerateConfig, run_generate
from confflow.reweighting import torsion

ROOT = Path(__file__).resolve().parent.parent
SETS = ROOT / "datasets" / "molecules"
DEFAULT = [
    "ibuprofen",
    "phenacetin",
    "aspirin",
    "diphenhydramine",
    "lidocaine_H+",
    "diclofenac_anion",
    "deet",
    "butoxybenzoate",
]
#: Clusters optimised for the CREST comparison: those covering this population, at most 15.
CREST_COVER, CREST_MAX = 0.95, 15
#: Optimised structures closer than this heavy-atom RMSD (nm) are one minimum.
SAME_MINIMUM_NM = 0.025


def level_row(report: dict, seconds: float) -> dict:
    """The figures of one level from a ``generate --level`` report."""
    level, clusters = report["level"], report["clusters"]
    change = max(abs(c["population"] - c["population_force_field"]) for c in clusters)
    kept = report["samples_kept"] + level["failed"]
    refinement = level.get("refinement") or {}
    return {
        "level": level["name"],
        "ess": level["ess"],
        "ess_change": level["ess_change"],
        "ess_force_field": level["ess_force_field"],
        "failed": level["failed"],
        "xtb_s_per_1000": 1000 * report["timings_s"]["level"] / kept,
        "largest_population_change": change,
        "clusters": len(clusters),
        "seconds": seconds,
        "ess_before_refinement": refinement.get("ess_before"),
        "refine_s": refinement.get("seconds", 0.0),
        "rounds": refinement.get("rounds", []),
    }


def _rounds(row: dict) -> str:
    """The ESS (%) and samples drawn after each refinement round of a level row."""
    return ", ".join(f"{100 * r['ess']:.1f}% of {r['n']}" for r in row["rounds"]) or "none"


def _records(sdf: Path) -> list[Chem.Mol]:
    return list(Chem.SDMolSupplier(str(sdf), removeHs=False))


def _optimise(energy: XTBEnergy, x0: np.ndarray) -> tuple[np.ndarray, float]:
    """GFN-xTB minimum (nm) from ``x0 [N, 3]`` nm by L-BFGS, and its energy (kJ/mol).

    The optimiser works in Bohr and Hartree, where its first trial step (one unit along the
    gradient) stays a sane geometry.
    """

    def fun(bohr: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(bohr.reshape(1, -1, 3) * BOHR_NM)
        e, forces = energy.energy_and_forces(x)
        return float(e[0]) / HARTREE_KJ_MOL, -forces[0].numpy().ravel() * BOHR_NM / HARTREE_KJ_MOL

    result = minimize(fun, x0.ravel() / BOHR_NM, jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-4})  # fmt: skip
    return result.x.reshape(-1, 3) * BOHR_NM, float(result.fun) * HARTREE_KJ_MOL


def crest_comparison(molecule: Molecule, sdf: Path, report: dict) -> list[dict]:
    """Reweighted GFN2 populations of the top clusters against GFN2 minima's Boltzmann weights."""
    clusters = report["clusters"]
    top, covered = [], 0.0
    for k, c in enumerate(clusters):
        if covered >= CREST_COVER or len(top) == CREST_MAX:
            break
        top.append(k)
        covered += c["population"]
    records = _records(sdf)
    energy = XTBEnergy.from_molecule(molecule, "gfn2")
    minima = []
    for k in top:
        x0 = records[k].GetConformer().GetPositions() / 10.0
        minima.append(_optimise(energy, x0))
    groups: list[list[int]] = []  # clusters whose minima coincide
    for i, (x, _) in enumerate(minima):
        for group in groups:
            ref = torch.from_numpy(minima[group[0]][0])
            if (
                float(heavy_atom_rmsd(molecule, torch.from_numpy(x)[None], ref)[0])
                < SAME_MINIMUM_NM
            ):
                group.append(i)
                break
        else:
            groups.append([i])
    e_min = np.array([min(minima[i][1] for i in g) for g in groups])
    boltzmann = np.exp(-(e_min - e_min.min()) / kT(report["temperature_K"]))
    boltzmann /= boltzmann.sum()
    rows = []
    for g, group in enumerate(groups):
        rows.append(
            {
                "clusters": [top[i] for i in group],
                "reweighted": sum(clusters[top[i]]["population"] for i in group),
                "crest": float(boltzmann[g]),
                "energy_kJ_mol": float(e_min[g] - e_min.min()),
            }
        )
    return rows


def _torsion_classes(records: list[Chem.Mol], torsions: list[tuple[int, ...]]) -> list[str]:
    """A conformer class per record: its state and each torsion's g+ / g- / t."""
    classes = []
    for rec in records:
        conf = rec.GetConformer()
        bins = "".join(
            "t" if abs(a) > 120 else ("p" if a > 0 else "m")
            for a in (rdMolTransforms.GetDihedralDeg(conf, *t) for t in torsions)
        )
        classes.append(f"{rec.GetProp('state')}:{bins}")
    return classes


def _dihedrals(x: torch.Tensor, quads: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """``[B, K]`` torsions (rad) of positions ``[B, N, 3]``, differentiable."""
    return torch.stack([torsion(x, q) for q in quads], dim=1)


def _restrained(energy: XTBEnergy, quads: list, targets: torch.Tensor, k: float):
    """``E_xtb + k sum (1 - cos(phi - phi_0))`` (Hartree) and its gradient, over Bohr."""

    def fun(bohr: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(bohr.reshape(1, -1, 3) * BOHR_NM).requires_grad_(True)
        phi = _dihedrals(x, quads)[0]
        penalty = k * (1 - torch.cos(phi - targets)).sum()
        (g_pen,) = torch.autograd.grad(penalty, x)
        e, forces = energy.energy_and_forces(x.detach())
        grad = (-forces[0] / HARTREE_KJ_MOL + g_pen[0]) * BOHR_NM
        return float(e[0]) / HARTREE_KJ_MOL + float(penalty.detach()), grad.numpy().ravel()

    return fun


def relaxation_check(
    molecule: Molecule, smiles: str, checkpoint: Path, out: Path, steps: int, n: int = 150
) -> dict:
    """Populations of conformer classes at xTB energies before and after ``steps`` relaxation."""
    from confflow.coordinates import TorsionalEmbedding
    from confflow.generate.molecule import rotatable_torsions

    config = GenerateConfig(smiles, out, checkpoint=checkpoint, progress=False, device="cpu")
    result = run_generate(config)
    records = _records(result.sdf)
    log_w = np.array([float(r.GetProp("log_w")) for r in records])
    w = np.exp(log_w - log_w.max())
    pick = np.random.default_rng(0).choice(len(records), n, p=w / w.sum())
    chosen = [records[i] for i in pick]
    x = np.stack([r.GetConformer().GetPositions() / 10.0 for r in chosen])
    e_mmff = np.array([float(r.GetProp("energy_kJ_mol")) for r in chosen])
    energy = XTBEnergy.from_molecule(molecule, "gfn2")
    e_xtb = energy.evaluate(torch.from_numpy(x)).energy.numpy()
    quads = list(TorsionalEmbedding(molecule, torch.from_numpy(x[0])).torsions)
    e_relaxed = np.empty(n)
    for i in range(n):
        targets = _dihedrals(torch.from_numpy(x[i])[None], quads)[0]
        fun = _restrained(energy, quads, targets, k=0.5)  # Hartree: ~1300 kJ/mol per rad^2 / 2
        res = minimize(fun, x[i].ravel() / BOHR_NM, jac=True, method="L-BFGS-B",
                       options={"maxiter": steps})  # fmt: skip
        relaxed = torch.from_numpy(res.x.reshape(1, -1, 3) * BOHR_NM)
        e_relaxed[i] = float(energy.energy(relaxed)[0])
    beta = 1.0 / kT(300.0)
    classes = _torsion_classes(chosen, rotatable_torsions(molecule))
    populations = {}
    for label, e in (("unrelaxed", e_xtb), ("relaxed", e_relaxed)):
        v = -(e - e_mmff) * beta
        v = np.exp(v - v.max())
        v /= v.sum()
        pops: dict[str, float] = {}
        for c, vi in zip(classes, v, strict=True):
            pops[c] = pops.get(c, 0.0) + float(vi)
        populations[label] = pops
    shift = max(
        abs(populations["relaxed"][c] - populations["unrelaxed"][c]) for c in populations["relaxed"]
    )
    drop = e_xtb - e_relaxed
    return {
        "samples": n,
        "steps": steps,
        "classes": len(populations["relaxed"]),
        "largest_population_change": shift,
        "median_energy_drop_kJ_mol": float(np.median(drop)),
        "max_energy_drop_kJ_mol": float(drop.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows and summary here")
    parser.add_argument("--names", nargs="+", default=DEFAULT, help="molecules of druglike.smi")
    parser.add_argument("--threads", type=int, default=2, help="torch threads = xTB threads")
    parser.add_argument("--budget", type=float, default=None, help="override the budget (s)")
    parser.add_argument("--crest", type=int, default=3, help="CREST comparison for the first K")
    parser.add_argument(
        "--relax-check", type=int, default=3, help="xTB relaxation check for the first K"
    )
    parser.add_argument("--relax-steps", type=int, default=5, help="L-BFGS steps of the check")
    parser.add_argument("--levels", nargs="+", default=["gfn2", "gfn2:water"], help="levels")
    parser.add_argument(
        "--level-refine", type=float, default=0.0, help="generate --level-refine (s; 0: off)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = (SETS / "druglike.smi").read_text().splitlines()
    smiles_of = {line.split()[1]: line.split()[0] for line in text if line.strip()}
    rows, crest = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for m, name in enumerate(args.names):
            extra = {} if args.budget is None else {"budget": args.budget}
            base = {"unique": 0.05, "progress": False, "device": "cpu", **extra}
            level_rows, result = [], None
            for level in args.levels:
                config = GenerateConfig(
                    smiles_of[name],
                    Path(tmp) / f"{name}_{level.replace(':', '_')}.sdf",
                    level=level,
                    level_refine=args.level_refine,
                    checkpoint=None if result is None else result.checkpoint,
                    **base,
                )
                start = time.perf_counter()
                run = run_generate(config)
                result = result or run
                level_rows.append(level_row(run.report_data, time.perf_counter() - start))
            level_data = result.report_data["level"]
            refinement = level_data.get("refinement") or {}
            # the MMFF ESS of the force-field model's samples (a refined run writes others)
            ess_mmff = refinement.get("ess_force_field_before", level_data["ess_force_field"])
            row = {"name": name, "ess_mmff": ess_mmff}
            row |= {"levels": level_rows, "timings_s": result.timings}
            rows.append(row)
            print(
                f"{name:<20} MMFF ESS {100 * row['ess_mmff']:5.1f}%  "
                + "  ".join(
                    f"{r['level']}: ESS {100 * r['ess']:5.1f}% ({100 * r['ess_change']:5.1f}% "
                    f"of MMFF's) xTB {r['xtb_s_per_1000']:5.1f} s/1000 "
                    f"dpop {r['largest_population_change']:.3f} "
                    f"before refinement {r['ess_before_refinement']} ({r['refine_s']:.0f} s, "
                    f"rounds: {_rounds(r)}) "
                    f"run {r['seconds']:.0f} s"
                    for r in level_rows
                ),
                flush=True,
            )
            if m < args.crest:
                molecule = Molecule.from_smiles(smiles_of[name])
                crest[name] = crest_comparison(molecule, result.sdf, result.report_data)
                for c in crest[name]:
                    print(
                        f"    clusters {c['clusters']}: reweighted {c['reweighted']:.3f}  "
                        f"CREST {c['crest']:.3f}  dE {c['energy_kJ_mol']:.2f} kJ/mol",
                        flush=True,
                    )
            if m < args.relax_check:
                molecule = Molecule.from_smiles(smiles_of[name])
                row["relax_check"] = relaxation_check(
                    molecule,
                    smiles_of[name],
                    result.checkpoint,
                    Path(tmp) / f"{name}_all.sdf",
                    args.relax_steps,
                )
                print(f"    xTB relaxation check: {row['relax_check']}", flush=True)
            if args.json is not None:
                write_json(args.json, {"rows": rows, "crest": crest})
    print("\n| molecule | MMFF ESS % | level | ESS % | ratio to MMFF % | xTB s/1000 | "
          "largest dpop | failed | ESS before refinement % | run s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for r in row["levels"]:
            before = r["ess_before_refinement"]
            before = "-" if before is None else f"{100 * before:.1f} ({r['refine_s']:.0f} s)"
            print(
                f"| {row['name']} | {100 * row['ess_mmff']:.1f} | {r['level']} | "
                f"{100 * r['ess']:.1f} | {100 * r['ess_change']:.1f} | {r['xtb_s_per_1000']:.1f} | "
                f"{r['largest_population_change']:.3f} | {r['failed']} | {before} | "
                f"{r['seconds']:.0f} |"
            )
    summary: dict[str, float] = {}
    for i, level in enumerate(args.levels):
        summary[f"median_ess_{level}"] = statistics.median(r["levels"][i]["ess"] for r in rows)
        summary[f"min_ess_{level}"] = min(r["levels"][i]["ess"] for r in rows)
    summary["median_xtb_s_per_1000"] = statistics.median(
        r["levels"][0]["xtb_s_per_1000"] for r in rows
    )
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        write_json(args.json, {"rows": rows, "crest": crest, **summary})


if __name__ == "__main__":
    main()
