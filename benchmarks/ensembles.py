"""What users do today against ``confflow generate``, both scored against long replica exchange.

For each molecule (default: small ones with ring, invertomer and amide states):

1. reference: MMFF94 replica exchange whose top temperature flips rings and inverts nitrogens
   (``--replicas`` replicas, 300 K to ``--t-max`` K, default 1000 K; ``--md-ns`` ns per
   replica), the 300 K replica; resumable in ``--work/<name>/``;
2. the peer baseline (the CREST/GEOM convention): RDKit ETKDGv3 (``--conformers``, default
   300) + MMFF94 minimisation, duplicates within 0.05 nm heavy-atom RMSD merged, Boltzmann
   weights of the unique minima by energy alone;
3. ``confflow generate`` with its defaults.

Both are scored by the Jensen-Shannon divergence (bits) of every torsion marginal about a
rotatable bond and of every endocyclic torsion of a flexible ring (the ring-pucker marginals)
from the reference's, histograms of ``--bins`` bins; the divergence between the two halves of
the reference is its noise floor. Per molecule: the mean and largest divergence of each
method, split into rotor and ring torsions, and the wall time of each; ``--json`` also keeps
every marginal's divergence. The target: confflow is closer to the reference than the
baseline wherever the baseline is off by more than the noise floor.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem
from torsion_jsd import dihedrals, equivalent_torsions, histogram, jsd_bits

from confflow.atomic import write_json
from confflow.chem import Molecule, deduplicate
from confflow.chem.states import StateElements
from confflow.energies import MMFFEnergy, kT
from confflow.generate import GenerateConfig, run_generate
from confflow.generate.molecule import rotatable_torsions
from confflow.md import MDConfig, ReplicaConfig, read_frames, run_md, smiles_system

#: Default molecules: ``name=SMILES``.
MOLECULES = {
    "N-methylpiperidine": "CN1CCCCC1",
    "nicotine": "CN1CCC[C@H]1c1cccnc1",
    "Ac-Pro-OMe": "CC(=O)N1CCC[C@H]1C(=O)OC",
    "menthol": "CC(C)[C@@H]1CC[C@@H](C)C[C@H]1O",
}


def reference(smiles: str, out: Path, ns: float, replicas: int, t_max: float) -> np.ndarray:
    """Positions ``[T, N, 3]`` nm of the 300 K replica (runs or resumes the exchange)."""
    config = MDConfig(ns=ns, stride_ps=0.5, chunk_frames=500)
    ladder = ReplicaConfig(n_replicas=replicas, t_max=t_max, exchange_ps=0.1)
    resume = (out / "metadata.json").exists()
    result = run_md(smiles_system(smiles), config, out, replicas=ladder, resume=resume)
    return read_frames(result.trajectory).positions


def baseline(molecule: Molecule, conformers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ETKDG + MMFF94 minima (nm) and their Boltzmann weights by energy at 300 K."""
    x = molecule.embed(conformers, seed=seed, mmff=True)
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    keep = deduplicate(molecule, x, 0.05, energy)
    weights = torch.softmax(-energy[keep] / kT(300.0), 0)
    return x[keep].numpy(), weights.numpy()


def generated(
    smiles: str, n: int, seed: int, budget: float | None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Written conformers (nm), their weights and the report of ``confflow generate``."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = {} if budget is None else {"budget": budget}
        out = Path(tmp) / "out.sdf"
        config = GenerateConfig(smiles, out, n=n, seed=seed, progress=False, **extra)
        result = run_generate(config)
        records = list(Chem.SDMolSupplier(str(result.sdf), removeHs=False))
    x = np.stack([r.GetConformer().GetPositions() for r in records]) / 10.0
    w = np.array([float(r.GetProp("weight")) for r in records])
    return x, w, result.report_data


def marginals(molecule: Molecule) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """``(kind, equivalent quadruples)`` of every scored torsion: rotors, then ring torsions."""
    out = [
        ("rotor", equivalent_torsions(molecule.rdkit_mol, q)) for q in rotatable_torsions(molecule)
    ]
    out += [("ring", [q]) for q in StateElements.from_molecule(molecule).ring_torsions()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), help="names")
    parser.add_argument("--md-ns", type=float, default=1.0, help="ns per replica")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--t-max", type=float, default=1000.0, help="K, top of the ladder")
    parser.add_argument("--conformers", type=int, default=300, help="baseline ETKDG conformers")
    parser.add_argument("-n", type=int, default=2000, help="generate samples")
    parser.add_argument("--budget", type=float, default=None, help="generate --budget (s)")
    parser.add_argument("--bins", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("ensembles"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(
        "| molecule | marginals | JSD baseline mean/max | JSD confflow mean/max | "
        "MD halves max | baseline s | confflow s | ESS % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.molecules:
        smiles = MOLECULES[name]
        molecule = Molecule.from_smiles(smiles, stereo="first")
        t0 = time.perf_counter()
        md = reference(smiles, args.work / name, args.md_ns, args.replicas, args.t_max)
        md_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        base_x, base_w = baseline(molecule, args.conformers, args.seed)
        base_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen_x, gen_w, report = generated(smiles, args.n, args.seed, args.budget)
        gen_s = time.perf_counter() - t0
        half = len(md) // 2
        scores = {"baseline": [], "confflow": [], "halves": []}
        kinds = []
        for kind, quads in marginals(molecule):
            kinds.append(kind)
            theta_md = dihedrals(md, quads)
            p = histogram(theta_md, np.ones(len(theta_md)), args.bins)
            a = histogram(theta_md[:half], np.ones(half), args.bins)
            b = histogram(theta_md[half:], np.ones(len(theta_md) - half), args.bins)
            scores["halves"].append(jsd_bits(a, b))
            scores["baseline"].append(
                jsd_bits(p, histogram(dihedrals(base_x, quads), base_w, args.bins))
            )
            scores["confflow"].append(
                jsd_bits(p, histogram(dihedrals(gen_x, quads), gen_w, args.bins))
            )
        row = {
            "molecule": name,
            "marginals": len(scores["halves"]),
            **{f"jsd_{k}_mean": float(np.mean(v)) for k, v in scores.items()},
            **{f"jsd_{k}_max": float(np.max(v)) for k, v in scores.items()},
            "baseline_seconds": base_s,
            "confflow_seconds": gen_s,
            "md_seconds": md_s,
            "md_frames": len(md),
            "ess": report["ess"],
            "baseline_minima": len(base_w),
            "marginal_kinds": kinds,
            **{f"jsd_{k}": [float(x) for x in v] for k, v in scores.items()},
        }
        for kind in sorted(set(kinds)):
            for k, v in scores.items():
                row[f"jsd_{k}_{kind}_mean"] = float(
                    np.mean([x for x, c in zip(v, kinds, strict=True) if c == kind])
                )
        off = row["jsd_baseline_max"] > row["jsd_halves_max"]
        row["confflow_closer"] = (not off) or row["jsd_confflow_mean"] < row["jsd_baseline_mean"]
        rows.append(row)
        print(
            f"| {name} | {row['marginals']} | {row['jsd_baseline_mean']:.3f}/"
            f"{row['jsd_baseline_max']:.3f} | {row['jsd_confflow_mean']:.3f}/"
            f"{row['jsd_confflow_max']:.3f} | {row['jsd_halves_max']:.3f} | {base_s:.1f} | "
            f"{gen_s:.0f} | {100 * report['ess']:.1f} |",
            flush=True,
        )
        for kind in sorted(set(kinds)):
            print(
                f"|   {kind} torsions | {kinds.count(kind)} | "
                f"{row[f'jsd_baseline_{kind}_mean']:.3f} | {row[f'jsd_confflow_{kind}_mean']:.3f} "
                f"| {row[f'jsd_halves_{kind}_mean']:.3f} (mean) | | | |",
                flush=True,
            )
    if args.json is not None:
        write_json(args.json, {"rows": rows})


if __name__ == "__main__":
    main()
