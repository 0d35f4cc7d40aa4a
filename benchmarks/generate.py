"""Benchmark of ``confflow generate`` with its defaults on drug-like molecules.

For every molecule of a set in ``datasets/molecules`` (``--set``: ``druglike``, 2-8 rotatable
bonds with and without stereocentres, neutral and charged; ``rings``, saturated rings;
``flexible``, 9-12 rotatable bonds) the pipeline runs with default settings and we record the
ESS of the reweighted flow samples, the wall time and its split by stage, the conformational
states modelled and their populations, the stereo rejections and whether every written
conformer keeps the input stereochemistry (checked independently with RDKit's CIP labels from
3D). ``--model cartesian`` or ``torsional`` overrides the default (``auto``: torsional whenever
the molecule has a rotatable bond); ``--no-states`` samples the lowest seed's state only.
Prints a table; ``--json`` writes the rows and the flat summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rdkit import Chem

from confflow.atomic import write_json
from confflow.generate import GenerateConfig, run_generate

ROOT = Path(__file__).resolve().parent.parent
SETS = ROOT / "datasets" / "molecules"


def _cip(mol: Chem.Mol) -> dict[int, str]:
    Chem.AssignStereochemistryFrom3D(mol)
    return dict(
        Chem.FindMolChiralCenters(mol, includeUnassigned=False, useLegacyImplementation=False)
    )


def stereo_kept(sdf: Path, reference: dict[int, str]) -> tuple[int, int]:
    """(records keeping every input CIP label, records) of a written SDF."""
    kept = total = 0
    for rec in Chem.SDMolSupplier(str(sdf), removeHs=False):
        total += 1
        kept += rec is not None and _cip(rec) == reference
    return kept, total


def summarize(rows: list[dict], device: str, model: str) -> dict:
    """The flat JSON summary of the per-molecule rows."""
    done = [r for r in rows if r["completed"]]
    written = sum(r["written"] for r in done)
    summary = {
        "molecules": len(rows),
        "min_ess": min((r["ess"] for r in done), default=float("nan")),
        "completed_fraction": len(done) / len(rows),
        "median_ess": statistics.median(r["ess"] for r in done) if done else float("nan"),
        "median_seconds": statistics.median(r["seconds"] for r in done) if done else float("nan"),
        "stereo_kept_fraction": sum(r["kept"] for r in done) / written if written else float("nan"),
        "device": device,
        "model": model,
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows and summary here")
    parser.add_argument("--set", default="druglike", help="druglike, rings or flexible")
    parser.add_argument(
        "--states", action=argparse.BooleanOptionalAction, default=True, help="generate --states"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--limit", type=int, default=None, help="only the first N molecules")
    parser.add_argument("--start", type=int, default=0, help="skip the first N molecules")
    parser.add_argument("--names", nargs="+", default=None, help="only these molecules")
    parser.add_argument("--budget", type=float, default=None, help="override the budget (s)")
    parser.add_argument("--md-ns", type=float, default=None, help="override generate --md-ns")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--model", default="auto", help="generator: auto (default), torsional or cartesian"
    )
    parser.add_argument(
        "--relax-steps", type=int, default=None, help="torsional: generate --relax-steps"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate --compile/--no-compile (MMFF kernel compiled during seeds and MD)",
    )
    args = parser.parse_args()
    label = args.model + ("" if args.relax_steps is None else f" --relax-steps {args.relax_steps}")
    label += "" if args.states else " --no-states"
    label += "" if args.budget is None else f" --budget {args.budget:g}"
    label += "" if args.md_ns is None else f" --md-ns {args.md_ns:g}"
    label += "" if args.compile else " --no-compile"
    torch.set_num_threads(args.threads)
    text = (SETS / f"{args.set}.smi").read_text().splitlines()
    lines = [line.split() for line in text if line.strip() and not line.startswith("#")]
    if args.names:
        lines = [line for line in lines if line[1] in args.names]
    lines = lines[args.start :]
    lines = lines[: args.limit] if args.limit else lines
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for smiles, name in lines:
            extra = {} if args.budget is None else {"budget": args.budget}
            if args.md_ns is not None:
                extra["md_ns"] = args.md_ns
            if args.relax_steps is not None:
                extra["relax_steps"] = args.relax_steps
            config = GenerateConfig(
                smiles,
                Path(tmp) / f"{name}.sdf",
                device=args.device,
                model=args.model,
                states=args.states,
                compile=args.compile,
                progress=False,
                **extra,
            )
            start = time.perf_counter()
            try:
                result = run_generate(config)
            except Exception as err:  # a failed run is a benchmark result, not a crash
                rows.append({"name": name, "completed": False, "error": str(err)[:80]})
                continue
            ref = Chem.MolFromSmiles(smiles)
            reference = dict(
                Chem.FindMolChiralCenters(Chem.AddHs(ref), useLegacyImplementation=False)
            )
            kept, total = stereo_kept(result.sdf, reference)
            report = result.report_data
            states = report.get("states", [])
            rows.append(
                {
                    "name": name,
                    "completed": True,
                    "atoms": report["n_atoms"],
                    "rotatable": len(report["rotatable_torsions"]),
                    "model": report["model"],
                    "states_found": report.get("states_found", 1),
                    "states": [
                        [
                            s["state"],
                            ("m" if s["mirror"] else "") + ("p" if s.get("relabelled") else ""),
                            round(s["population"], 4),
                        ]
                        for s in states
                    ],
                    "timings_s": {k: round(v, 1) for k, v in result.timings.items()},
                    "refine_steps": report["training"].get("refine_steps"),
                    # per trained state: seconds, steps, best ESS check, final log Z and ESS
                    "state_training": report["training"].get("states", []),
                    "compiled_mmff": report["compiled_mmff"],
                    "ess": result.ess,
                    "seconds": time.perf_counter() - start,
                    "stereo_rejected": result.stereo_rejected,
                    "kept": kept,
                    "written": total,
                }
            )
            r = rows[-1]
            print(
                f"{name:<28} rot {r['rotatable']}  ESS {100 * r['ess']:6.2f} %  "
                f"{r['seconds']:7.1f} s  stereo rejected {r['stereo_rejected']:5d}  "
                f"kept {kept}/{total}  {r['model']} ({len(r['states'])} entries of "
                f"{r['states_found']} states found)  {r['timings_s']}",
                flush=True,
            )
            if args.json is not None:
                write_json(args.json, {"rows": rows, **summarize(rows, args.device, label)})
    summary = summarize(rows, args.device, label)
    print("\n| molecule | rotatable | ESS % | time s | states | stereo rejected | kept/written |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["completed"]:
            pops = " ".join(f"{k}{image}:{p:.3f}" for k, image, p in r["states"]) or "1"
            print(
                f"| {r['name']} | {r['rotatable']} | {100 * r['ess']:.2f} | {r['seconds']:.0f} | "
                f"{pops} | {r['stereo_rejected']} | {r['kept']}/{r['written']} |"
            )
        else:
            print(f"| {r['name']} | failed: {r['error']} | | | | | |")
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        write_json(args.json, {"rows": rows, **summary})


if __name__ == "__main__":
    main()
