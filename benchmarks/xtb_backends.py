"""GFN2-xTB energies + gradients: tblite (one calculator per structure, in threads) vs dxtb.

dxtb (torch-native, batched, differentiable) is not a confflow dependency; install it next to
confflow to compare (``pip install -c constraints.txt dxtb``). For each molecule, ``--n``
ETKDG conformers: the wall time of energies and gradients with tblite over ``--threads``
threads (confflow's :class:`~confflow.energies.XTBEnergy`) and with dxtb in one batch (torch
using the same number of threads), medians of ``--repeats``, and the largest energy difference
between the two (Hartree). Prints a table; ``--json`` writes it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _report import report_metrics
from rdkit import Chem
from rdkit.Chem import AllChem

from confflow.chem import Molecule
from confflow.energies import XTBEnergy
from confflow.energies.xtb import BOHR_NM, HARTREE_KJ_MOL

MOLECULES = {"ethanol": "CCO", "ibuprofen": "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O"}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="conformers per molecule")
    parser.add_argument("--threads", type=int, default=2, help="threads of both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import dxtb
    except ImportError:
        dxtb = None
    out: dict[str, object] = {"threads": args.threads, "conformers": args.n}
    for name, smiles in MOLECULES.items():
        molecule = Molecule.from_smiles(smiles)
        mol = Chem.Mol(molecule.rdkit_mol)
        ids = AllChem.EmbedMultipleConfs(mol, numConfs=args.n, randomSeed=1)
        x = torch.from_numpy(np.stack([mol.GetConformer(i).GetPositions() / 10 for i in ids]))
        energy = XTBEnergy.from_molecule(molecule, "gfn2", workers=args.threads)
        reference = energy.evaluate(x)
        seconds = _median_time(lambda e=energy, x=x: e.evaluate(x), args.repeats)
        out[f"{name}_tblite_ms_per_conformer"] = 1000 * seconds / args.n
        if dxtb is None:
            continue
        numbers = torch.tensor(molecule.atomic_numbers).expand(args.n, -1)
        calc = dxtb.Calculator(numbers, dxtb.GFN2_XTB, dtype=torch.float64)

        def batch(calc=calc, x=x):
            positions = (x / BOHR_NM).clone().requires_grad_(True)
            e = calc.get_energy(
                positions, chrg=torch.zeros(positions.shape[0], dtype=torch.float64)
            )
            (g,) = torch.autograd.grad(e.sum(), positions)
            return e.detach(), g

        e_dxtb, _ = batch()
        seconds = _median_time(batch, args.repeats)
        out[f"{name}_dxtb_ms_per_conformer"] = 1000 * seconds / args.n
        diff = np.abs(e_dxtb.numpy() - reference.energy.numpy() / HARTREE_KJ_MOL).max()
        out[f"{name}_max_energy_difference_hartree"] = float(diff)
    out["dxtb_version"] = getattr(dxtb, "__version__", "not installed") if dxtb else "not installed"
    report_metrics(out, args.json)


if __name__ == "__main__":
    main()
