"""MMFF94 energy + forces: torch MMFFEnergy (eager, compiled; float64, float32) vs RDKit.

The reference is a Python loop over RDKit's MMFF force field (``CalcEnergy`` + ``CalcGrad``)
on the same conformers of a drug-like molecule (lidocaine, 39 atoms with hydrogens): one
ETKDG conformer plus Gaussian displacements of 0.05 A. All peers run in the same process;
each figure is the median of ``repeats`` timed runs after one warm-up run (which, for the
compiled peers, includes compilation).

``bench_mmff`` is imported by ``benchmarks/energies.py``; run this file alone for the MMFF half:

    python benchmarks/_energies_mmff.py --json mmff.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from confflow.atomic import write_text
from confflow.energies.mmff import MMFFEnergy

SMILES = "CCN(CC)CC(=O)Nc1c(C)cccc1C"  # lidocaine


def _molecule() -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES))
    AllChem.EmbedMolecule(mol, randomSeed=42)
    return mol


def _conformers(mol: Chem.Mol, batch: int) -> np.ndarray:
    """``[batch, N, 3]`` conformers in Angstrom."""
    base = mol.GetConformer().GetPositions()
    rng = np.random.default_rng(0)
    return base[None] + rng.normal(scale=0.05, size=(batch, *base.shape))


def _median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rdkit_loop(mol: Chem.Mol, confs_a: np.ndarray) -> Callable[[], None]:
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props)
    flats = [c.ravel().tolist() for c in confs_a]

    def run() -> None:
        for flat in flats:
            ff.CalcEnergy(flat)
            ff.CalcGrad(flat)

    return run


def bench_mmff(
    batch_sizes: list[int], device: str, repeats: int
) -> tuple[list[dict], dict[str, float]]:
    """Times energy + forces of torch MMFF94 peers against a loop over RDKit's MMFF.

    Args:
        batch_sizes: numbers of conformers per call.
        device: ``"cpu"`` or ``"cuda"``.
        repeats: timed runs per figure (median reported), after one warm-up.

    Returns:
        Table rows (one per peer and batch size: ``us_per_conf``, ``ratio_vs_rdkit``) and flat
        metrics: ``mmff_ratio_vs_rdkit`` (compiled float64 at batch 4096, or the largest batch),
        ``mmff_ratio_vs_rdkit_float32``, ``mmff_ratio_vs_rdkit_eager`` and the microseconds per
        conformer of every peer.
    """
    mol = _molecule()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows: list[dict] = []
    metrics: dict[str, float] = {}
    peers = [
        ("torch eager float64", False, torch.float64),
        ("torch compiled float64", True, torch.float64),
        ("torch compiled float32", True, torch.float32),
    ]
    energies = {compile: MMFFEnergy(mol, compile=compile).to(device) for compile in (False, True)}
    for batch in batch_sizes:
        confs = _conformers(mol, batch)
        rdkit_s = _median_time(_rdkit_loop(mol, confs), repeats, lambda: None)
        rdkit_us = 1e6 * rdkit_s / batch
        rows.append(
            {"peer": "rdkit loop", "batch": batch, "us_per_conf": rdkit_us, "ratio_vs_rdkit": 1.0}
        )
        metrics[f"mmff_rdkit_us_b{batch}"] = rdkit_us
        for name, compile, dtype in peers:
            x = torch.as_tensor(confs / 10.0, dtype=dtype, device=device)
            energy = energies[compile]
            seconds = _median_time(lambda e=energy, x=x: e.energy_and_forces(x), repeats, sync)
            us = 1e6 * seconds / batch
            ratio = rdkit_us / us
            rows.append({"peer": name, "batch": batch, "us_per_conf": us, "ratio_vs_rdkit": ratio})
            key = name.replace("torch ", "").replace(" ", "_")
            metrics[f"mmff_{key}_us_b{batch}"] = us
            metrics[f"mmff_{key}_ratio_b{batch}"] = ratio
    headline = 4096 if 4096 in batch_sizes else max(batch_sizes)
    metrics["mmff_ratio_vs_rdkit"] = metrics[f"mmff_compiled_float64_ratio_b{headline}"]
    metrics["mmff_ratio_vs_rdkit_float32"] = metrics[f"mmff_compiled_float32_ratio_b{headline}"]
    metrics["mmff_ratio_vs_rdkit_eager"] = metrics[f"mmff_eager_float64_ratio_b{headline}"]
    metrics["mmff_n_atoms"] = float(mol.GetNumAtoms())
    return rows, metrics


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bench_mmff` rows."""
    lines = [
        "| peer | batch | us / conformer (E + F) | speed-up vs RDKit |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['peer']} | {row['batch']} | {row['us_per_conf']:.1f} | "
            f"{row['ratio_vs_rdkit']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=str, default=None, help="write flat metrics here")
    parser.add_argument("--device", type=str, default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, metrics = bench_mmff(args.batch_sizes, args.device, args.repeats)
    metrics["torch_threads"] = float(args.threads)
    print(format_table(rows))
    print(f"mmff_ratio_vs_rdkit = {metrics['mmff_ratio_vs_rdkit']:.2f}")
    if args.json:
        write_text(args.json, json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
