"""Throughput of the Cartesian <-> internal-coordinate map against mdtraj.

Cartesian -> internal (``InternalCoordinates.inverse``: bonds, angles, torsions and log|det J|)
is compared with mdtraj's ``compute_distances`` + ``compute_angles`` + ``compute_dihedrals`` on
the same atom indices, both with mdtraj's compiled kernels (``opt=True``, its default) and its
plain numpy path (``opt=False``). Internal -> Cartesian (batched NeRF, ``forward``) has no
mdtraj counterpart and is reported alone. Throughput is conformers per second, median of the
repeats after a warm-up. Systems: alanine dipeptide (22 atoms) and haloperidol (49 atoms).

Usage:
    python benchmarks/coordinates.py --json coordinates.json [--device cuda] [--batch 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import mdtraj
import numpy as np
import torch

from confflow.atomic import write_text
from confflow.chem import Molecule, StereoWarning, to_mdtraj
from confflow.coordinates import InternalCoordinates, ZMatrix

SYSTEMS = {
    "aldp": "CC(=O)N[C@@H](C)C(=O)NC",
    "haloperidol": "OC1(CCN(CCCC(=O)c2ccc(F)cc2)CC1)c1ccc(Cl)cc1",
}


def timed(fns: dict, repeats: int, sync) -> dict[str, float]:
    """Median seconds per call of each function; calls are interleaved so load hits all alike."""
    for fn in fns.values():
        fn()
    sync()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(v) for key, v in times.items()}


def bench_system(name: str, smiles: str, args: argparse.Namespace) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StereoWarning)
        mol = Molecule.from_smiles(smiles)
    seeds = mol.embed(32, seed=0, num_threads=1)
    g = torch.Generator().manual_seed(0)
    reps = -(-args.batch // seeds.shape[0])
    x64 = seeds.repeat(reps, 1, 1)[: args.batch]
    x64 = x64 + 0.005 * torch.randn(x64.shape, generator=g, dtype=x64.dtype)
    device = torch.device(args.device)
    x = x64.to(device=device, dtype=torch.float32)
    t = InternalCoordinates(ZMatrix.from_molecule(mol)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = np.asarray(t.zmatrix.rows)
    pairs, triples, quads = rows[1:, :2], rows[2:, :3], rows[3:, :4]
    traj = to_mdtraj(mol, x64)

    def mdtraj_all(opt: bool) -> None:
        mdtraj.compute_distances(traj, pairs, periodic=False, opt=opt)
        mdtraj.compute_angles(traj, triples, periodic=False, opt=opt)
        mdtraj.compute_dihedrals(traj, quads, periodic=False, opt=opt)

    with torch.no_grad():
        z, _ = t.inverse(x)
        secs = timed(
            {
                "cart_to_int": lambda: t.inverse(x),
                "int_to_cart": lambda: t.forward(z),
                "mdtraj_c": lambda: mdtraj_all(True),
                "mdtraj_np": lambda: mdtraj_all(False),
            },
            args.repeats,
            sync,
        )
    cart_to_int, int_to_cart = secs["cart_to_int"], secs["int_to_cart"]
    md_c, md_np = secs["mdtraj_c"], secs["mdtraj_np"]
    # same numbers: check the two implementations agree before reporting speed
    ref = mdtraj.compute_dihedrals(traj, quads, periodic=False)
    ours = z[:, 2 * mol.n_atoms - 3 :].cpu().numpy()
    gap = np.abs(np.angle(np.exp(1j * (ours - ref)))).max()
    if gap > 1e-3:
        raise RuntimeError(f"{name}: torsions differ from mdtraj by {gap:.2e} rad")
    b = args.batch
    return {
        f"{name}_n_atoms": mol.n_atoms,
        f"{name}_cart_to_internal_per_s": b / cart_to_int,
        f"{name}_internal_to_cart_per_s": b / int_to_cart,
        f"{name}_mdtraj_per_s": b / md_c,
        f"{name}_mdtraj_numpy_per_s": b / md_np,
        f"{name}_ratio_vs_mdtraj": md_c / cart_to_int,
        f"{name}_ratio_vs_mdtraj_numpy": md_np / cart_to_int,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results as a flat JSON object to this path")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--batch", type=int, default=4096, help="conformers per call")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    torch.set_num_threads(args.threads)

    results: dict[str, float | str | int] = {
        "device": args.device,
        "batch": args.batch,
        "threads": args.threads,
    }
    for name, smiles in SYSTEMS.items():
        results.update(bench_system(name, smiles, args))
    # The figure is against mdtraj's numpy compute_* path; the compiled kernels are
    # reported beside it as the stricter comparison.
    results["forward_ratio_vs_mdtraj"] = min(results[f"{n}_ratio_vs_mdtraj_numpy"] for n in SYSTEMS)
    results["forward_ratio_vs_mdtraj_compiled"] = min(
        results[f"{n}_ratio_vs_mdtraj"] for n in SYSTEMS
    )

    header = f"{'system':<12} {'atoms':>5} {'cart->int':>12} {'int->cart':>12} "
    header += f"{'mdtraj (C)':>12} {'mdtraj (np)':>12} {'vs C':>6} {'vs np':>6}"
    print(f"conformers/s, batch {args.batch}, device {args.device}, {args.threads} thread(s)")
    print(header)
    for n in SYSTEMS:
        print(
            f"{n:<12} {results[f'{n}_n_atoms']:>5} "
            f"{results[f'{n}_cart_to_internal_per_s']:>12,.0f} "
            f"{results[f'{n}_internal_to_cart_per_s']:>12,.0f} "
            f"{results[f'{n}_mdtraj_per_s']:>12,.0f} "
            f"{results[f'{n}_mdtraj_numpy_per_s']:>12,.0f} "
            f"{results[f'{n}_ratio_vs_mdtraj']:>6.2f} "
            f"{results[f'{n}_ratio_vs_mdtraj_numpy']:>6.2f}"
        )
    if args.json:
        write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
